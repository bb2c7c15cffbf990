"""Speakers onto a transcript: each word takes the speaker whose turns it overlaps most, and a segment whose words
change speaker is split there, so every segment (and subtitle cue) has one speaker. A segment without word times
takes the speaker it overlaps most as a whole."""

from __future__ import annotations

from dataclasses import replace

from asrforge.inference.diarization import Diarization
from asrforge_runtime.result import Result, Segment, Word


def assign_speakers(result: Result, diarization: Diarization) -> Result:
    """``result`` with ``speaker`` set on every segment and word (None where there are no turns at all)."""
    segments: list[Segment] = []
    for segment in result.segments:
        if not segment.words:
            segments.append(replace(segment, speaker=diarization.speaker_at(segment.start, segment.end)))
            continue
        words = [replace(w, speaker=diarization.speaker_at(w.start, w.end)) for w in segment.words]
        groups: list[list[Word]] = []
        for w in words:
            if groups and groups[-1][-1].speaker == w.speaker:
                groups[-1].append(w)
            else:
                groups.append([w])
        if len(groups) == 1:
            segments.append(replace(segment, words=words, speaker=words[0].speaker))
            continue
        for i, group in enumerate(groups):    # split: the pieces' token ids and scores no longer apply to them
            segments.append(Segment(
                start=segment.start if i == 0 else group[0].start,
                end=segment.end if i == len(groups) - 1 else group[-1].end,
                text=_joined(group), words=group, seek=segment.seek, temperature=segment.temperature,
                speaker=group[0].speaker))
    for i, s in enumerate(segments):
        s.id = i
    return replace(result, segments=segments)


def _joined(words: list[Word]) -> str:
    """The words' text as the segment's: Whisper's words carry their own leading spaces, ours do not."""
    if all(w.word[:1].isspace() for w in words):
        return "".join(w.word for w in words)
    return " ".join(w.word.strip() for w in words)


def with_word_times(recognizer, options: dict) -> dict:
    """``options`` asking for word times where the model has them and they were not set either way: words take
    speakers, and segments split where the speaker changes."""
    if recognizer.word_timestamps and options.get("word_timestamps") is None:
        return {**options, "word_timestamps": True}
    return options


def transcribe_with_speakers(recognizer, diarizer, wave, diarize_options=None, **options) -> Result:
    """Transcribe 16-kHz samples ``(N,)`` and find who spoke when (the server and the web app, which decode in
    pieces on their scheduler, use :func:`with_word_times` and :func:`assign_speakers` themselves)."""
    result = recognizer.transcribe(wave, **with_word_times(recognizer, options))
    return assign_speakers(result, diarizer(wave, diarize_options))
