"""NIST RTTM, the file format of speaker turns: one line per turn,
``SPEAKER <file> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>``, times in seconds."""

from __future__ import annotations

from pathlib import Path

from asrforge.errors import AsrforgeError
from asrforge.inference.diarization import Turn


def to_rttm(file_id: str, turns: list[Turn]) -> str:
    """Turns of one recording as RTTM text; ``file_id`` must not hold spaces (they separate fields), so they
    become underscores."""
    name = "_".join(file_id.split()) or "audio"
    return "".join(f"SPEAKER {name} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
                   for t in turns)


def write_rttm(path: str | Path, file_id: str, turns: list[Turn]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_rttm(file_id, turns), encoding="utf-8")
    return path


def read_rttm(path: str | Path) -> dict[str, list[Turn]]:
    """An RTTM file -> ``{file id: turns in order of start}``; lines other than SPEAKER are passed over, and a
    malformed SPEAKER line is an error naming the file and line."""
    out: dict[str, list[Turn]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            start, duration = float(fields[3]), float(fields[4])
            speaker = fields[7]
        except (IndexError, ValueError):
            raise AsrforgeError(f"{path}:{number}: not an RTTM SPEAKER line (SPEAKER file channel start duration "
                                f"<NA> <NA> speaker <NA> <NA>): {line.strip()!r}") from None
        out.setdefault(fields[1], []).append(Turn(round(start, 3), round(start + duration, 3), speaker))
    for turns in out.values():
        turns.sort(key=lambda t: t.start)
    return out
