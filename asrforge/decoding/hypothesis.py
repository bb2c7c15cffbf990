from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float            # total log probability of the labeling (all alignments summed for CTC)
