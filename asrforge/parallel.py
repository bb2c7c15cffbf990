"""Work over many items on a thread pool without holding them all in flight."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], ahead: int = 64) -> Iterator[R]:
    """``fn`` over ``items`` on the pool, results in the items' order, at most ``ahead`` submitted and not yet
    taken. ``Executor.map`` submits every item at once: a million-file corpus then holds a million futures
    (about 2 KB each) before the first result is used."""
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:    # stopped early (Ctrl-C, an error, the consumer done): what has not started never runs
        for future in pending:
            future.cancel()
