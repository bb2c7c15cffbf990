"""Your own recordings: a tree of audio files each with a same-named ``.txt`` transcript, or a CSV/TSV with
path and text columns. With ``audio_only``, every audio file is listed with an empty transcript: noise and
room-impulse-response collections for ``augment.*``, or untranscribed audio for ``asrforge adapt``.

Tree: top-level ``train/``, ``dev/``, ``test/`` folders become those splits; otherwise everything is ``all``.
The speaker is the audio file's parent folder. CSV/TSV: paths are relative to the table's folder;
the split is the table's file name (``train.csv`` -> ``train.jsonl``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from asrforge.audio.io import AUDIO_SUFFIXES
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
            listing.candidates.append(Candidate(Path(path).with_suffix("").as_posix().replace("/", "-"), str(audio),
                                                text, speaker))
    return listing


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
