"""Your own recordings: a tree of audio files each with a same-named ``.txt`` transcript, or a CSV/TSV with
path and text columns. With ``audio_only``, every audio file is listed with an empty transcript: noise and
room-impulse-response collections for ``augment.*``, or untranscribed audio for ``asrforge adapt``.

Tree: top-level ``train/``, ``dev/``, ``test/`` folders become those splits; otherwise everything is ``all``.
The speaker is the audio file's parent folder. CSV/TSV: paths are relative to the table's folder;
the split is the table's file name (``train.csv`` -> ``train.jsonl``); optional ``speaker``, and ``start``/``offset``
with ``end``/``duration`` columns (seconds) for segments of longer recordings.
"""

from __future__ import annotations

import csv
from pathlib import Path

from asrforge_runtime.audio import AUDIO_SUFFIXES
from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.manifest import Skipped

PATH_COLUMNS = ("audio_filepath", "path", "audio", "file", "filename", "wav")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence")


def _from_tree(root: Path, split: str, listing: SplitListing) -> None:
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        txt = audio.with_suffix(".txt")
        rel = audio.relative_to(root).with_suffix("").as_posix()
        speaker = audio.parent.name if audio.parent != root else None
        if listing.audio_only:
            listing.candidates.append(Candidate(rel.replace("/", "-"), str(audio), "", speaker))
            continue
        if not txt.is_file():
            listing.skipped.append(Skipped(str(audio), f"no transcript {txt.name} beside it; write one or remove the file"))
            continue
        text = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
        listing.candidates.append(Candidate(rel.replace("/", "-"), str(audio), text, speaker))


def _from_table(table: Path, audio_only: bool) -> SplitListing:
    listing = SplitListing(audio_only=audio_only)
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    with open(table, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        path_col = next((c for c in PATH_COLUMNS if c in fields), None)
        text_col = next((c for c in TEXT_COLUMNS if c in fields), None)
        if not path_col or not (text_col or audio_only):
            listing.skipped.append(Skipped(str(table), f"missing column: need a path column ({'/'.join(PATH_COLUMNS)}) "
                                                       f"and a text column ({'/'.join(TEXT_COLUMNS)})"))
            return listing
        original = {c.strip().lower(): c for c in reader.fieldnames}
        for n, row in enumerate(reader, 2):
            path = row.get(original[path_col])
            text = "" if audio_only else row.get(original[text_col])
            if not path or text is None:
                listing.skipped.append(Skipped(f"{table}:{n}", "row does not parse (empty path or text)"))
                continue
            audio = Path(path) if Path(path).is_absolute() else table.parent / path
            speaker = row.get(original["speaker"]) if "speaker" in original else None
            try:
                offset, duration = _times(row, original)
            except ValueError as e:
                listing.skipped.append(Skipped(f"{table}:{n}", f"row does not parse ({e})"))
                continue
            uid = Path(path).with_suffix("").as_posix().replace("/", "-")
            if offset or duration is not None:      # several segments of one recording: tell them apart
                uid = f"{uid}-{int(round(offset * 100)):07d}"
            listing.candidates.append(Candidate(uid, str(audio), text, speaker, offset, duration))
    return listing


def _times(row: dict, columns: dict[str, str]) -> tuple[float, float | None]:
    """A segment's (offset, duration) in seconds from optional ``start``/``offset`` and ``end``/``duration``
    columns; (0, None), the whole file, without them."""
    def value(*names: str) -> float | None:
        name = next((n for n in names if n in columns and (row.get(columns[n]) or "").strip()), None)
        if name is None:
            return None
        try:
            return float(row[columns[name]])
        except ValueError:
            raise ValueError(f"{name} {row[columns[name]]!r} is not a number of seconds") from None

    start = value("start", "offset") or 0.0
    end, duration = value("end"), value("duration")
    if end is not None:
        duration = end - start
    if start < 0 or (duration is not None and duration <= 0):
        raise ValueError(f"segment {start:g}-{start + (duration or 0):g} s is empty or negative")
    return start, duration


def list_folder(src: Path, audio_only: bool = False) -> dict[str, SplitListing]:
    if src.is_file() and src.suffix.lower() in (".csv", ".tsv"):
        return {src.stem: _from_table(src, audio_only)}
    if not src.is_dir():
        raise LayoutError(f"{src} is neither a folder of audio files with .txt transcripts nor a .csv/.tsv table")
    tables = sorted(p for p in src.iterdir() if p.suffix.lower() in (".csv", ".tsv"))
    if tables:
        return {t.stem: _from_table(t, audio_only) for t in tables}
    named = [d for d in ("train", "dev", "test") if (src / d).is_dir()]
    splits = {}
    for split, root in ([(d, src / d) for d in named] if named else [("all", src)]):
        _from_tree(root, split, splits.setdefault(split, SplitListing(audio_only=audio_only)))
    if not any(s.candidates or s.skipped for s in splits.values()):
        raise LayoutError(f"{src} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) and no .csv/.tsv table")
    return splits
