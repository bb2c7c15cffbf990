"""Progress bars for long work: tqdm's live bar on a terminal; in a log file (nohup, Slurm, CI) one plain line
every 30 seconds instead of ten carriage-return redraws a second, which make megabytes of one unreadable line."""

from __future__ import annotations

import re
import sys
from typing import IO, Iterable

from tqdm import tqdm

LOG_INTERVAL_S = 30.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _LineLog:
    """A stream for tqdm that writes each redraw as its own line (repeats and clearing redraws dropped)."""

    def __init__(self, stream: IO[str]):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        line = _ANSI.sub("", text.rsplit("\r", 1)[-1]).rstrip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, *, stream: IO[str] | None = None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on ``stream`` (default stderr), in the form that suits where it goes."""
    stream = stream or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("ascii", True)
        stream = _LineLog(stream)
    return tqdm(iterable, file=stream, **kwargs)
