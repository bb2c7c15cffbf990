"""Long input cut into pieces a model trained on utterances of seconds can decode: at the quietest moments.

asrforge's PyTorch recognizer cuts at pauses found by Silero VAD, which runs on PyTorch; the runtime has no VAD, so
it cuts each stretch of at most ``max_segment_s`` at its quietest 100 ms in the stretch's second half, where a
pause between words or sentences lies in speech of any kind. Silence is decoded like any piece (its text comes out
empty and is dropped).
"""

from __future__ import annotations

import numpy as np

from asrforge_runtime.audio import SAMPLE_RATE

LONG_FORM_S = 20.0      # longer input is cut into pieces of at most this many seconds
QUIET_WINDOW_S = 0.1    # the span whose energy decides a cut


def long_form_spans(wave: np.ndarray, max_segment_s: float = LONG_FORM_S) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges to decode: the whole of a short input; a long one's pieces, in order, each at
    most ``max_segment_s`` long, covering the input."""
    limit = int(max_segment_s * SAMPLE_RATE)
    if wave.size <= limit:
        return [(0, wave.size)]
    hop = int(QUIET_WINDOW_S * SAMPLE_RATE / 4)
    frames = wave[: wave.size // hop * hop].reshape(-1, hop).astype(np.float64)
    energy = np.convolve((frames ** 2).mean(1), np.ones(4) / 4, mode="same")     # (frames,) smoothed over 100 ms
    spans, start = [], 0
    while wave.size - start > limit:
        lo, hi = (start + limit // 2) // hop, (start + limit) // hop
        cut = (lo + int(np.argmin(energy[lo:hi]))) * hop if hi > lo else start + limit
        spans.append((start, cut))
        start = cut
    spans.append((start, wave.size))
    return spans
