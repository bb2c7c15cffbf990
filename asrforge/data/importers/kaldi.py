"""Kaldi data directories: ``wav.scp``, ``text``, optional ``segments`` and ``utt2spk``. Import and export.

SRC is one data directory (its name becomes the split) or a folder of them (``data/train``, ``data/dev``, ...).
``wav.scp`` entries that are decoding commands (``flac -c -d -s X.flac |``, ``sph2pipe -f wav -p -c 1 X.sph |``)
read the file they name (wav_scp.py); a command that changes the audio is reported, never run.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from asrforge_runtime.audio import audio_info
from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.importers.wav_scp import UnsupportedEntry, parse_wav_scp_entry
from asrforge.data.manifest import Skipped, Utterance
from asrforge.errors import AsrforgeError


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
        try:
            source = parse_wav_scp_entry(wavs[rec])
        except UnsupportedEntry as e:
            listing.skipped.append(Skipped(utt, f"wav.scp entry of {rec} is not supported: {e}"))
            continue
        listing.candidates.append(Candidate(utt, str(_resolve(source.path, d)), texts[utt], utt2spk.get(utt),
                                            offset, duration, source.channel))
    return listing


def _resolve(path: str, datadir: Path) -> Path:
    """A relative wav.scp path is relative to the recipe folder Kaldi ran in (``s5/`` for ``s5/data/train``);
    failing that, to the data directory itself."""
    p = Path(path)
    if p.is_absolute():
        return p
    recipe = datadir.parent.parent / p
    return recipe if recipe.exists() else datadir / p


def list_kaldi(src: Path) -> dict[str, SplitListing]:
    if (src / "wav.scp").is_file():
        return {src.name: _list_datadir(src)}
    dirs = sorted(d for d in src.iterdir() if (d / "wav.scp").is_file()) if src.is_dir() else []
    if not dirs:
        raise LayoutError(f"{src} is not a Kaldi data directory: expected SRC/wav.scp and SRC/text "
                          "(or SRC/<split>/wav.scp, ...)")
    return {d.name: _list_datadir(d) for d in dirs}


def export_kaldi(utts: list[Utterance], out: str | Path) -> None:
    """Write a Kaldi data directory: wav.scp, text, utt2spk, spk2utt, and segments when any offset is set.

    Kaldi reads only RIFF WAV itself, so other formats are written as the decoding commands its own recipes use
    (:func:`wav_scp_entry`), which the importer reads back without running them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    utts = sorted(utts, key=lambda u: (u.speaker or u.id, u.id))   # Kaldi wants speaker-major sort order
    sources = {(os.path.abspath(u.audio_filepath), u.channel) for u in utts}
    # segments are needed when an utterance is a slice: it has an offset, several share one recording, or it
    # ends before its file does
    segmented = any(u.offset for u in utts) or len(sources) < len(utts) or not all(map(_whole_file, utts))
    recording_ids = _recording_ids(sorted(sources, key=lambda s: (s[0], -1 if s[1] is None else s[1]))) if segmented else {}
    wav_scp: dict[str, str] = {}
    for u in utts:
        source = (os.path.abspath(u.audio_filepath), u.channel)
        key = recording_ids[source] if segmented else u.id
        wav_scp[key] = wav_scp_entry(*source)
    (out / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(wav_scp.items())))
    (out / "text").write_text("".join(f"{u.id} {u.text}\n" for u in utts), encoding="utf-8")
    (out / "utt2spk").write_text("".join(f"{u.id} {u.speaker or u.id}\n" for u in utts))
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker or u.id, []).append(u.id)
    (out / "spk2utt").write_text("".join(f"{s} {' '.join(ids)}\n" for s, ids in sorted(spk2utt.items())))
    if segmented:
        (out / "segments").write_text("".join(
            f"{u.id} {recording_ids[(os.path.abspath(u.audio_filepath), u.channel)]} {u.offset:.2f} "
            f"{u.offset + u.duration:.2f}\n" for u in utts))


def wav_scp_entry(path: str, channel: int | None = None) -> str:
    """How Kaldi reads ``path`` (and one channel of it): a WAV file as it is; FLAC through ``flac``, SPHERE through
    ``sph2pipe``, anything else (mp3, ogg, opus) through ``ffmpeg``; a channel of a non-SPHERE file through sox."""
    quoted, suffix = shlex.quote(path), Path(path).suffix.lower()
    if suffix == ".sph":
        return f"sph2pipe -f wav -p{'' if channel is None else f' -c {channel + 1}'} {quoted} |"
    if channel is not None:
        return f"sox {quoted} -t wav - remix {channel + 1} |"
    if suffix == ".wav":
        return quoted
    if suffix == ".flac":
        return f"flac -c -d -s {quoted} |"
    return f"ffmpeg -nostdin -loglevel quiet -i {quoted} -f wav -ar 16000 -ac 1 - |"


def _whole_file(u: Utterance) -> bool:
    """Whether ``u`` is all of its file (so wav.scp alone describes it); unreadable files count as slices."""
    try:
        rate, frames = audio_info(u.audio_filepath)
    except AsrforgeError:
        return False
    return not u.offset and abs(frames / rate - u.duration) < 0.01


def _recording_ids(sources: list[tuple[str, int | None]]) -> dict[tuple[str, int | None], str]:
    """A recording id per (file, channel): the file's stem, with ``-<channel>`` for one channel (Switchboard's
    ``sw02001-1``), and ``-<n>`` added where two files in different folders share a stem."""
    ids, used = {}, set()
    for path, channel in sources:
        base = Path(path).stem + ("" if channel is None else f"-{channel + 1}")
        key, n = base, 1
        while key in used:
            n += 1
            key = f"{base}-{n}"
        used.add(key)
        ids[(path, channel)] = key
    return ids
