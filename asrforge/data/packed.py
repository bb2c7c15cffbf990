"""A read-only list that DataLoader workers can share without copying it."""

from __future__ import annotations

import pickle
from typing import Iterable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


class PackedList(Sequence[T]):
    """``items`` pickled into one byte array plus an offsets array; ``packed[i]`` unpickles item ``i``.

    DataLoader workers are forked from the training process. Reading a Python object there writes its
    reference count, so each worker ends up with a private copy of every page of utterance objects it touched:
    over an epoch, the whole manifest once per worker (300 MB for each of two workers reading half of a
    1M-utterance manifest). Two numpy arrays hold no reference counts per item, and stay shared."""

    def __init__(self, items: Iterable[T]):
        blobs = [pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL) for item in items]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._data = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> T:       # slices are not needed, and would unpickle a whole range
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        start = int(self._ends[index - 1]) if index else 0
        return pickle.loads(self._data[start:int(self._ends[index])])
