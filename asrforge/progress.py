"""How long work tells people where it is: progress bars, and the ``asrforge`` logger.

Bars: tqdm's live bar on a terminal; in a log file (nohup, Slurm, CI) one plain line every 30 seconds instead of
ten carriage-return redraws a second, which make megabytes of one unreadable line.

Messages: the library never prints. What a person should read while work goes on (an epoch's dev WER, a recording
skipped) goes to :data:`log`; the CLI shows it (:func:`show_log`), a program using the library decides for itself.
"""

from __future__ import annotations

import logging
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


log = logging.getLogger("asrforge")


class _BarSafeHandler(logging.Handler):
    """Writes each message on its own line above any live progress bar (as ``tqdm.write`` does), to the
    standard error current at the time (tests and redirections replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            prefix = "asrforge: " if record.levelno >= logging.WARNING else ""
            tqdm.write(prefix + text, file=sys.stderr)
        except Exception:
            self.handleError(record)


def show_log(level: int = logging.INFO) -> None:
    """Show the library's messages on standard error (what the ``asrforge`` command does); idempotent."""
    if not any(isinstance(h, _BarSafeHandler) for h in log.handlers):
        log.addHandler(_BarSafeHandler())
    log.setLevel(level)
