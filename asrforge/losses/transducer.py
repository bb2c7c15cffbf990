"""RNN-Transducer loss: log-space forward-backward over the (time, label) lattice, written in PyTorch.

Same call and meaning as ``torchaudio.functional.rnnt_loss`` (torchaudio is not available here):
``logits (B, T, U+1, V)`` unnormalized joint-network outputs, ``targets (B, U)`` int,
``logit_lengths (B,)`` and ``target_lengths (B,)`` int; the loss of an utterance is
``-log P(targets | input)`` summed over every alignment.

How it is computed, and why:
- The lattice node ``(t, u)`` means "t frames read, u labels emitted". Every arc leaves a node on
  diagonal ``n = t + u`` and lands on diagonal ``n + 1``, so alpha (and beta) of a whole diagonal
  follow from the previous one in one vectorized step: ``T + U`` steps of (B, U+1) tensors.
  The diagonals are stored "skewed" — row ``n``, column ``u`` holds node ``(n - u, u)`` — so a step is
  a slice, not a gather.
- Log-probabilities are accumulated in float32 (float64 logits stay float64), whatever the logits' dtype.
- The backward pass is written by hand: the gradient with respect to the logits is
  ``softmax * occupancy(t, u) - arc posteriors`` on the blank and label entries. The forward pass keeps
  only (B, T, U+1) arc scores and the logits it was given; the backward pass recomputes the softmax
  into one new (B, T, U+1, V) tensor and turns it into the gradient in place. So the loss adds one
  such tensor at a time (autograd through the recursion would keep several per step).
"""

from __future__ import annotations

from typing import Literal

import torch

NEG_INF = float("-inf")


def _skew(x: torch.Tensor, fill: float = NEG_INF) -> torch.Tensor:
    """``(B, T, W) -> (B, T + W - 1, W)`` with ``out[:, t + u, u] = x[:, t, u]``; other cells ``fill``."""
    B, T, W = x.shape
    out = x.new_full((B, T + W - 1, W), fill)
    u = torch.arange(W, device=x.device)
    rows = torch.arange(T, device=x.device)[:, None] + u[None, :]            # (T, W): diagonal of (t, u)
    out[:, rows, u[None, :].expand(T, W)] = x
    return out


def _unskew(x: torch.Tensor, T: int) -> torch.Tensor:
    """Inverse of :func:`_skew`: ``(B, T + W - 1, W) -> (B, T, W)``."""
    W = x.shape[2]
    u = torch.arange(W, device=x.device)
    rows = torch.arange(T, device=x.device)[:, None] + u[None, :]
    return x[:, rows, u[None, :].expand(T, W)]


def _lattice_scores(log_probs: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                    target_lengths: torch.Tensor, blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Arc log-probabilities, ``-inf`` outside each utterance's lattice.

    ``blank_lp (B, T, U+1)``: (t, u) -> (t+1, u); ``label_lp (B, T, U+1)``: (t, u) -> (t, u+1), last column -inf.
    """
    B, T, U1, _ = log_probs.shape
    blank_lp = log_probs[..., blank].clone()
    label_lp = torch.full_like(blank_lp, NEG_INF)
    if U1 > 1:
        index = targets[:, None, :, None].expand(B, T, U1 - 1, 1).long()
        label_lp[:, :, :-1] = log_probs[:, :, :-1].gather(3, index).squeeze(3)
    t_ok = torch.arange(T, device=log_probs.device)[None, :, None] < logit_lengths[:, None, None]
    u = torch.arange(U1, device=log_probs.device)[None, None, :]
    blank_lp.masked_fill_(~(t_ok & (u <= target_lengths[:, None, None])), NEG_INF)
    label_lp.masked_fill_(~(t_ok & (u < target_lengths[:, None, None])), NEG_INF)
    return blank_lp, label_lp


def _forward_backward(blank_lp: torch.Tensor, label_lp: torch.Tensor, logit_lengths: torch.Tensor,
                      target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``alpha, beta (B, T, U+1)`` and ``log_likelihood (B,)``.

    ``alpha[t, u]``: log-probability of reaching node (t, u); ``beta[t, u]``: of finishing from it, the
    final blank out of (T_b - 1, U_b) included.
    """
    B, T, U1 = blank_lp.shape
    N = T + U1 - 1
    sb, sl = _skew(blank_lp), _skew(label_lp)                    # (B, N, U+1)
    alpha = blank_lp.new_full((B, N, U1), NEG_INF)
    alpha[:, 0, 0] = 0.0
    for n in range(1, N):
        prev = alpha[:, n - 1]
        stay = prev + sb[:, n - 1]                               # blank: (t-1, u) -> (t, u), same column
        move = prev[:, :-1] + sl[:, n - 1, :-1]                  # label: (t, u-1) -> (t, u), column shifts
        alpha[:, n, 0] = stay[:, 0]
        alpha[:, n, 1:] = torch.logaddexp(stay[:, 1:], move)
    beta = blank_lp.new_full((B, N, U1), NEG_INF)
    b = torch.arange(B, device=blank_lp.device)
    last_t, last_u = logit_lengths - 1, target_lengths
    final_blank = blank_lp[b, last_t, last_u]
    end_diag = last_t + last_u
    for n in range(N - 1, -1, -1):
        if n < N - 1:
            nxt = beta[:, n + 1]
            stay = nxt + sb[:, n]
            move = nxt[:, 1:] + sl[:, n, :-1]
            beta[:, n, :-1] = torch.logaddexp(stay[:, :-1], move)
            beta[:, n, -1] = stay[:, -1]
        ends = end_diag == n                                     # utterances whose last node lies on this diagonal
        if bool(ends.any()):
            beta[b[ends], n, last_u[ends]] = final_blank[ends]
    alpha, beta = _unskew(alpha, T), _unskew(beta, T)
    log_likelihood = alpha[b, last_t, last_u] + final_blank
    return alpha, beta, log_likelihood


def _accumulation_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for half-precision logits, float64 kept as is."""
    return torch.promote_types(logits.dtype, torch.float32)


class _TransducerLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, logit_lengths, target_lengths, blank):
        log_probs = torch.log_softmax(logits.to(_accumulation_dtype(logits)), dim=-1)
        blank_lp, label_lp = _lattice_scores(log_probs, targets, logit_lengths, target_lengths, blank)
        del log_probs                                                # only the (B, T, U+1) arc scores are kept
        alpha, beta, ll = _forward_backward(blank_lp, label_lp, logit_lengths, target_lengths)
        ctx.save_for_backward(logits, targets, logit_lengths, target_lengths, alpha, beta, blank_lp, label_lp, ll)
        ctx.blank = blank
        ctx.logits_dtype = logits.dtype
        return -ll

    @staticmethod
    def backward(ctx, grad_out):
        logits, targets, logit_lengths, target_lengths, alpha, beta, blank_lp, label_lp, ll = ctx.saved_tensors
        B, T, U1, V = logits.shape
        b = torch.arange(B, device=beta.device)
        norm = ll[:, None, None]
        # posterior of each arc: alpha of its source + its score + beta of its destination - log P
        after_blank = torch.full_like(beta, NEG_INF)
        after_blank[:, :-1] = beta[:, 1:]
        after_blank[b, logit_lengths - 1, target_lengths] = 0.0      # the final blank ends the path
        after_label = torch.full_like(beta, NEG_INF)
        after_label[:, :, :-1] = beta[:, :, 1:]
        blank_post = torch.exp(alpha + blank_lp + after_blank - norm).nan_to_num_(0.0)
        label_post = torch.exp(alpha + label_lp + after_label - norm).nan_to_num_(0.0)
        # d(-log P)/d logits = softmax * occupancy - arc posteriors (occupancy = the node's two arc posteriors)
        grad = torch.softmax(logits.to(_accumulation_dtype(logits)), dim=-1)                # the one (B, T, U+1, V) tensor; all else in place
        grad.mul_((blank_post + label_post)[..., None])
        grad[..., ctx.blank] -= blank_post
        if U1 > 1:
            index = targets[:, None, :, None].expand(B, T, U1 - 1, 1).long()
            grad[:, :, :-1].scatter_add_(3, index, -label_post[:, :, :-1, None])
        grad.mul_(grad_out.to(grad.dtype)[:, None, None, None])
        return grad.to(ctx.logits_dtype), None, None, None, None


def transducer_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                    target_lengths: torch.Tensor, blank: int = 0,
                    reduction: Literal["mean", "sum", "none"] = "mean") -> torch.Tensor:
    """``-log P(targets)`` per utterance, reduced like ``torchaudio.functional.rnnt_loss``.

    ``logits (B, T, U+1, V)`` unnormalized; ``targets (B, U)`` without blanks; ``logit_lengths (B,)`` in
    ``1..T``; ``target_lengths (B,)`` in ``0..U``. ``"mean"`` averages over the batch.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, U+1, V), got shape {tuple(logits.shape)}")
    B, T, U1, V = logits.shape
    if targets.shape != (B, U1 - 1):
        raise ValueError(f"targets must be (B, U) = ({B}, {U1 - 1}) for logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if not 0 <= blank < V:
        raise ValueError(f"blank={blank} is outside the vocabulary of {V} symbols")
    logit_lengths, target_lengths = logit_lengths.long(), target_lengths.long()
    if bool((logit_lengths < 1).any()) or bool((logit_lengths > T).any()):
        raise ValueError(f"logit_lengths must be in 1..{T}, got {logit_lengths.tolist()}")
    if bool((target_lengths < 0).any()) or bool((target_lengths > U1 - 1).any()):
        raise ValueError(f"target_lengths must be in 0..{U1 - 1}, got {target_lengths.tolist()}")
    losses = _TransducerLoss.apply(logits, targets, logit_lengths, target_lengths, blank)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
