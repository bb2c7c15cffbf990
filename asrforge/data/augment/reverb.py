"""Reverberation: convolve speech with a room impulse response (RIR), recorded or simulated.

A model trained on close-talk audio meets rooms: the same word arrives smeared by reflections, differently
in each room. Recorded RIRs (e.g. the RIRS_NOISES or BUT ReverbDB collections) are the most realistic; where
none are at hand, :func:`simulated_rir` gives the statistical room model of Polack: a direct path followed
by a diffuse tail of Gaussian noise whose energy falls 60 dB in ``rt60`` seconds, scaled to a
direct-to-reverberant energy ratio. Both keep the recording's timing (aligned on the direct path) and level.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asrforge_runtime.audio import SAMPLE_RATE

# amplitude that falls 60 dB over rt60 seconds: 10 ** (-3 t / rt60)
_DECAY_60DB = 3.0 * math.log(10.0)


def simulated_rir(rt60_s: float, drr_db: float, gen: torch.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(N,)`` impulse response, ``N = rt60_s * sample_rate``: 1.0 at sample 0 (the direct sound), then
    a decaying noise tail holding ``10 ** (-drr_db / 10)`` of the direct sound's energy."""
    n = max(2, int(round(rt60_s * sample_rate)))
    t = np.arange(1, n) / sample_rate
    tail = torch.randn(n - 1, generator=gen).numpy() * np.exp(-_DECAY_60DB * t / rt60_s)
    tail *= math.sqrt(10 ** (-drr_db / 10) / (float(np.sum(tail**2)) + 1e-20))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wave (N,)`` heard through ``rir (M,)`` -> ``(N,)``: aligned on the RIR's direct path (its largest
    sample, so a recorded RIR's leading silence adds no delay), cut to the input's length, at its RMS level."""
    if wave.size == 0 or rir.size == 0:
        return wave
    direct = int(np.argmax(np.abs(rir)))
    # imported here, not at the top: scipy.signal takes 0.6 s to import, and every command that reads data
    # (transcription included) imports this module
    from scipy.signal import fftconvolve
    out = fftconvolve(wave, rir)[direct: direct + wave.size]
    level_in, level_out = float(np.sqrt(np.mean(wave**2))), float(np.sqrt(np.mean(out**2)))
    return (out * (level_in / level_out if level_out > 0 else 0.0)).astype(np.float32)
