"""Write transcription results as txt, srt, vtt, tsv or json, named ``<output dir>/<audio stem>.<format>``
as openai-whisper names them. With speakers (diarization) each segment's text is led by ``[SPEAKER_1]``; json
carries them as ``speaker`` fields."""

from __future__ import annotations

import json
from pathlib import Path

from asrforge_runtime.result import Result, Segment

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


def format_timestamp(seconds: float, always_hours: bool = False, decimal: str = ".") -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _spoken(segment: Segment) -> str:
    """The segment's text, after ``[SPEAKER_1] `` when its speaker is known."""
    return (f"[{segment.speaker}] " if segment.speaker else "") + segment.text.strip()


def _cue_text(segment: Segment) -> str:
    return _spoken(segment).replace("-->", "->")   # "-->" would end the cue's timing line


def to_txt(result: Result) -> str:
    return "".join(_spoken(s) + "\n" for s in result.segments)


def to_srt(result: Result) -> str:
    return "".join(f"{i}\n{format_timestamp(s.start, True, ',')} --> {format_timestamp(s.end, True, ',')}\n"
                   f"{_cue_text(s)}\n\n" for i, s in enumerate(result.segments, start=1))


def to_vtt(result: Result) -> str:
    return "WEBVTT\n\n" + "".join(f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{_cue_text(s)}\n\n"
                                  for s in result.segments)


def to_tsv(result: Result) -> str:
    """Milliseconds as integers, as the reference writes them (tabs in text become spaces)."""
    rows = ["start\tend\ttext"]
    rows += [f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{_spoken(s).replace(chr(9), ' ')}"
             for s in result.segments]
    return "\n".join(rows) + "\n"


def to_json(result: Result) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False)


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv, "json": to_json}


def write_result(result: Result, name: str, output_dir: str | Path, output_format: str) -> list[Path]:
    """Write one or all (``"all"``) formats as ``output_dir/<name>.<format>`` (``name`` may hold subfolders);
    returns the files written."""
    formats = FORMATS if output_format == "all" else (output_format,)
    written = []
    for fmt in formats:
        path = Path(output_dir) / f"{name}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(WRITERS[fmt](result), encoding="utf-8")
        written.append(path)
    return written
