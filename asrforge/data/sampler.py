"""Batches built by total padded duration, with length buckets, epoch-deterministic and DDP-aware."""

from __future__ import annotations

import random
from typing import Iterator

from torch.utils.data import Sampler


def cut_batches(order: list[int], durations: list[float], max_batch_seconds: float, max_batch_size: int) -> list[list[int]]:
    """Cut ``order`` (indices, sorted by duration) into consecutive batches whose padded size
    ``len(batch) * longest`` stays under ``max_batch_seconds`` (an over-long item gets a batch of its own)."""
    batches, current, longest = [], [], 0.0
    for i in order:
        longest_if_added = max(longest, durations[i])
        if current and (longest_if_added * (len(current) + 1) > max_batch_seconds or len(current) >= max_batch_size):
            batches.append(current)
            current, longest_if_added = [], durations[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


class DurationBatchSampler(Sampler):
    """Yields lists of ``(index, epoch)``.

    Utterances are sorted by duration (jittered ±10 % per epoch so neighbours change), cut into
    batches whose padded size ``len(batch) * longest`` stays under ``max_batch_seconds``, and the
    batch order is shuffled. Everything depends only on ``(seed, epoch)``. Under DDP each rank takes
    every ``world``-th batch, and all ranks get the same number of batches so none waits forever.
    """

    def __init__(self, durations: list[float], max_batch_seconds: float, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world: int = 1, max_batch_size: int = 512):
        self.durations = durations
        self.max_batch_seconds = max_batch_seconds
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world = world
        self.max_batch_size = max_batch_size
        self.epoch = 0
        self.start_batch = 0   # batches of the current epoch already consumed (resume)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` for this rank."""
        rng = random.Random(f"{self.seed}/{epoch}")
        if self.shuffle:
            order = sorted(range(len(self.durations)), key=lambda i: self.durations[i] * rng.uniform(0.9, 1.1))
        else:
            order = sorted(range(len(self.durations)), key=lambda i: self.durations[i])
        batches = cut_batches(order, self.durations, self.max_batch_seconds, self.max_batch_size)
        if self.shuffle:
            rng.shuffle(batches)
        per_rank = len(batches) // self.world if self.world > 1 else len(batches)
        return batches[self.rank :: self.world][:per_rank]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches(self.epoch)[self.start_batch :]:
            yield [(i, self.epoch) for i in batch]
