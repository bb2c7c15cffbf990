from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float            # total log probability of the labeling (all alignments summed for CTC)
    frames: list[int] | None = None   # output frame of each token, where the search knows it (transducer)
