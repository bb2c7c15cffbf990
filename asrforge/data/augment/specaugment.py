"""SpecAugment (Park et al., 2019): frequency and time masks on a (T, D) feature matrix.

Applied in training only. Randomness comes from an explicit ``torch.Generator`` so a batch's
masks depend only on (seed, epoch, utterance) — that is what makes ``--resume`` exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SpecAugmentConfig:
    enabled: bool = True          # training only; never applied at evaluation
    freq_masks: int = 2
    freq_width: int = 15          # max bins per frequency mask
    time_masks: int = 2
    time_width: float = 0.05      # max frames per time mask, as a fraction of the utterance


class SpecAugment:
    def __init__(self, config: SpecAugmentConfig):
        self.config = config

    def __call__(self, feats: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(T, D)`` -> a masked copy ``(T, D)``; masked cells are set to 0 (the CMVN mean)."""
        c = self.config
        T, D = feats.shape
        out = feats.clone()
        for _ in range(c.freq_masks):
            width = int(torch.randint(0, c.freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, D - width), (1,), generator=generator))
            out[:, start : start + width] = 0.0
        max_t = int(c.time_width * T)
        for _ in range(c.time_masks):
            width = int(torch.randint(0, max_t + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, T - width), (1,), generator=generator))
            out[start : start + width, :] = 0.0
        return out
