"""What the sequential and the batched Whisper modes share: their options, decoding one window with
temperature fallback, and cutting a window's tokens into timed segments.

Segments are plain dicts here (``start``, ``end``, ``text``, ``tokens``, later ``words`` and the window's
decoding figures), because word alignment fills them in place; :class:`Segment` is made from them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from asrforge_runtime.search.config import DecodeConfig
from asrforge.decoding.whisper import DecodeResult, WhisperDecodeOptions, decode
from asrforge.errors import ConfigError
from asrforge.features.whisper import FRAME_SECONDS, INPUT_STRIDE, TIME_PRECISION
from asrforge.inference.whisper_timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from asrforge.models.whisper import Whisper
from asrforge.text.whisper import WhisperTokenizer

# options of asrforge's own models, named when given to a Whisper checkpoint
ASRFORGE_ONLY = {"max_segment_s": " (Whisper reads long audio in 30-second windows of its own)",
                 "speaker_stats": " trained with speaker CMVN",
                 **{f.name: " (a knob of their searches, decode.*)" for f in fields(DecodeConfig) if f.name != "beam_size"}}


@dataclass(frozen=True)
class WhisperTranscribeOptions:
    task: str = "transcribe"
    language: str | None = None                # None or "auto": detect from the first window
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: int | None = None
    best_of: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    suppress_tokens: str = "-1"
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    word_timestamps: bool = False
    sample_len: int | None = None                # most tokens decoded per window; default half the text context (224)
    seed: int | None = None                      # fallback sampling from a generator seeded so: the same audio, the same text
    batch_size: int | None = None                # VAD-batched mode: decode this many 30-s chunks at once
    prepend_punctuations: str = PREPEND_PUNCTUATIONS   # with word timestamps: marks joined to the next word
    append_punctuations: str = APPEND_PUNCTUATIONS     # ... and to the previous word

    @classmethod
    def from_kwargs(cls, **kwargs) -> "WhisperTranscribeOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            hint = "".join(f"; {name} is for asrforge models{why}" for name, why in ASRFORGE_ONLY.items() if name in unknown)
            raise ConfigError(f"unknown Whisper option(s) {unknown}{hint}; known: {sorted(known)}")
        if isinstance(kwargs.get("temperature"), (int, float)):
            kwargs["temperature"] = (float(kwargs["temperature"]),)
        if kwargs.get("language") in ("auto", ""):
            kwargs["language"] = None
        return cls(**{k: v for k, v in kwargs.items() if v is not None or k == "language"})

    def window_options(self, temperature: float, language: str | None, prompt: list[int]) -> WhisperDecodeOptions:
        """How one window is decoded at ``temperature``: beam search at 0, sampling above."""
        search = (dict(beam_size=self.beam_size, patience=self.patience) if temperature == 0
                  else dict(best_of=self.best_of))
        return WhisperDecodeOptions(
            task=self.task, language=language, temperature=temperature, length_penalty=self.length_penalty,
            prompt=tuple(prompt) or None, suppress_tokens=self.suppress_tokens, suppress_blank=self.suppress_blank,
            without_timestamps=self.without_timestamps, max_initial_timestamp=self.max_initial_timestamp,
            sample_len=self.sample_len, seed=self.seed, **search)

    def too_repetitive(self, result: DecodeResult) -> bool:
        """The window loops: its text compresses far better than speech does."""
        return self.compression_ratio_threshold is not None and result.compression_ratio > self.compression_ratio_threshold

    def too_unlikely(self, result: DecodeResult) -> bool:
        return self.logprob_threshold is not None and result.avg_logprob < self.logprob_threshold

    def no_speech(self, result: DecodeResult) -> bool:
        """Whisper's own judgement that the window is silence (its no-speech token is likely)."""
        return self.no_speech_threshold is not None and result.no_speech_prob > self.no_speech_threshold

    def silent(self, result: DecodeResult) -> bool:
        """A window to skip as silence: the no-speech token is likely and the text is not confident."""
        return self.no_speech(result) and not (self.logprob_threshold is not None
                                               and result.avg_logprob > self.logprob_threshold)

    def failed(self, result: DecodeResult) -> bool:
        """Whether a window should be decoded again at the next temperature: it loops or is unlikely, and is not
        silence. A confident loop is not silence even when the no-speech token is likely: the reference and
        faster-whisper decode it again, and keeping it put 224 tokens of "I'm sorry, I'm sorry" where an 8-kHz
        "three" was."""
        return not self.silent(result) and (self.too_repetitive(result) or self.too_unlikely(result))


def decode_with_fallback(model: Whisper, tokenizer: WhisperTokenizer, features: torch.Tensor,
                         opts: WhisperTranscribeOptions, language: str | None, prompt: list[int],
                         first: DecodeResult | None = None) -> DecodeResult:
    """Decode one window (``features`` ``(1, T, D)``), retrying at each higher temperature while the result
    looks like a failure. ``first``: the window's result at the first temperature, when a batch decoded it already.

    If every temperature fails, keep the likeliest attempt among those that did not loop (as faster-whisper
    does) rather than the last, hottest sample (as the reference does)."""
    attempts = []
    for k, t in enumerate(opts.temperature):
        result = first if k == 0 and first is not None else decode(
            model, tokenizer, features, opts.window_options(t, language, prompt))[0]
        if not opts.failed(result):
            return result
        attempts.append((not opts.too_repetitive(result), result.avg_logprob, result))
    return max(attempts, key=lambda a: a[:2])[2]


def split_segments(tokenizer: WhisperTokenizer, result: DecodeResult, seek: int, segment_size: int,
                   time_offset: float) -> tuple[list[dict], int]:
    """Cut a window's tokens at consecutive timestamp pairs into segments; returns them and the next seek
    (in mel frames): the end of the last complete segment, or the window's end when nothing was left open."""
    tb = tokenizer.timestamp_begin
    tokens = result.tokens
    # a timestamp past the window's audio (the last window of a file is short) is held at its end: segments
    # lie inside the recording
    content_end = time_offset + segment_size * FRAME_SECONDS

    def at(token: int) -> float:
        return min(time_offset + (token - tb) * TIME_PRECISION, content_end)

    is_ts = [t >= tb for t in tokens]
    single_ending = is_ts[-2:] == [False, True]
    pairs = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    out = []
    if pairs:
        slices = pairs + ([len(tokens)] if single_ending else [])
        last = 0
        for cut in slices:
            part = tokens[last:cut]
            out.append(_segment(tokenizer, part, at(part[0]), at(part[-1])))
            last = cut
        if single_ending:
            seek += segment_size        # nothing was left unfinished: take the whole window
        else:
            seek += min((tokens[last - 1] - tb) * INPUT_STRIDE, segment_size)   # where the last full segment ended
    else:
        stamps = [t for t in tokens if t >= tb]
        end = at(stamps[-1]) if stamps and stamps[-1] != tb else content_end
        out.append(_segment(tokenizer, tokens, time_offset, end))
        seek += segment_size
    return out, seek


def _segment(tokenizer: WhisperTokenizer, tokens: list[int], start: float, end: float) -> dict:
    text_tokens = [t for t in tokens if t < tokenizer.eot]
    return {"start": round(start, 3), "end": round(end, 3), "text": tokenizer.decode(text_tokens), "tokens": tokens}


def with_decoding(segment: dict, result: DecodeResult, seek: int) -> dict:
    """A segment dict with the figures of how its window was decoded."""
    segment.update(seek=seek, temperature=result.temperature, avg_logprob=result.avg_logprob,
                   compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob)
    return segment
