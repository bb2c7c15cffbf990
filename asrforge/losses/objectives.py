"""Training objectives: a model's ``forward`` outputs + targets -> one loss, looked up by ``model.objective``.

Models never import losses; the trainer asks :func:`objective_for` which function turns a family's outputs
into its loss. Every objective returns a :class:`LossOutput` naming the utterances it could not use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from asrforge.losses.ctc import ctc_loss
from asrforge.losses.transducer import transducer_loss
from asrforge.nn.masks import valid_mask
from asrforge.text.special import EOS_ID


@dataclass
class LossOutput:
    loss: torch.Tensor | None   # None when no utterance of the batch was usable
    usable: torch.Tensor        # (B,) bool
    reason: str = ""            # why an unusable utterance was left out
    # a loss of several terms (joint: attention and CTC): each term before weighting, detached, by the names
    # loss_terms gives; a term that no utterance of the batch could take is missing
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def loss_terms(model) -> tuple[str, ...]:
    """The names of the terms ``model``'s loss weighs together, fixed by its recipe (empty for a loss of one term),
    the same on every rank: what training logs as ``loss_NAME`` beside ``loss``."""
    m = getattr(model, "module", model)
    if m.objective in ("attention", "transducer") and m.config.ctc_weight > 0:
        return (m.objective, "ctc")
    return ()


def _ctc(model, outputs, tokens, token_lens) -> LossOutput:
    log_probs, out_lens = outputs
    out = ctc_loss(log_probs, out_lens, tokens, token_lens)
    return LossOutput(out.loss, out.usable, "too few frames for its tokens after subsampling")


def attention_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor, eos: int,
                            label_smoothing: float) -> torch.Tensor:
    """``logits (B, L+1, V)`` predicting ``y1 .. yL <eos>``; mean over real target positions (eos included)."""
    B, L1, V = logits.shape
    targets = F.pad(tokens, (0, 1), value=0)
    targets[torch.arange(B, device=tokens.device), token_lens] = eos
    targets = targets.masked_fill(~valid_mask(token_lens + 1, L1), -100)
    return F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1), ignore_index=-100,
                           label_smoothing=label_smoothing)


def _attention(model, outputs, tokens, token_lens) -> LossOutput:
    cfg = model.config
    loss = attention_cross_entropy(outputs.logits, tokens, token_lens, EOS_ID, cfg.label_smoothing)
    terms = {}
    if outputs.ctc_log_probs is not None:
        # joint training: L = (1 - w) L_att + w L_ctc; utterances too short for CTC keep their attention loss
        terms["attention"] = loss.detach()
        ctc = ctc_loss(outputs.ctc_log_probs, outputs.enc_lens, tokens, token_lens)
        if ctc.loss is not None:
            terms["ctc"] = ctc.loss.detach()
            loss = (1 - cfg.ctc_weight) * loss + cfg.ctc_weight * ctc.loss
    return LossOutput(loss, torch.ones_like(token_lens, dtype=torch.bool), terms=terms)


def _transducer(model, outputs, tokens, token_lens) -> LossOutput:
    logits, h_lens, ctc_log_probs = outputs
    # per-token normalization, as for CTC: long and short utterances weigh alike per symbol
    per_utt = transducer_loss(logits, tokens, h_lens, token_lens, reduction="none")
    loss = (per_utt / token_lens.clamp(min=1)).mean()
    terms = {}
    if ctc_log_probs is not None:
        # auxiliary CTC on the encoder; utterances too short for CTC keep their transducer loss
        terms["transducer"] = loss.detach()
        ctc = ctc_loss(ctc_log_probs, h_lens, tokens, token_lens)
        if ctc.loss is not None:
            terms["ctc"] = ctc.loss.detach()
            w = getattr(model, "module", model).config.ctc_weight
            loss = (1 - w) * loss + w * ctc.loss
    return LossOutput(loss, torch.ones_like(token_lens, dtype=torch.bool), terms=terms)


def _whisper(model, logits, tokens, token_lens) -> LossOutput:
    """``logits (B, L-1, V)`` of a Whisper decoder teacher-forced on ``tokens[:, :-1]`` (``tokens (B, L)`` are
    ``<|startoftranscript|> [<|lang|> <|task|>] ... <|endoftext|>``): mean cross-entropy per token over what
    follows the start-of-transcript sequence (the model's ``prompt_length`` tokens, which decoding gives, not
    predicts): ``<|notimestamps|>`` or the first timestamp, the text, the end timestamp and ``<|endoftext|>``."""
    m = getattr(model, "module", model)
    targets = tokens[:, 1:].clone()
    positions = torch.arange(targets.shape[1], device=tokens.device)[None]
    learn = (positions >= m.prompt_length - 1) & (positions < token_lens[:, None] - 1)
    loss = F.cross_entropy(logits.float().transpose(1, 2), targets.masked_fill(~learn, -100), ignore_index=-100,
                           label_smoothing=m.label_smoothing)
    return LossOutput(loss, torch.ones_like(token_lens, dtype=torch.bool))


OBJECTIVES: dict[str, Callable[..., LossOutput]] = {"ctc": _ctc, "attention": _attention, "transducer": _transducer,
                                                    "whisper": _whisper}


def objective_for(model) -> Callable[..., LossOutput]:
    """The loss function for ``model`` (a module with an ``objective`` name, possibly inside DDP)."""
    return OBJECTIVES[getattr(model, "module", model).objective]
