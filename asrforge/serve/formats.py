"""A :class:`Result` as OpenAI's audio API answers: ``json``, ``text``, ``srt``, ``vtt``, ``verbose_json``, and
the Server-Sent Events of ``stream=true``. Field for field as in the ``openai`` package's ``types/audio/``:
``Transcription``, ``TranscriptionVerbose`` (``TranscriptionSegment``, ``TranscriptionWord``), ``Translation``,
``TranslationVerbose``, ``TranscriptionDiarized`` (``diarized_json``: segments of one speaker each, speakers
lettered A, B, ... as OpenAI letters them) and the stream's ``transcript.text.delta`` / ``transcript.text.done``
events.

What a model does not measure is null rather than made up: asrforge's own models decode by search, so their
segments have no tokens of Whisper's vocabulary, log-probability, compression ratio or no-speech probability.
"""

from __future__ import annotations

import json

from asrforge_runtime.result import Result, Segment
from asrforge_runtime.writers import to_srt, to_vtt
from asrforge.text.whisper_languages import LANGUAGE_NAMES

TEXT_FORMATS = {"text": "text/plain", "srt": "text/plain", "vtt": "text/vtt"}


def usage(duration: float) -> dict:
    """OpenAI's duration usage: the seconds of audio the request was billed for."""
    return {"type": "duration", "seconds": round(duration, 3)}


def language_name(code: str | None) -> str | None:
    """``"en"`` -> ``"english"``, as OpenAI names the language in verbose_json."""
    return None if code is None else LANGUAGE_NAMES.get(code, code)


def segment_object(s: Segment) -> dict:
    return {"id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text,
            "tokens": list(s.tokens or []), "temperature": 0.0 if s.temperature is None else s.temperature,
            "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob}


def verbose_object(result: Result, task: str, granularities: tuple[str, ...]) -> dict:
    """``TranscriptionVerbose`` / ``TranslationVerbose``: segments unless only words were asked for, words when
    they were."""
    out = {"task": task, "language": "english" if task == "translate" else language_name(result.language),
           "duration": round(result.duration, 3), "text": result.text.strip()}
    if "segment" in granularities or not granularities:
        out["segments"] = [segment_object(s) for s in result.segments]
    if "word" in granularities:
        out["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in result.words]
    out["usage"] = usage(result.duration)
    return out


def speaker_letter(speaker: str | None) -> str:
    """``SPEAKER_1`` -> ``A``, ``SPEAKER_2`` -> ``B``, ... (past Z: ``AA``, ``AB``, ...); no speaker: ``A``."""
    number = int(speaker.rsplit("_", 1)[1]) if speaker and speaker.rsplit("_", 1)[-1].isdigit() else 1
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def diarized_object(result: Result) -> dict:
    """``TranscriptionDiarized``: the transcript and its segments, each of one speaker."""
    segments = [{"type": "transcript.text.segment", "id": f"seg_{s.id}", "start": s.start, "end": s.end,
                 "text": s.text.strip(), "speaker": speaker_letter(s.speaker)} for s in result.segments]
    return {"task": "transcribe", "duration": round(result.duration, 3), "text": result.text.strip(),
            "segments": segments, "usage": usage(result.duration)}


def response_body(result: Result, response_format: str, task: str, granularities: tuple[str, ...]) -> tuple[str, str]:
    """-> ``(body, media type)`` for a finished request."""
    if response_format == "json":
        return json.dumps({"text": result.text.strip(), "usage": usage(result.duration)}, ensure_ascii=False), \
            "application/json"
    if response_format == "verbose_json":
        return json.dumps(verbose_object(result, task, granularities), ensure_ascii=False), "application/json"
    if response_format == "diarized_json":
        return json.dumps(diarized_object(result), ensure_ascii=False), "application/json"
    if response_format == "text":
        return result.text.strip() + "\n", TEXT_FORMATS["text"]
    writer = {"srt": to_srt, "vtt": to_vtt}[response_format]
    return writer(result), TEXT_FORMATS[response_format]


def sse(event: dict) -> str:
    """One Server-Sent Event carrying ``event`` as JSON."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def delta_event(text: str) -> str:
    return sse({"type": "transcript.text.delta", "delta": text})


def done_event(text: str, duration: float) -> str:
    return sse({"type": "transcript.text.done", "text": text, "usage": usage(duration)})
