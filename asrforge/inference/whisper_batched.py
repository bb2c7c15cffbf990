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
is decoded again from that timestamp, like the sequential mode's seek. Those rests are short (2-5 s on
the benchmark's 5-minute recording, in 7 of its 12 chunks), so they are packed together, a quarter
second of silence apart, into windows of up to 30 s (:class:`Chunk`), and each segment is mapped back
to the piece it came from. One window each cost 22 windows for that recording; packed, 15 (base int8:
14.9 against 17.0 s, WER 9.15 against 9.62 %: a lone 3-s rest also drew "Thank you" hallucinations).

VAD already chose the speech, so a chunk is not dropped for a high no-speech probability. Dropping
it cost short isolated words such as digits (measured: 34.9 % WER against 33.1 % on the benchmark's files).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from asrforge.decoding.whisper import DecodeResult, decode, detect_language, with_options
from asrforge.features.whisper import (FRAME_SECONDS, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram,
                                      pad_or_trim)
from asrforge_runtime.result import Result, Segment
from asrforge.inference.vad import VadOptions, merge_spans, speech_spans
from asrforge.inference.whisper_timing import add_word_timestamps
from asrforge.inference.whisper_windows import WhisperTranscribeOptions, split_segments, with_decoding
from asrforge.progress import progress_bar

if TYPE_CHECKING:
    from asrforge.inference.whisper import WhisperTranscriber


Piece = tuple[int, int]          # a stretch of the recording, ``[start, end)`` in samples
GAP = SAMPLE_RATE // 4           # silence between the pieces of a packed window


@dataclass(frozen=True)
class Chunk:
    """What one window holds: pieces of the recording in time order, joined with :data:`GAP` of silence.

    A first-pass chunk is one piece (neighbouring speech with its pauses). The rests of chunks the
    model ended early are short (2-5 s each on the benchmark's recording), and each would cost a whole
    30-s encoder pass, so they are packed together into windows of up to 30 s instead.
    """

    pieces: tuple[Piece, ...]

    @property
    def samples(self) -> int:
        return sum(e - s for s, e in self.pieces) + GAP * (len(self.pieces) - 1)

    def audio(self, wave: np.ndarray) -> np.ndarray:
        """The recording's samples ``(S,)`` -> this window's ``(self.samples,)``."""
        gap = np.zeros(GAP, dtype=wave.dtype)
        parts = [p for s, e in self.pieces for p in (gap, wave[s:e])][1:]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _window_starts(self) -> list[int]:
        """Where each piece begins in the window (samples)."""
        starts, position = [], 0
        for s, e in self.pieces:
            starts.append(position)
            position += e - s + GAP
        return starts

    def piece_of(self, start: float, end: float) -> int:
        """The piece that window times ``[start, end]`` (seconds) overlap most. Whisper's timestamps are
        coarse (often whole seconds), so a segment may begin a little before its piece does."""
        overlaps = [min(end * SAMPLE_RATE, w + e - s) - max(start * SAMPLE_RATE, w)
                    for w, (s, e) in zip(self._window_starts(), self.pieces)]
        return int(np.argmax(overlaps))

    def recording_time(self, seconds: float, piece: int) -> float:
        """A window time (seconds) -> the same moment of piece ``piece`` in the recording (seconds), kept
        inside that piece."""
        s, e = self.pieces[piece]
        at = s + round(seconds * SAMPLE_RATE) - self._window_starts()[piece]
        return round(min(max(at, s), e) / SAMPLE_RATE, 3)

    def after(self, seconds: float) -> "Chunk":
        """What of the chunk follows window time ``seconds``."""
        at = round(seconds * SAMPLE_RATE)
        rest = []
        for w, (s, e) in zip(self._window_starts(), self.pieces):
            if at < w + e - s:
                rest.append((s + max(at - w, 0), e))
        return Chunk(tuple(rest))


def chunk_windows(pipe: "WhisperTranscriber", wave: np.ndarray, chunks: list[Chunk]) -> torch.Tensor:
    """``(C, n_mels, 3000)`` log-mel windows, zero-padded beyond each chunk's frames exactly as the sequential
    mode pads its last window (Whisper transcribes short windows noticeably worse with other padding)."""
    n_mels = pipe.model.dims.n_mels
    return torch.stack([pad_or_trim(log_mel_spectrogram(c.audio(wave), n_mels, padding=N_SAMPLES, device=pipe.device)
                                    [:, : c.samples // HOP_LENGTH]) for c in chunks])


def pack(rests: list[Chunk], max_samples: int) -> list[Chunk]:
    """Join rests, in time order, into as few chunks of at most ``max_samples`` as keeps each whole."""
    packed: list[Chunk] = []
    for rest in sorted(rests, key=lambda c: c.pieces[0]):
        joined = Chunk(packed[-1].pieces + rest.pieces) if packed else None
        if joined is not None and joined.samples <= max_samples:
            packed[-1] = joined
        else:
            packed.append(rest)
    return packed


def transcribe_batched(pipe: "WhisperTranscriber", wave: np.ndarray, opts: WhisperTranscribeOptions, batch_size: int,
                       progress: bool = False, vad: VadOptions = VadOptions(), source: str | None = None) -> Result:
    """The :class:`Result` :meth:`WhisperTranscriber.transcribe` gives, from ``batch_size`` chunks at a time."""
    opts = replace(opts, without_timestamps=False)
    spans = speech_spans(wave, vad)
    max_samples = int(vad.max_chunk_s * SAMPLE_RATE)
    chunks = deque(Chunk((c,)) for c in merge_spans(spans, max_samples))
    language = pipe.language_of(opts)
    language_probs = None
    duration = round(len(wave) / SAMPLE_RATE, 3)
    if not chunks:
        return Result("", [], language or "en", duration, None, source)
    prompt = tuple(pipe.tokenizer.encode(" " + opts.initial_prompt.strip())) if opts.initial_prompt else ()
    options = opts.window_options(opts.temperature[0], language, list(prompt))
    segments: list[dict] = []
    rests: list[Chunk] = []
    bar = progress_bar(total=len(chunks), unit="chunk", desc="transcribing", disable=not progress)
    while chunks or rests:
        if len(chunks) < batch_size and rests:    # fill the batch with the rests found so far
            packed = pack(rests, max_samples)
            chunks.extend(packed)
            bar.total += len(packed)
            rests = []
        batch = [chunks.popleft() for _ in range(min(batch_size, len(chunks)))]
        features = pipe.encode(chunk_windows(pipe, wave, batch))
        if language is None:
            codes, probs = detect_language(pipe.model, pipe.tokenizer, features[:1])
            language, language_probs = codes[0], probs[0]
            options = with_options(options, language=language)
        with torch.inference_mode():
            results = decode(pipe.model, pipe.tokenizer, features, options)
        for i, (chunk, result) in enumerate(zip(batch, results)):
            if _failed(result, opts):
                result = pipe.decode_with_fallback(features[i: i + 1], opts, language, list(prompt))
            frames = min(chunk.samples // HOP_LENGTH, N_FRAMES)
            new, _ = split_segments(pipe.tokenizer, result, 0, frames, 0.0)
            new = [s for s in new if s["end"] > s["start"] and s["text"].strip()]
            for s in new:
                s["end"] = min(s["end"], frames * FRAME_SECONDS)
            rest = _untranscribed_speech(new, chunk, spans)
            if rest is not None:
                rests.append(rest)
            if opts.word_timestamps and new:
                add_word_timestamps(new, pipe.model, pipe.tokenizer, pipe.tokenizer.sot_sequence(language, opts.task),
                                    features[i: i + 1], frames, 0.0, language, 0.0, opts.prepend_punctuations,
                                    opts.append_punctuations)
            seek = round(chunk.pieces[0][0] / (SAMPLE_RATE * FRAME_SECONDS))
            segments += [with_decoding(_in_recording_time(s, chunk), result, seek) for s in new]
        bar.update(len(batch))
    bar.close()
    segments.sort(key=lambda s: s["start"])     # second passes come back after later chunks
    for k, s in enumerate(segments):
        s["id"] = k
    text = pipe.tokenizer.decode([t for s in segments for t in s["tokens"]])
    return Result(text, [Segment.from_dict(s) for s in segments], language, duration, language_probs, source)


def _in_recording_time(segment: dict, chunk: Chunk) -> dict:
    """A segment (and its words) timed in its window, moved to the recording's time (in place)."""
    piece = chunk.piece_of(segment["start"], segment["end"])
    for item in [segment, *segment.get("words", [])]:
        item["start"], item["end"] = (chunk.recording_time(item[k], piece) for k in ("start", "end"))
    return segment


def _untranscribed_speech(segments: list[dict], chunk: Chunk, spans: list[Piece], margin: float = 0.5) -> Chunk | None:
    """What of ``chunk`` follows its last segment (segments timed in the window), if VAD finds speech there
    more than ``margin`` seconds past that segment's end; None when the chunk was transcribed to its end."""
    if not segments:
        return None         # nothing transcribed: no progress to resume from
    rest = chunk.after(max(s["end"] for s in segments))
    if not rest.pieces or rest.samples <= margin * SAMPLE_RATE:
        return None         # transcribed to the end
    (cut, first_end), later = rest.pieces[0], rest.pieces[1:]
    speech_from = cut + margin * SAMPLE_RATE
    if any(s < first_end and e > speech_from for s, e in spans) or any(s < pe and e > ps for ps, pe in later for s, e in spans):
        return rest
    return None


def _failed(result: DecodeResult, opts: WhisperTranscribeOptions) -> bool:
    """A chunk that loops (compression ratio over the threshold) is decoded again with temperature fallback.
    A merely unlikely one is kept: in batched mode that is mostly a short word, and re-sampling it cost a third
    of the decoding time without lowering the WER (measured on the benchmark's files). What the model calls
    silence is not re-decoded either."""
    return opts.too_repetitive(result) and not opts.silent(result) and len(opts.temperature) > 1
