"""The one result every recognizer returns: text, language, segments with words, duration.

:meth:`Result.to_dict` gives openai-whisper's layout (``{"text", "segments": [{"id", "seek", "start", "end",
"text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob", "words"}], "language"}``)
plus ``duration``, and ``speaker`` on segments and words when the speakers were found (diarization). Fields a
model does not produce are left out: asrforge's own models have no sampling temperature or no-speech
probability, and only models that align words to the audio give ``words``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class Word:
    word: str
    start: float                        # seconds from the start of the input
    end: float
    probability: float | None = None    # Whisper: the decoder's probability of the word's tokens
    speaker: str | None = None          # with diarization: who said it (SPEAKER_1, ...)

    def to_dict(self) -> dict:
        return _without_none({"word": self.word, "start": self.start, "end": self.end, "probability": self.probability,
                              "speaker": self.speaker})


@dataclass
class Segment:
    start: float                        # seconds from the start of the input
    end: float
    text: str
    words: list[Word] | None = None     # None: not aligned (the model cannot, or word times were not asked for)
    id: int = 0
    seek: int = 0                       # Whisper: the window's first frame (10 ms each)
    # how Whisper decoded the window (None for asrforge's own models)
    tokens: list[int] | None = None
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    speaker: str | None = None          # with diarization: who spoke it (SPEAKER_1, ...)

    _ORDER = ("id", "seek", "start", "end", "speaker", "text", "tokens", "temperature", "avg_logprob",
              "compression_ratio", "no_speech_prob")

    def to_dict(self) -> dict:
        out = _without_none({k: getattr(self, k) for k in self._ORDER})
        if self.words is not None:
            out["words"] = [w.to_dict() for w in self.words]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        known = {f.name for f in fields(cls)} - {"words"}
        words = None if d.get("words") is None else [Word(**w) for w in d["words"]]
        return cls(words=words, **{k: v for k, v in d.items() if k in known})


@dataclass
class Result:
    text: str
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None         # a language code; None for models without a language choice
    duration: float = 0.0               # seconds of audio read
    language_probs: dict[str, float] | None = None    # Whisper, when it detected the language
    source: str | None = None           # the file it came from, when it came from one

    @property
    def words(self) -> list[Word]:
        """Every segment's words, in order (empty when the result has no word times)."""
        return [w for s in self.segments for w in (s.words or [])]

    def to_dict(self) -> dict:
        """openai-whisper's layout, plus ``duration``; JSON-ready."""
        out = {"text": self.text, "segments": [s.to_dict() for s in self.segments], "language": self.language,
               "duration": self.duration}
        if self.language_probs is not None:
            out["language_probs"] = self.language_probs
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        """The inverse of :meth:`to_dict` (e.g. a JSON file ``asrforge transcribe`` wrote)."""
        return cls(d["text"], [Segment.from_dict(s) for s in d.get("segments", [])], d.get("language"),
                   d.get("duration", 0.0), d.get("language_probs"), d.get("source"))


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
