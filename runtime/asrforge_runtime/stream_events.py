"""What every streaming engine shares: audio in as it arrives, ``partial`` and ``final`` events out.

:class:`AudioStream` takes audio at any rate (resampled to 16 kHz as it arrives) and hands an engine its samples;
:class:`StreamEvent` is what comes out, :class:`EndpointRules` when an utterance ends (sherpa-onnx's three rules),
:func:`finals_result` the finals as one :class:`~asrforge_runtime.result.Result`. asrforge's engines (re-decoding
in ``asrforge.inference.streaming``, the streaming models' in :mod:`asrforge_runtime.native_streaming`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asrforge_runtime.audio import SAMPLE_RATE
from asrforge_runtime.errors import ConfigError
from asrforge_runtime.result import Result, Segment, Word


@dataclass(frozen=True)
class EndpointRules:
    """When an utterance ends (sherpa-onnx's three rules, in seconds)."""

    silence_after_text_s: float = 1.0       # trailing silence after decoded text
    silence_without_text_s: float = 2.4     # trailing silence when the utterance decoded to nothing
    max_utterance_s: float = 20.0           # an utterance this long ends anyway

    def check(self) -> None:
        for name in ("silence_after_text_s", "silence_without_text_s", "max_utterance_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"endpoint rule {name} must be above 0; got {getattr(self, name)}")


@dataclass
class StreamEvent:
    """``partial``: the current utterance as decoded now (the next partial or final replaces it). ``final``: an
    utterance's words for good, numbered by ``segment`` from 0."""

    type: str
    text: str
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    segment: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "StreamEvent":
        """The inverse of :meth:`to_dict` (an event a server sent)."""
        words = [Word(w["word"], w["start"], w["end"]) for w in d.get("words", [])]
        return cls(d["type"], d["text"], d["start"], d["end"], words, d.get("segment"))

    def to_dict(self) -> dict:
        out = {"type": self.type, "text": self.text, "start": self.start, "end": self.end}
        if self.type == "final":
            out["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in self.words]
            out["segment"] = self.segment
        return out


class AudioStream:
    """What every engine's stream shares: audio in (resampled to 16 kHz as it arrives), events out. Feed it with
    :meth:`accept_waveform`, end it with :meth:`finish`; events come out of :meth:`pop_events` after the engine's
    ``decode_streams``. An engine's stream takes the 16 kHz samples in ``_append``."""

    def __init__(self, options: dict):
        self.options = options
        self.received = 0               # samples received (16 kHz)
        self.segments = 0
        self.finished = False
        self.flushed = False            # the end was decoded
        self.finals: list[StreamEvent] = []
        self._events: list[StreamEvent] = []
        self._resampler = None
        self._rate: int | None = None

    def accept_waveform(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Mono float samples ``(N,)`` in [-1, 1] at ``sample_rate`` (resampled to 16 kHz as they arrive)."""
        if self.finished:
            raise ConfigError("this stream was finished; create a new stream for more audio")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._rate is None:
            self._rate = int(sample_rate)
            if self._rate <= 0:
                raise ConfigError(f"sample_rate must be a positive number of samples per second; got {sample_rate}")
            if self._rate != SAMPLE_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(self._rate, SAMPLE_RATE, 1, dtype="float32")
        elif int(sample_rate) != self._rate:
            raise ConfigError(f"sample_rate changed from {self._rate} to {sample_rate} within one stream")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        if len(samples):
            self.received += len(samples)
            self._append(samples)

    def finish(self) -> None:
        """No more audio: the engine's next ``decode_streams`` commits what is left."""
        if self._resampler is not None and not self.finished:
            rest = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(rest):
                self.received += len(rest)
                self._append(rest)
        self.finished = True

    def _append(self, samples: np.ndarray) -> None:
        raise NotImplementedError

    def pop_events(self) -> list[StreamEvent]:
        events, self._events = self._events, []
        return events

    @property
    def seconds(self) -> float:
        return self.received / SAMPLE_RATE

    def _emit(self, event: StreamEvent) -> None:
        self._events.append(event)
        if event.type == "final":
            self.finals.append(event)

    def result(self) -> Result:
        """The finals so far as one :class:`Result` (a segment per final), for srt/vtt/json writers."""
        return finals_result(self.finals, self.seconds, self.options.get("language"))


def finals_result(finals: list[StreamEvent], seconds: float, language: str | None = None) -> Result:
    """Final events -> one :class:`Result`, a segment per final."""
    segments = [Segment(e.start, e.end, e.text, e.words, i) for i, e in enumerate(finals)]
    return Result(" ".join(e.text for e in finals), segments, language, seconds)
