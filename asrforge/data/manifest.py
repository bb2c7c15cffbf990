"""Manifests: JSONL, one utterance a line (NeMo-compatible field names).

``{"audio_filepath": "a/b.wav", "duration": 2.1, "text": "...", "offset": 0.0, "speaker": "s1", "id": "u1"}``
Relative ``audio_filepath`` values are resolved from the manifest's own folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from asrforge.errors import ManifestError


@dataclass
class Utterance:
    audio_filepath: str        # absolute once read; written relative to the manifest when possible
    duration: float
    text: str
    offset: float = 0.0
    speaker: str | None = None
    id: str | None = None


@dataclass
class Skipped:
    """An item a batch job left out, and why (written to skip reports, counted in summaries)."""
    item: str
    reason: str


REQUIRED = ("audio_filepath", "duration", "text")


def parse_line(line: str, base: Path, where: str) -> Utterance:
    """One JSONL line -> :class:`Utterance`, or :class:`ManifestError` saying what is wrong."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}")
    try:
        duration = float(obj["duration"])
        offset = float(obj.get("offset") or 0.0)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: duration/offset must be numbers") from None
    if not math.isfinite(duration) or duration <= 0:
        raise ManifestError(f"{where}: duration must be a positive number of seconds, got {obj['duration']!r}")
    if not isinstance(obj["text"], str):
        raise ManifestError(f"{where}: text must be a string")
    path = Path(str(obj["audio_filepath"]))
    if not path.is_absolute():
        path = base / path
    return Utterance(
        audio_filepath=str(path), duration=duration, text=obj["text"], offset=offset,
        speaker=None if obj.get("speaker") is None else str(obj["speaker"]),
        id=str(obj["id"]) if obj.get("id") is not None else path.stem,
    )


def read_manifest(path: str | Path) -> tuple[list[Utterance], list[Skipped]]:
    """Read a JSONL manifest. Bad lines are returned as :class:`Skipped` instead of aborting the read."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist; create one with `asrforge synth` or an importer")
    base = path.parent.resolve()
    utts, skipped = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                utts.append(parse_line(line, base, f"{path}:{n}"))
            except ManifestError as e:
                skipped.append(Skipped(f"{path}:{n}", str(e).split(": ", 1)[-1]))
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
            audio = Path(u.audio_filepath)
            if relative and audio.is_absolute() and audio.resolve().is_relative_to(base):
                row["audio_filepath"] = os.path.relpath(audio.resolve(), base)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)  # atomic: a crashed writer never leaves half a manifest
