"""Speaker-adversarial training: a speaker classifier on the encoder's output, whose gradient is reversed.

The classifier learns to tell the training speakers apart from an utterance's mean encoder state; the gradient
that reaches the encoder is negated and scaled by ``lambda``, so the encoder is pushed to make speakers
indistinguishable while CTC (or the family's own loss) keeps it discriminating words. It is the domain-adversarial
scheme (gradient reversal) with speakers as domains; the aim is a recognizer that leans less on the voice it
was trained on. Training-only: checkpoints hold the recognizer, not the classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from asrforge.nn.masks import valid_mask

NO_SPEAKER = -100   # cross-entropy's ignore index: utterances without a speaker train only the recognizer


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the gradient by ``-scale``."""
    return _ReverseGradient.apply(x, scale)


def reversal_scale(weight: float, progress: float) -> float:
    """``weight`` ramped up from 0 as training progresses (``progress`` in [0, 1]).

    The classifier is useless at the start; reversing its gradient at full strength then only adds noise to
    the encoder, so the scale follows the usual 2 / (1 + exp(-10 p)) - 1 ramp (0.76 of full at 20 %).
    """
    p = min(max(progress, 0.0), 1.0)
    return weight * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


class SpeakerAdversary(nn.Module):
    """``(h (B, T, H), h_lens (B,), speakers (B,) int64, scale) -> (loss, accuracy)``.

    ``speakers`` holds indices into the training speakers, or :data:`NO_SPEAKER`. The loss is the classifier's
    cross-entropy; through :func:`reverse_gradient` it trains the classifier and, negated, the encoder.
    """

    def __init__(self, dim: int, num_speakers: int, hidden: int = 256):
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_speakers))

    def forward(self, h: torch.Tensor, h_lens: torch.Tensor, speakers: torch.Tensor,
                scale: float) -> tuple[torch.Tensor, float]:
        mask = valid_mask(h_lens, h.shape[1]).unsqueeze(-1).to(h.dtype)      # (B, T, 1)
        pooled = (h * mask).sum(1) / h_lens.clamp(min=1).unsqueeze(-1).to(h.dtype)   # (B, H)
        logits = self.classifier(reverse_gradient(pooled.float(), scale))
        known = speakers != NO_SPEAKER
        if not bool(known.any()):
            # keeps the classifier in the graph (DDP needs every parameter used) without a signal
            return logits.sum() * 0.0, float("nan")
        loss = F.cross_entropy(logits, speakers, ignore_index=NO_SPEAKER)
        accuracy = float((logits.argmax(-1) == speakers)[known].float().mean())
        return loss, accuracy


def speaker_index(speakers: list[str | None]) -> dict[str, int]:
    """Each distinct named speaker -> a class index, in sorted order (stable across runs and ranks)."""
    return {s: i for i, s in enumerate(sorted({s for s in speakers if s is not None}))}
