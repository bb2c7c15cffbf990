"""Mozilla Common Voice (any language): ``SRC/clips/*.mp3`` + ``train.tsv``, ``dev.tsv``, ``test.tsv``
(and ``validated.tsv`` when asked). ``client_id`` is kept as the speaker."""

from __future__ import annotations

import csv
from pathlib import Path

from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.manifest import Skipped

REQUIRED = ("client_id", "path", "sentence")


def _language_folder(src: Path) -> Path:
    """SRC itself, or its one language folder (``cv-corpus-17.0-2024-03-15/`` holds ``en/``)."""
    if (src / "clips").is_dir() or not src.is_dir():
        return src
    languages = sorted(d for d in src.iterdir() if (d / "clips").is_dir())
    if len(languages) > 1:
        raise LayoutError(f"{src} holds several Common Voice languages ({', '.join(d.name for d in languages)}); "
                          f"pass one of them, e.g. {languages[0]}")
    return languages[0] if languages else src


def list_commonvoice(src: Path, include_validated: bool = False) -> dict[str, SplitListing]:
    src = _language_folder(src)
    names = ["train", "dev", "test"] + (["validated"] if include_validated else [])
    tsvs = {n: src / f"{n}.tsv" for n in names if (src / f"{n}.tsv").is_file()}
    if not tsvs or not (src / "clips").is_dir():
        raise LayoutError(f"{src} is not a Common Voice folder: expected SRC/clips/*.mp3 and SRC/train.tsv, dev.tsv, test.tsv")
    splits = {}
    csv.field_size_limit(1 << 24)
    for name, tsv in tsvs.items():
        listing = splits[name] = SplitListing()
        with open(tsv, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                listing.skipped.append(Skipped(str(tsv), f"missing column(s) {', '.join(missing)}; a Common Voice TSV has "
                                                         f"{', '.join(REQUIRED)} among its columns"))
                continue
            for n, row in enumerate(reader, 2):
                if not row.get("path") or row.get("sentence") is None:
                    listing.skipped.append(Skipped(f"{tsv}:{n}", "row does not parse (empty path or sentence)"))
                    continue
                listing.candidates.append(Candidate(Path(row["path"]).stem, str(src / "clips" / row["path"]),
                                                    row["sentence"], row["client_id"] or None))
    return splits
