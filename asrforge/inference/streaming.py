"""Streaming recognition: audio in as it arrives, ``partial`` and ``final`` events out, over any recognizer.

In sherpa-onnx's shape: one shared :class:`StreamingRecognizer` and a :class:`Stream` of state per audio source::

    engine = StreamingRecognizer(load_model(path))
    stream = engine.create_stream(language="en")
    stream.accept_waveform(samples, sample_rate)      # any amount at a time, any rate
    engine.decode_streams([stream])                    # decodes what is due; cheap when nothing is
    for event in stream.pop_events(): ...             # StreamEvent: partial (may change) or final (never changes)
    stream.finish(); engine.decode_streams([stream])  # the last finals

How: a stream keeps the audio of its current utterance in a buffer. Every ``step_s`` seconds of new audio with
speech in it, the recognizer transcribes the whole buffer with word times and, where the model takes a prompt, the
text committed so far as its prompt. A word is committed once two consecutive transcriptions agree on it and on
everything before it (LocalAgreement-2, as ufal/whisper_streaming describes it): it no longer changes. A
``partial`` event carries the utterance so far (committed words, then the latest guess at the rest) whenever its
text changes. Silero VAD tells speech from silence: silence is never decoded, and an utterance ends by
sherpa-onnx's endpoint rules (:class:`EndpointRules`) with one ``final`` event, the utterance's words for good.
Behind committed words the buffer is trimmed once it is longer than ``trim_s``, and an utterance ends after
``EndpointRules.max_utterance_s`` at most, so a stream that runs for hours holds a bounded amount of audio.

Times in events count from the stream's first sample. Streams are decoded one after another (each has a prompt of
its own, which one batched call cannot take yet).
"""

from __future__ import annotations

import re

import numpy as np

from asrforge.errors import ConfigError
from asrforge.inference.recognizer import Recognizer
from asrforge.inference.vad import VAD_FRAME, speech_probabilities
from asrforge_runtime.audio import SAMPLE_RATE
from asrforge_runtime.result import Word
from asrforge_runtime.native_streaming import NATIVE_RULES, NativeStreamingRecognizer
from asrforge_runtime.stream_events import AudioStream, EndpointRules, StreamEvent
VAD_CONTEXT_FRAMES = 16         # frames of audio before the new ones that Silero sees again (its state warms up)
CHECK_FRAMES = 8                # VAD frames between two looks at a stream (0.256 s): endpoints are found this finely
SPEECH_PAD_S = 0.3              # kept around speech when the buffer is cut to it
PROMPT_CHARS = 200              # committed text given as the prompt (whisper_streaming's figure)
TOKENS_PER_SECOND = 16          # at most, text and timestamp tokens, per second of a buffer (speech has 3 to 5;
                                # a loop must run long enough for the compression-ratio check to see it)
MIN_TOKENS = 32
MATCH_WINDOW_S = 1.5            # how far from the committed end a repeat of the committed words is looked for


def _norm(word: str) -> str:
    """What two decodes of a word must share to agree on it: letters and digits, lower-cased."""
    return re.sub(r"[^\w']", "", word.lower())


def _after_committed(words: list[Word], tail: list[str], committed_to: float) -> int:
    """Where the words of a decode start to be new: after the place where it repeats the last committed words
    (``tail``, normalized) nearest the committed end, or, where it repeats none of them, after the words centred
    before that end. Word times move by a few tenths from one decode to the next, so times alone drop or repeat
    a word at the boundary."""
    names = [_norm(w.word) for w in words]
    for k in range(min(len(tail), len(words)), 0, -1):
        ends = [b for b in range(k, len(words) + 1)
                if names[b - k: b] == tail[-k:] and abs(words[b - 1].end - committed_to) < MATCH_WINDOW_S]
        if ends:
            return min(ends, key=lambda b: abs(words[b - 1].end - committed_to))
    return next((i for i, w in enumerate(words) if (w.start + w.end) / 2 > committed_to), len(words))


def _takes(recognizer: Recognizer, **option) -> bool:
    try:
        recognizer.check_options(**option)
        return True
    except ConfigError:
        return False


def _text(words: list[Word]) -> str:
    return " ".join(w.word.strip() for w in words if w.word.strip())


class Stream(AudioStream):
    """One audio source's state in a :class:`StreamingRecognizer`."""

    def __init__(self, options: dict):
        super().__init__(options)
        self.buffer = np.zeros(0, dtype=np.float32)   # the current utterance's audio
        self.buffer_start = 0           # the buffer's first sample, counted from the stream's start
        self.decoded_to = 0             # where the audio ended at the last decode
        self.vad_done = 0               # samples classified by the VAD (whole frames)
        self.vad_tail = np.zeros(0, dtype=np.float32)  # the audio just before vad_done, seen again for context
        self.last_speech_end: int | None = None       # end of the last speech frame
        self.committed_to = 0.0         # seconds: end of the last committed word
        self.committed_text = ""        # the prompt: committed text whose audio has left the buffer
        self.prompted = 0               # how many of ``agreed`` are in it
        self.last_committed: list[str] = []   # the last few committed words, normalized
        self.utterance_start = 0        # sample where the current utterance's audio began
        self.decodes = 0                # decodes of the current utterance so far
        self.agreed: list[Word] = []    # the current utterance's committed words
        self.tentative: list[Word] = []   # the last decode's words after the committed ones
        self.partial_text = ""

    def _append(self, samples: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, samples])

    # ---- voice activity -----------------------------------------------------------------------------------------
    def _classify(self, end: int) -> None:
        """Run the VAD over the audio from where it stopped to ``end`` (whole frames, but at the stream's end)."""
        if end <= self.vad_done:
            return
        new = self.buffer[self.vad_done - self.buffer_start: end - self.buffer_start]
        audio = np.concatenate([self.vad_tail, new])
        probs = speech_probabilities(audio)[len(self.vad_tail) // VAD_FRAME:]
        for k, p in enumerate(probs):
            if p >= 0.5:
                self.last_speech_end = min(end, self.vad_done + (k + 1) * VAD_FRAME)
        self.vad_tail = audio[-VAD_CONTEXT_FRAMES * VAD_FRAME:]
        self.vad_done = end

    def _trim(self, to_sample: int) -> None:
        """Forget the audio before ``to_sample`` (stream time; never past what the VAD has seen)."""
        cut = min(max(0, min(to_sample, self.vad_done) - self.buffer_start), len(self.buffer))
        self.buffer = self.buffer[cut:]
        self.buffer_start += cut

    @property
    def speech_in_buffer(self) -> bool:
        """Whether the VAD heard speech in the audio the buffer holds."""
        return self.last_speech_end is not None and self.last_speech_end > self.buffer_start


class StreamingRecognizer:
    """Streams over a shared :class:`Recognizer` that gives word times (see the module docstring)."""

    def __init__(self, recognizer: Recognizer, rules: EndpointRules = EndpointRules(), step_s: float = 1.0,
                 trim_s: float = 15.0, **options):
        if not recognizer.word_timestamps:
            raise ConfigError(f"{recognizer.source}: streaming needs word times, which this model cannot give")
        rules.check()
        if not step_s > 0:
            raise ConfigError(f"step must be above 0 seconds; got {step_s}")
        if not 0 < trim_s < rules.max_utterance_s:
            raise ConfigError(f"trim_s must be above 0 and below max_utterance_s ({rules.max_utterance_s}); got {trim_s}")
        self.recognizer = recognizer
        self.rules = rules
        self.step = int(step_s * SAMPLE_RATE)
        self.trim = int(trim_s * SAMPLE_RATE)
        self.options = dict(options)
        recognizer.check_options(**self.options, word_timestamps=True)
        self.prompts = _takes(recognizer, initial_prompt="prompt")    # asrforge's own models take none
        self.bounded = _takes(recognizer, sample_len=32)                # Whisper: tokens per window
        if "seed" not in self.options and _takes(recognizer, seed=0):
            # Whisper's fallback samples when a decode loops; unseeded, the same buffer gave other words from run
            # to run (base, 2 minutes: 7.5 to 12.9 % WER), and two decodes rarely agree on sampled words
            self.options["seed"] = 0

    def create_stream(self, **options) -> Stream:
        """A new stream; ``options`` (``language``, ``beam_size``, ...) add to the engine's for this stream."""
        merged = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        self.recognizer.check_options(**merged, word_timestamps=True)
        return Stream(merged)

    def decode_streams(self, streams: list[Stream]) -> None:
        """Bring every stream up to the audio it has: at each check point (every :data:`CHECK_FRAMES` VAD frames of
        stream time), an endpoint when the rules say so, and a decode when ``step_s`` has passed since the last.
        The points are fixed in stream time, so the events depend on the audio alone, not on how it was cut into
        chunks, as long as this is called at least once a step. Given more than a step of audio at once (the caller
        fell behind), only the newest due decode is made: a decode of stale audio would only put it further behind.
        Events go to each stream's :meth:`Stream.pop_events`."""
        check = CHECK_FRAMES * VAD_FRAME
        for s in streams:
            newest = s.vad_done + (s.received - s.vad_done) // check * check
            while s.received >= s.vad_done + check:
                self._step(s, s.vad_done + check, decode=s.vad_done + check + self.step > newest)
            if s.finished and not s.flushed:
                s.flushed = True
                self._step(s, s.received, last=True)

    # ---- one stream ---------------------------------------------------------------------------------------------
    def _step(self, s: Stream, now: int, last: bool = False, decode: bool = True) -> None:
        """The stream as of sample ``now`` of its audio (``last``: the end; ``decode``: a decode may be made here
        unless an endpoint needs one)."""
        s._classify(now)
        if not s.speech_in_buffer and not (s.agreed or s.tentative):
            # nothing but silence since the utterance began: never decoded; keep a little for a word's onset
            s._trim(now - int(SPEECH_PAD_S * SAMPLE_RATE))
            s.utterance_start = s.buffer_start
            s.decoded_to = now
            return
        silence = (now - s.last_speech_end) / SAMPLE_RATE
        utterance = (now - s.utterance_start) / SAMPLE_RATE
        # without text only once a decode gave none (at an endpoint the buffer is decoded anyway)
        limit = self.rules.silence_without_text_s if s.decodes and not s.partial_text else self.rules.silence_after_text_s
        ending = last or silence >= limit or utterance >= self.rules.max_utterance_s
        if not ending and (now - s.decoded_to < self.step or not decode):
            return
        audio_end = min(now, s.last_speech_end + int(SPEECH_PAD_S * SAMPLE_RATE))
        # (a buffer trimmed past its speech has nothing new to hear: the last decode's words stand)
        words = self._decode(s, audio_end) if audio_end > s.buffer_start else s.tentative
        s.decoded_to = now
        s.decodes += 1
        mid_speech = audio_end == now and not last
        if ending:
            # at a pause all is said; cut off mid-speech (max_utterance_s), only what two decodes agree on is
            self._agree(s, words[:self._agreement(s, words)] if mid_speech else words)
            if s.agreed:
                s._emit(StreamEvent("final", _text(s.agreed), s.agreed[0].start, s.agreed[-1].end, s.agreed,
                                    s.segments))
                s.segments += 1
            self._to_prompt(s, s.agreed[s.prompted:])
            s.agreed, s.tentative, s.partial_text, s.prompted = [], [], "", 0
            resume = int(s.committed_to * SAMPLE_RATE)
            if mid_speech and resume > s.buffer_start:
                # the words after the last agreed one start the next utterance
                s._trim(resume)
            else:
                s._trim(now)            # the silence after the utterance goes (or audio that decoded to nothing)
            s.utterance_start, s.decodes = s.buffer_start, 0
            return
        agreed = self._agreement(s, words)
        self._agree(s, words[:agreed])
        s.tentative = words[agreed:]
        shown = s.agreed + s.tentative
        if _text(shown) != s.partial_text:
            s.partial_text = _text(shown)
            edge = s.committed_to
            s._emit(StreamEvent("partial", s.partial_text, shown[0].start if shown else edge,
                                shown[-1].end if shown else edge, shown))
        if len(s.buffer) > self.trim and agreed:
            # the model sees the rest from the last committed word's end (or the next word's start, where the two
            # overlap), with the committed text as its prompt
            cut = min(s.committed_to, s.tentative[0].start) if s.tentative else s.committed_to
            s._trim(int(cut * SAMPLE_RATE))
            gone = [w for w in s.agreed[s.prompted:] if w.end <= s.buffer_start / SAMPLE_RATE]
            self._to_prompt(s, gone)
            s.prompted += len(gone)

    def _decode(self, s: Stream, audio_end: int) -> list[Word]:
        """Transcribe the buffer up to ``audio_end`` -> its words after the committed ones, in stream time."""
        options = dict(s.options, word_timestamps=True)
        if self.prompts and s.committed_text:
            options["initial_prompt"] = s.committed_text[-PROMPT_CHARS:]
        if self.bounded and "sample_len" not in options:
            # a buffer of a few seconds holds a few tokens a second: a decode that loops (Whisper on a short
            # stretch of digits) stops there instead of at 224 tokens, at every temperature of its fallback
            # (one decode of a looping 2-s buffer took 11 s on base at beam 5)
            options["sample_len"] = int(MIN_TOKENS + TOKENS_PER_SECOND * (audio_end - s.buffer_start) / SAMPLE_RATE)
        offset = s.buffer_start / SAMPLE_RATE
        result = self.recognizer.transcribe(s.buffer[: audio_end - s.buffer_start], **options)
        words = [Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3), w.probability)
                 for w in result.words if w.word.strip()]
        return words[_after_committed(words, s.last_committed, s.committed_to):]

    @staticmethod
    def _agreement(s: Stream, words: list[Word]) -> int:
        """How many of a decode's first words the previous decode had too (LocalAgreement-2)."""
        n = 0
        while n < min(len(words), len(s.tentative)) and _norm(words[n].word) == _norm(s.tentative[n].word):
            n += 1
        return n

    @staticmethod
    def _to_prompt(s: Stream, words: list[Word]) -> None:
        """Committed words whose audio has left the buffer become the prompt's text (a prompt that holds words
        still in the buffer makes Whisper skip their audio and go on from the prompt)."""
        if words:
            s.committed_text = (s.committed_text + " " + _text(words)).strip()[-4 * PROMPT_CHARS:]

    def _agree(self, s: Stream, words: list[Word]) -> None:
        """Commit ``words`` to the current utterance (they no longer change)."""
        if not words:
            return
        s.agreed = s.agreed + list(words)
        s.committed_to = max(s.committed_to, words[-1].end)
        s.last_committed = (s.last_committed + [_norm(w.word) for w in words])[-5:]


def streaming_engine(recognizer, rules: EndpointRules | None = None, **options):
    """The engine for ``recognizer``: a model trained to stream decodes incrementally
    (:class:`NativeStreamingRecognizer`); any other with word times re-decodes a growing buffer with agreement
    (:class:`~asrforge.inference.streaming.StreamingRecognizer`, whose ``step_s`` and ``trim_s`` it alone takes).
    ``rules`` default to each engine's own."""
    if getattr(recognizer, "streaming", False):
        for name in ("step_s", "trim_s"):
            options.pop(name, None)     # re-decoding settings: an incremental model has nothing to re-decode
        return NativeStreamingRecognizer(recognizer, rules or NATIVE_RULES, **options)
    options.pop("chunk_ms", None)
    return StreamingRecognizer(recognizer, rules or EndpointRules(), **options)
