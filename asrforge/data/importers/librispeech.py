"""LibriSpeech: ``SRC/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` + ``<utterance>.flac``.

Every split folder found (train-clean-100, dev-clean, test-other, ...) becomes ``<split>.jsonl``; SRC may also be
one split's folder.
"""

from __future__ import annotations

from pathlib import Path

from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.manifest import Skipped


def list_librispeech(src: Path) -> dict[str, SplitListing]:
    # SRC may be the LibriSpeech folder itself or its parent (the archives extract to LibriSpeech/)
    root = src / "LibriSpeech" if (src / "LibriSpeech").is_dir() else src
    splits: dict[str, SplitListing] = {}
    # ... or one split's folder (LibriSpeech/dev-clean): then that is the only split
    found = sorted(root.glob("*/*/*/*.trans.txt")) or sorted(root.glob("*/*/*.trans.txt"))
    for trans in found:
        split = trans.parents[2].name
        listing = splits.setdefault(split, SplitListing())
        speaker = trans.parents[1].name
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            if not text:
                listing.skipped.append(Skipped(f"{trans}:{n}", "transcript line does not parse (expected '<id> <TEXT>')"))
                continue
            listing.candidates.append(Candidate(uid, str(trans.parent / f"{uid}.flac"), text, speaker))
    if not splits:
        raise LayoutError(f"{src} is not a LibriSpeech folder: expected SRC/<split>/<speaker>/<chapter>/"
                          "<speaker>-<chapter>.trans.txt next to .flac files (e.g. SRC/dev-clean/84/121123/84-121123.trans.txt)")
    return splits
