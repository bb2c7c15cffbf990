"""The ``asrforge`` command: one thin module per group of commands parses its arguments, calls the library and
prints what it returned. Errors print one line, never a traceback (``ASRFORGE_DEBUG=1`` shows one for a bug).

``python -m asrforge.cli ...`` is the same command (what ``torchrun -m`` runs).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from asrforge.cli import (compare, data, demo, diarize, evaluate, export, lm, normalize, plot, recipes, serve, stream,
                          train, transcribe)
from asrforge.errors import AsrforgeError

GROUPS = (data, lm, train, plot, evaluate, compare, normalize, transcribe, diarize, stream, serve, export, demo, recipes)     # the order `asrforge --help` lists them in


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asrforge", description="Train, decode, evaluate and run speech recognizers.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Like ``parse_args``, but the list a command ends with (train's overrides, transcribe's files) may also
    come after its options: ``train cfg.yaml --out exp data.train=t.jsonl`` (argparse alone takes the list only
    in one piece)."""
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        stray = [a for a in extra if a.startswith("-") and a != "-"]
        parser = getattr(args, "parser", None)
        if stray or parser is None:
            (parser or build_parser()).error(f"unrecognized arguments: {' '.join(stray or extra)}")
        getattr(args, args.trailing).extend(extra)
    return args


def own_message(e: AsrforgeError) -> str:
    """The message itself. An error raised in a DataLoader worker comes back re-raised with the worker's
    traceback folded into its text ("Caught ConfigError in DataLoader worker process 0. Original
    Traceback ..."); its last line is the message that was raised."""
    text = str(e)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith(("asrforge.", "asrforge_runtime.")) and ": " in last else last
    return text


# what to do about a file-system error on a path the user gave (an output folder that does not exist, a full disk)
FILESYSTEM_FIXES = {
    errno.ENOENT: "no such file or folder; check the path (an output file's folder must exist)",
    errno.EACCES: "permission denied; give a path you can read and write",
    errno.EPERM: "operation not permitted; give a path you can read and write",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.ENOSPC: "the disk is full; free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up; free some space or write somewhere else",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name is where a folder is needed; remove it or give another path",
}


def filesystem_message(e: OSError) -> str | None:
    """One line naming the path and the fix, for the file-system errors a user causes and can fix; None for others."""
    fix = FILESYSTEM_FIXES.get(e.errno)
    if fix is None or (e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT)):
        return None
    return f"{e.filename}: {fix}" if e.filename is not None else fix


def main(argv: list[str] | None = None) -> int:
    from asrforge.progress import show_log

    args = parse(argv)
    show_log()
    try:
        args.func(args)
    except AsrforgeError as e:
        print(f"asrforge: error: {own_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asrforge: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("ASRFORGE_DEBUG"):
            raise
        if isinstance(e, OSError) and (message := filesystem_message(e)):
            print(f"asrforge: error: {message}", file=sys.stderr)
            return 2
        print(f"asrforge: internal error: {type(e).__name__}: {e}\n"
              "This is a bug in asrforge; rerun with ASRFORGE_DEBUG=1 for the traceback and report it.", file=sys.stderr)
        return 1
    return 0
