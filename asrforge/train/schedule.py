"""Learning-rate schedule: linear warmup, then cosine decay to ``final_ratio`` of the peak."""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """Sets ``lr`` on every param group at each :meth:`step`. ``total_steps`` may be shortened
    mid-run (fitting a time budget); it is part of the state so a resumed run follows the same curve."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, warmup_steps: int, total_steps: int,
                 final_ratio: float = 0.02):
        self.optimizer = optimizer
        self.peak_lr = peak_lr
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)
        self.final_ratio = final_ratio
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.peak_lr * (self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self.total_steps = state["total_steps"]
        self._apply()
