"""Corpus importers: ``prepare(corpus, SRC, OUT)`` writes ``OUT/<split>.jsonl``, ``skipped.jsonl`` and ``summary.json``.

Each importer lists its corpus's layout; validation, writing and the skip report are shared (base.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from asrforge.data.importers.base import LayoutError, SplitListing, write_splits
from asrforge.data.importers.commonvoice import list_commonvoice
from asrforge.data.importers.folder import list_folder
from asrforge.data.importers.fsdd import list_fsdd
from asrforge.data.importers.kaldi import export_kaldi, list_kaldi
from asrforge.data.importers.librispeech import list_librispeech
from asrforge.data.importers.tedlium import list_tedlium

IMPORTERS: dict[str, Callable[..., dict[str, SplitListing]]] = {
    "librispeech": list_librispeech,
    "commonvoice": list_commonvoice,
    "tedlium": list_tedlium,
    "fsdd": list_fsdd,
    "folder": list_folder,
    "kaldi": list_kaldi,
}


def prepare(corpus: str, src: str | Path, out: str | Path, workers: int | None = None, progress: bool = True,
            **options) -> dict:
    """List, validate and write a corpus; ``options`` go to the corpus's lister (e.g. ``holdout_speakers``)."""
    if corpus not in IMPORTERS:
        raise LayoutError(f"unknown corpus {corpus!r}; choose one of: {', '.join(IMPORTERS)}")
    src = Path(src)
    if not src.exists():
        raise LayoutError(f"{src} does not exist; pass the folder the {corpus} corpus was extracted to")
    return write_splits(out, IMPORTERS[corpus](src, **options), corpus, workers, progress,
                        source={"src": str(src.resolve()), "options": options})


__all__ = ["IMPORTERS", "LayoutError", "export_kaldi", "prepare"]
