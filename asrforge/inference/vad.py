"""Voice activity: where the speech is, by Silero VAD (the ``silero-vad`` wheel ships its model file).

Used by Whisper's batched mode and the server to cut long audio into chunks of at most 30 s at pauses, so the
chunks can be decoded side by side instead of one window after another; and by streaming recognition to find
pauses as audio arrives (:func:`speech_probabilities`).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from asrforge.errors import ConfigError

SAMPLE_RATE = 16000
VAD_FRAME = 512                 # Silero's frame at 16 kHz (32 ms)
# Silero's model is one TorchScript module with state of its own (reset after each file), shared by the process:
# two threads running it at once corrupt that state and crash in TorchScript (seen with two server requests)
_RUNNING = threading.Lock()


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5            # speech probability above which a 32-ms frame is speech
    min_speech_ms: int = 0            # keep even short bursts: a lone word ("two") can be 200 ms
    min_silence_ms: int = 160         # a pause must last this long to end a speech span
    speech_pad_ms: int = 400          # kept on each side of a span, so word edges are not clipped
    max_chunk_s: float = 30.0         # Whisper's window


@lru_cache(maxsize=1)
def _silero():
    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        raise ConfigError("batched Whisper decoding needs Silero VAD: pip install silero-vad") from None
    finally:
        torch.set_num_threads(threads)   # importing silero_vad sets torch to one thread for the whole process
    with warnings.catch_warnings():      # its loader uses APIs that torch and importlib mark deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(), get_speech_timestamps


def speech_spans(wave: np.ndarray, options: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """16 kHz samples -> ``[(start, end), ...]`` sample ranges of speech, none longer than ``max_chunk_s``."""
    model, get_speech_timestamps = _silero()
    with _RUNNING, torch.inference_mode():
        found = get_speech_timestamps(
            torch.as_tensor(wave, dtype=torch.float32), model, threshold=options.threshold, sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=options.min_speech_ms, min_silence_duration_ms=options.min_silence_ms,
            speech_pad_ms=options.speech_pad_ms, max_speech_duration_s=options.max_chunk_s - 1.0)
        model.reset_states()
    return [(int(s["start"]), int(s["end"])) for s in found]


def speech_probabilities(wave: np.ndarray) -> np.ndarray:
    """16 kHz samples ``(N,)`` -> Silero's speech probability of each :data:`VAD_FRAME` (32-ms) frame ``(frames,)``;
    a last partial frame is padded with zeros. For streams: each call starts from a fresh state, so give the
    frames before the new ones again for context."""
    model, _ = _silero()
    frames = -(-len(wave) // VAD_FRAME)
    if not frames:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(frames * VAD_FRAME, dtype=np.float32)
    padded[: len(wave)] = wave
    with _RUNNING, torch.inference_mode():
        model.reset_states()
        probs = model.audio_forward(torch.from_numpy(padded), SAMPLE_RATE)
        model.reset_states()
    return probs.reshape(-1).numpy()[:frames]


def merge_spans(spans: list[tuple[int, int]], max_samples: int) -> list[tuple[int, int]]:
    """Join neighbouring speech spans into chunks no longer than ``max_samples`` (pauses inside a chunk
    are kept; a span longer than the limit is cut into pieces of the limit)."""
    pieces = []
    for start, end in spans:
        while end - start > max_samples:
            pieces.append((start, start + max_samples))
            start += max_samples
        if end > start:
            pieces.append((start, end))
    chunks: list[tuple[int, int]] = []
    for start, end in pieces:
        if chunks and end - chunks[-1][0] <= max_samples:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks
