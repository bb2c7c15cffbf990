"""Batched long-form Whisper (``--batch-size N``): cut at pauses, decode the chunks side by side.

Silero VAD finds the speech; neighbouring spans are joined into chunks of at most 30 s; each chunk
is one window, and ``N`` windows go through the encoder and the decoder together. Silence between
chunks is never decoded. Unlike the sequential mode, a chunk is not conditioned on the previous
text (chunks are independent, which is what lets them run together); a chunk whose result loops is
decoded again alone, with temperature fallback.

A chunk gets a second pass when the model stops early. Whisper sometimes ends a window after its
first sentence even though speech goes on. Measured on the benchmark's 60-s file, the first chunk
gave one sentence out of 30 s, losing a sentence and 15 digits. Chunks are therefore decoded with
timestamps. When VAD still finds speech more than 0.5 s past the last timestamp, the rest of the chunk
is queued again from that timestamp, like the sequential mode's seek.

VAD already chose the speech, so a chunk is not dropped for a high no-speech probability. Dropping
it cost short isolated words such as digits (measured: 34.9 % WER against 33.1 % on the benchmark's files).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from asrforge.decoding.whisper import DecodeResult, decode, detect_language, with_options
from asrforge.features.whisper import (FRAME_SECONDS, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram,
                                      pad_or_trim)
from asrforge.inference.result import Result, Segment
from asrforge.inference.vad import VadOptions, merge_spans, speech_spans
from asrforge.inference.whisper_timing import add_word_timestamps
from asrforge.inference.whisper_windows import WhisperTranscribeOptions, split_segments, with_decoding
from asrforge.progress import progress_bar

if TYPE_CHECKING:
    from asrforge.inference.whisper import WhisperTranscriber


def chunk_windows(pipe: "WhisperTranscriber", wave: np.ndarray, chunks: list[tuple[int, int]]) -> torch.Tensor:
    """``(C, n_mels, 3000)`` log-mel windows, zero-padded beyond each chunk's frames exactly as the sequential
    mode pads its last window (Whisper transcribes short windows noticeably worse with other padding)."""
    n_mels = pipe.model.dims.n_mels
    return torch.stack([pad_or_trim(log_mel_spectrogram(wave[s:e], n_mels, padding=N_SAMPLES, device=pipe.device)
                                    [:, : (e - s) // HOP_LENGTH]) for s, e in chunks])


def transcribe_batched(pipe: "WhisperTranscriber", wave: np.ndarray, opts: WhisperTranscribeOptions, batch_size: int,
                       progress: bool = False, vad: VadOptions = VadOptions(), source: str | None = None) -> Result:
    """The :class:`Result` :meth:`WhisperTranscriber.transcribe` gives, from ``batch_size`` chunks at a time."""
    opts = replace(opts, without_timestamps=False)
    spans = speech_spans(wave, vad)
    chunks = deque(merge_spans(spans, int(vad.max_chunk_s * SAMPLE_RATE)))
    language = pipe.language_of(opts)
    language_probs = None
    duration = round(len(wave) / SAMPLE_RATE, 3)
    if not chunks:
        return Result("", [], language or "en", duration, None, source)
    prompt = tuple(pipe.tokenizer.encode(" " + opts.initial_prompt.strip())) if opts.initial_prompt else ()
    options = opts.window_options(opts.temperature[0], language, list(prompt))
    segments: list[dict] = []
    last_speech_end = 0.0
    bar = progress_bar(total=len(chunks), unit="chunk", desc="transcribing", disable=not progress)
    while chunks:
        batch = [chunks.popleft() for _ in range(min(batch_size, len(chunks)))]
        features = pipe.encode(chunk_windows(pipe, wave, batch))
        if language is None:
            codes, probs = detect_language(pipe.model, pipe.tokenizer, features[:1])
            language, language_probs = codes[0], probs[0]
            options = with_options(options, language=language)
        with torch.inference_mode():
            results = decode(pipe.model, pipe.tokenizer, features, options)
        for i, ((start, end), result) in enumerate(zip(batch, results)):
            if _failed(result, opts):
                result = pipe.decode_with_fallback(features[i: i + 1], opts, language, list(prompt))
            frames = (end - start) // HOP_LENGTH
            offset = start / SAMPLE_RATE
            new, _ = split_segments(pipe.tokenizer, result, 0, min(frames, N_FRAMES), offset)
            new = [s for s in new if s["end"] > s["start"] and s["text"].strip()]
            for s in new:
                s["end"] = min(s["end"], round(end / SAMPLE_RATE, 3))
            rest = _untranscribed_speech(new, start, end, spans)
            if rest is not None:
                chunks.append(rest)
                bar.total += 1
            if opts.word_timestamps and new:
                last_speech_end = add_word_timestamps(
                    new, pipe.model, pipe.tokenizer, pipe.tokenizer.sot_sequence(language, opts.task), features[i: i + 1],
                    min(frames, N_FRAMES), offset, language, last_speech_end, opts.prepend_punctuations,
                    opts.append_punctuations)
            segments += [with_decoding(s, result, round(start / (SAMPLE_RATE * FRAME_SECONDS))) for s in new]
        bar.update(len(batch))
    bar.close()
    segments.sort(key=lambda s: s["start"])     # second passes come back after later chunks
    for k, s in enumerate(segments):
        s["id"] = k
    text = pipe.tokenizer.decode([t for s in segments for t in s["tokens"]])
    return Result(text, [Segment.from_dict(s) for s in segments], language, duration, language_probs, source)


def _untranscribed_speech(segments: list[dict], start: int, end: int, spans: list[tuple[int, int]],
                          margin: float = 0.5) -> tuple[int, int] | None:
    """The part of chunk ``[start, end)`` (samples) after its last segment, if VAD finds speech there more
    than ``margin`` seconds past that segment's end; None when the chunk was transcribed to its end."""
    cut = int(max((s["end"] for s in segments), default=start / SAMPLE_RATE) * SAMPLE_RATE)
    if cut <= start or cut >= end - int(margin * SAMPLE_RATE):
        return None         # nothing transcribed (no progress to resume from), or transcribed to the end
    if any(s < end and e > cut + margin * SAMPLE_RATE for s, e in spans):
        return cut, end
    return None


def _failed(result: DecodeResult, opts: WhisperTranscribeOptions) -> bool:
    """A chunk that loops (compression ratio over the threshold) is decoded again with temperature fallback.
    A merely unlikely one is kept: in batched mode that is mostly a short word, and re-sampling it cost a third
    of the decoding time without lowering the WER (measured on the benchmark's files). What the model calls
    silence is not re-decoded either."""
    return opts.too_repetitive(result) and not opts.silent(result) and len(opts.temperature) > 1
