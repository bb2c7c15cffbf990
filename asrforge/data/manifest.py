"""Manifests: JSONL, one utterance a line (NeMo-compatible field names).

``{"audio_filepath": "a/b.wav", "duration": 2.1, "text": "...", "offset": 0.0, "speaker": "s1", "id": "u1"}``
Relative ``audio_filepath`` values are resolved from the manifest's own folder. An optional ``"channel"``
(0-based) picks one channel of a multichannel recording, as a telephone call's two sides are two utterances;
without it channels are averaged.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asrforge_runtime.audio import load_audio
from asrforge.errors import ManifestError


@dataclass
class Utterance:
    audio_filepath: str        # absolute once read; written relative to the manifest when possible
    duration: float
    text: str
    offset: float = 0.0
    speaker: str | None = None
    id: str | None = None
    channel: int | None = None  # 0-based; None: the channels averaged
    language: str | None = None  # the line's `lang` (or `language`): a multilingual Whisper's language token


@dataclass
class Skipped:
    """An item a batch job left out, and why (written to skip reports, counted in summaries)."""
    item: str
    reason: str


REQUIRED = ("audio_filepath", "duration", "text")


def parse_line(line: str, base: str) -> Utterance:
    """One JSONL line -> :class:`Utterance`, or :class:`ManifestError` saying what is wrong with it (the caller
    adds where). Plain string paths, not ``Path``: a million-line manifest is read on every rank and worker."""
    return parse_object(read_json_line(line), base)


def read_json_line(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"not valid JSON ({e.msg}); each line must be one JSON object") from None


def parse_object(obj: object, base: str) -> Utterance:
    """A manifest line already read as JSON -> :class:`Utterance` (see :func:`parse_line`)."""
    if not isinstance(obj, dict):
        raise ManifestError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ManifestError(f"missing field(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}")
    try:
        duration = float(obj["duration"])
        offset = float(obj.get("offset") or 0.0)
    except (TypeError, ValueError):
        raise ManifestError("duration/offset must be numbers") from None
    if not math.isfinite(duration) or duration <= 0:
        raise ManifestError(f"duration must be a positive number of seconds, got {obj['duration']!r}")
    if not isinstance(obj["text"], str):
        raise ManifestError("text must be a string")
    channel = obj.get("channel")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int) or channel < 0):
        raise ManifestError(f"channel must be a channel number counted from 0, got {channel!r}")
    path = os.path.join(base, str(obj["audio_filepath"]))    # an absolute path stays as it is
    speaker, uid = obj.get("speaker"), obj.get("id")
    language = obj.get("lang", obj.get("language"))
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise ManifestError(f"lang must be a language name or code such as \"de\", got {language!r}")
    return Utterance(
        audio_filepath=path, duration=duration, text=obj["text"], offset=offset,
        speaker=None if speaker is None else str(speaker),
        id=str(uid) if uid is not None else os.path.splitext(os.path.basename(path))[0], channel=channel,
        language=None if language is None else language.strip(),
    )


def read_manifest(path: str | Path) -> tuple[list[Utterance], list[Skipped]]:
    """Read a JSONL manifest. Bad lines are returned as :class:`Skipped` instead of aborting the read."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist; create one with `asrforge synth` or an importer")
    base = str(path.parent.resolve())
    utts, skipped = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                utts.append(parse_line(line, base))
            except ManifestError as e:
                skipped.append(Skipped(f"{path}:{n}", str(e)))
    return utts, skipped


def write_manifest(path: str | Path, utts: list[Utterance], relative: bool = True) -> None:
    """Write utterances as JSONL; paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for u in utts:
            row = asdict(u)
            for key in ("channel", "language"):
                if row[key] is None:
                    del row[key]         # the usual case: keep lines as other NeMo-style tools write them
            if "language" in row:
                row["lang"] = row.pop("language")
            audio = Path(u.audio_filepath)
            if relative and audio.is_absolute() and audio.resolve().is_relative_to(base):
                row["audio_filepath"] = os.path.relpath(audio.resolve(), base)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)  # atomic: a crashed writer never leaves half a manifest


def missing_audio(utts: list[Utterance]) -> set[str]:
    """The ``audio_filepath`` values of ``utts`` that do not exist, found with one listing per folder: a
    ``stat`` per file is a network round trip on the shared filesystems large corpora live on (a million
    Common Voice clips sit in one folder)."""
    by_folder: dict[str, set[str]] = {}
    for u in utts:
        folder, name = os.path.split(u.audio_filepath)
        by_folder.setdefault(folder, set()).add(name)
    missing = set()
    for folder, names in by_folder.items():
        try:
            present = set(os.listdir(folder or "."))
        except OSError:           # no such folder, or not one
            present = set()
        # what the listing lacks is checked once more by name: a case-insensitive filesystem opens "A.wav" as "a.wav"
        missing.update(path for path in (os.path.join(folder, name) for name in names - present)
                       if not os.path.isfile(path))
    return missing


def load_utterance(u: Utterance) -> np.ndarray:
    """The audio ``u`` names: ``duration`` seconds from ``offset``, of its channel -> ``(N,)`` float32, 16 kHz.

    Always the slice, even from offset 0: a segment at the start of a long recording is still a segment."""
    return load_audio(u.audio_filepath, offset=u.offset, duration=u.duration, channel=u.channel)
