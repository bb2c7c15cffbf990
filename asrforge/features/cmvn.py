"""Cepstral mean and variance normalization: per utterance, or pooled over every utterance of a speaker.

Per-utterance CMVN subtracts an utterance's own average spectrum. On short utterances (one spoken digit)
that average is mostly the word itself, so normalization removes content along with the speaker and the
microphone. Speaker CMVN (Kaldi's default, from spk2utt) pools the statistics over all of a speaker's
audio instead: the average is then the voice and the channel, and the word is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-5   # keeps constant dimensions (digital silence) finite


def normalize(feats: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(T, D)`` -> ``(feats - mean) / (std + EPS)``, per dimension."""
    return (feats - mean) / (std + EPS)


def utterance_cmvn(feats: torch.Tensor) -> torch.Tensor:
    """``(T, D)`` normalized by its own per-dimension mean and (population) standard deviation."""
    return normalize(feats, feats.mean(0), feats.std(0, unbiased=False))


@dataclass
class CMVNStats:
    """Per-dimension mean and standard deviation ``(D,)`` of a group of utterances (a speaker)."""
    mean: torch.Tensor
    std: torch.Tensor

    def apply(self, feats: torch.Tensor) -> torch.Tensor:
        return normalize(feats, self.mean, self.std)


class CMVNAccumulator:
    """Running frame count, sum and sum of squares (float64, so hours of frames do not lose precision)."""

    def __init__(self):
        self.frames = 0
        self.sum: torch.Tensor | None = None
        self.sum_sq: torch.Tensor | None = None

    def add(self, feats: torch.Tensor) -> None:
        """Accumulate ``(T, D)`` un-normalized features."""
        f = feats.double()
        if self.sum is None:
            self.sum, self.sum_sq = f.sum(0), (f * f).sum(0)
        else:
            self.sum += f.sum(0)
            self.sum_sq += (f * f).sum(0)
        self.frames += f.shape[0]

    def merge(self, other: "CMVNAccumulator") -> "CMVNAccumulator":
        """Add ``other``'s frames (another worker's or rank's share of the same speaker) into this one."""
        if other.frames:
            if self.sum is None:
                self.sum, self.sum_sq = other.sum.clone(), other.sum_sq.clone()
            else:
                self.sum += other.sum
                self.sum_sq += other.sum_sq
            self.frames += other.frames
        return self

    def stats(self) -> CMVNStats:
        if not self.frames:
            raise ValueError("no frames accumulated")
        mean = self.sum / self.frames
        var = (self.sum_sq / self.frames - mean * mean).clamp_min(0.0)
        return CMVNStats(mean.float(), var.sqrt().float())
