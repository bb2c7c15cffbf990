"""Yield points: where a long computation lets the thread running it do something more urgent first.

A loop that may run for seconds (Whisper's decoding steps) calls :func:`yield_point` once per iteration. By
itself that does nothing. A caller that has more urgent work for the same thread wraps the computation in
``with yielding_to(fn):``, and every yield point inside then calls ``fn()``, which may run other work to
completion before returning (the paused computation keeps its state meanwhile, on the stack).

The server uses this so that a short request is decoded between two decoding steps of a batch of a long
upload's pieces instead of after the whole batch (``asrforge.serve.scheduler``). The hook is per thread; inside
``fn`` the hook is off, so urgent work is not itself interrupted.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_local = threading.local()


@contextmanager
def yielding_to(fn: Callable[[], None] | None) -> Iterator[None]:
    """Within the block, every :func:`yield_point` on this thread calls ``fn()`` (None: turn the hook off)."""
    previous = getattr(_local, "hook", None)
    _local.hook = fn
    try:
        yield
    finally:
        _local.hook = previous


def yield_point() -> None:
    """Give the hook of :func:`yielding_to`, if any, its turn (with the hook off while it runs)."""
    hook = getattr(_local, "hook", None)
    if hook is not None:
        _local.hook = None
        try:
            hook()
        finally:
            _local.hook = hook
