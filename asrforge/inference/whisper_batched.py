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

import numpy as np
import torch

from asrforge.decoding.whisper import DecodeResult, WhisperDecodeOptions, decode, detect_language, with_options
from asrforge.features.whisper import (FRAME_SECONDS, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram,
                                      pad_or_trim)
from asrforge.inference.vad import VadOptions, merge_spans, speech_spans
from asrforge.inference.whisper import WhisperPipeline, WhisperTranscribeOptions, _order
from asrforge.inference.whisper_timing import add_word_timestamps
from asrforge.progress import progress_bar


def chunk_windows(pipe: WhisperPipeline, wave: np.ndarray, chunks: list[tuple[int, int]]) -> torch.Tensor:
    """``(C, n_mels, 3000)`` log-mel windows, zero-padded beyond each chunk's frames exactly as the sequential
    mode pads its last window (Whisper transcribes short windows noticeably worse with other padding)."""
    n_mels = pipe.model.dims.n_mels
    return torch.stack([pad_or_trim(log_mel_spectrogram(wave[s:e], n_mels, padding=N_SAMPLES, device=pipe.device)
                                    [:, : (e - s) // HOP_LENGTH]) for s, e in chunks])


def transcribe_batched(pipe: WhisperPipeline, wave: np.ndarray, opts: WhisperTranscribeOptions, batch_size: int, progress: bool = False,
                       vad: VadOptions = VadOptions()) -> dict:
    """The same result layout as :meth:`WhisperPipeline.transcribe`; ``opts`` are its options."""
    opts = replace(opts, without_timestamps=False)
    spans = speech_spans(wave, vad)
    chunks = deque(merge_spans(spans, int(vad.max_chunk_s * SAMPLE_RATE)))
    language = None if opts.language is None else (
        pipe.tokenizer.language_code(opts.language) if pipe.tokenizer.multilingual else "en")
    language_probs = None
    segments: list[dict] = []
    first = {
        "text": "", "segments": segments, "language": language or "en", "language_probs": None,
        "duration": round(len(wave) / SAMPLE_RATE, 3)}
    if not chunks:
        return first
    options = WhisperDecodeOptions(
        task=opts.task, language=language, temperature=opts.temperature[0],
        beam_size=opts.beam_size if opts.temperature[0] == 0 else None,
        patience=opts.patience if opts.temperature[0] == 0 else None,
        best_of=opts.best_of if opts.temperature[0] > 0 else None, length_penalty=opts.length_penalty,
        prompt=tuple(pipe.tokenizer.encode(" " + opts.initial_prompt.strip())) if opts.initial_prompt else None,
        suppress_tokens=opts.suppress_tokens, suppress_blank=opts.suppress_blank,
        without_timestamps=False, max_initial_timestamp=opts.max_initial_timestamp)
    last_speech_end = 0.0
    bar = progress_bar(total=len(chunks), unit="chunk", desc="transcribing", disable=not progress)
    while chunks:
        batch = [chunks.popleft() for _ in range(min(batch_size, len(chunks)))]
        features = pipe.encode(chunk_windows(pipe, wave, batch))
        if language is None:
            if pipe.tokenizer.multilingual:
                codes, probs = detect_language(pipe.model, pipe.tokenizer, features[:1])
                language, language_probs = codes[0], probs[0]
            else:
                language = "en"
            options = with_options(options, language=language)
        with torch.inference_mode():
            results = decode(pipe.model, pipe.tokenizer, features, options)
        for i, ((start, end), result) in enumerate(zip(batch, results)):
            if _failed(result, opts):
                result = pipe.decode_with_fallback(features[i: i + 1], opts, language, list(options.prompt or ()))
            frames = (end - start) // HOP_LENGTH
            offset = start / SAMPLE_RATE
            new, _ = pipe._segments(result, 0, min(frames, N_FRAMES), offset)
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
            for s in new:
                s.update(seek=round(start / (SAMPLE_RATE * FRAME_SECONDS)), temperature=result.temperature,
                         avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
                         no_speech_prob=result.no_speech_prob)
                segments.append(s)
        bar.update(len(batch))
    bar.close()
    segments.sort(key=lambda s: s["start"])     # second passes come back after later chunks
    for k, s in enumerate(segments):
        s["id"] = k
    text = pipe.tokenizer.decode([t for s in segments for t in s["tokens"] if t < pipe.tokenizer.eot])
    return {**first, "text": text, "segments": [_order(s) for s in segments], "language": language,
            "language_probs": language_probs}


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
    of the decoding time without lowering the WER (measured on the benchmark's files)."""
    too_repetitive = opts.compression_ratio_threshold is not None and result.compression_ratio > opts.compression_ratio_threshold
    return too_repetitive and not _silent(result, opts) and len(opts.temperature) > 1


def _silent(result: DecodeResult, opts: WhisperTranscribeOptions) -> bool:
    """Whisper's no-speech test; here it only keeps a fallback from re-decoding what the model calls silence."""
    if opts.no_speech_threshold is None or result.no_speech_prob <= opts.no_speech_threshold:
        return False
    return opts.logprob_threshold is None or result.avg_logprob <= opts.logprob_threshold
