"""Kaldi data directories: ``wav.scp``, ``text``, optional ``segments`` and ``utt2spk``. Import and export.

SRC is one data directory (its name becomes the split) or a folder of them (``data/train``, ``data/dev``, ...).
``wav.scp`` entries that are shell pipelines (``sox ... |``) are reported, not run.
"""

from __future__ import annotations

import os
from pathlib import Path

from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.manifest import Skipped, Utterance


def _table(path: Path) -> tuple[dict[str, str], list[Skipped]]:
    """Two-column Kaldi table (key, rest of line)."""
    rows, bad = {}, []
    if not path.is_file():
        return rows, bad
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not value.strip() and path.name != "text":
            bad.append(Skipped(f"{path}:{n}", f"line does not parse (expected '<key> <value>' in {path.name})"))
            continue
        rows[key] = value.strip()
    return rows, bad


def _list_datadir(d: Path) -> SplitListing:
    listing = SplitListing()
    wavs, bad = _table(d / "wav.scp")
    texts, bad_text = _table(d / "text")
    utt2spk, _ = _table(d / "utt2spk")
    listing.skipped += bad + bad_text
    if (d / "segments").is_file():
        segments, bad_seg = _table(d / "segments")
        listing.skipped += bad_seg
        units = {}
        for utt, value in segments.items():
            parts = value.split()
            try:
                units[utt] = (parts[0], float(parts[1]), float(parts[2]) - float(parts[1]))
            except (IndexError, ValueError):
                listing.skipped.append(Skipped(utt, f"segments line does not parse: {value!r}"))
    else:
        units = {utt: (utt, 0.0, None) for utt in wavs}
    for utt, (rec, offset, duration) in sorted(units.items()):
        if utt not in texts:
            listing.skipped.append(Skipped(utt, "no line in text"))
            continue
        if rec not in wavs:
            listing.skipped.append(Skipped(utt, f"recording {rec} has no wav.scp entry"))
            continue
        source = wavs[rec]
        if source.endswith("|"):
            listing.skipped.append(Skipped(utt, "wav.scp entry is a command pipeline; not supported (convert the audio to files)"))
            continue
        audio = Path(source) if Path(source).is_absolute() else d / source
        listing.candidates.append(Candidate(utt, str(audio), texts[utt], utt2spk.get(utt), offset, duration))
    return listing


def list_kaldi(src: Path) -> dict[str, SplitListing]:
    if (src / "wav.scp").is_file():
        return {src.name: _list_datadir(src)}
    dirs = sorted(d for d in src.iterdir() if (d / "wav.scp").is_file()) if src.is_dir() else []
    if not dirs:
        raise LayoutError(f"{src} is not a Kaldi data directory: expected SRC/wav.scp and SRC/text "
                          "(or SRC/<split>/wav.scp, ...)")
    return {d.name: _list_datadir(d) for d in dirs}


def export_kaldi(utts: list[Utterance], out: str | Path) -> None:
    """Write a Kaldi data directory: wav.scp, text, utt2spk, spk2utt, and segments when any offset is set."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    utts = sorted(utts, key=lambda u: (u.speaker or u.id, u.id))   # Kaldi wants speaker-major sort order
    # segments are needed when an utterance is a slice: it has an offset, or several share one file
    segmented = any(u.offset for u in utts) or len({u.audio_filepath for u in utts}) < len(utts)
    recordings: dict[str, str] = {}
    for u in utts:
        recordings.setdefault(Path(u.audio_filepath).stem if segmented else u.id, os.path.abspath(u.audio_filepath))
    (out / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(recordings.items())))
    (out / "text").write_text("".join(f"{u.id} {u.text}\n" for u in utts), encoding="utf-8")
    (out / "utt2spk").write_text("".join(f"{u.id} {u.speaker or u.id}\n" for u in utts))
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker or u.id, []).append(u.id)
    (out / "spk2utt").write_text("".join(f"{s} {' '.join(ids)}\n" for s, ids in sorted(spk2utt.items())))
    if segmented:
        (out / "segments").write_text("".join(
            f"{u.id} {Path(u.audio_filepath).stem} {u.offset:.2f} {u.offset + u.duration:.2f}\n" for u in utts))
