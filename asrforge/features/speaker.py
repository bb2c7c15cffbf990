"""The front end of the GE2E speaker encoder that resemblyzer ships: 40 mel bands of power (not log), 25-ms Hann
windows every 10 ms at 16 kHz, centered frames with zero padding, Slaney mel filters -- what
``librosa.feature.melspectrogram`` computes with its defaults, which the encoder was trained on -- after the
recording's loudness is raised (never lowered) to -30 dBFS.
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.features.mel import mel_filterbank

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 40
TARGET_DBFS = -30.0

_FILTERS: list[torch.Tensor] = []


def raise_volume(wave: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """``(N,)`` scaled up so its RMS level is ``target_dbfs``; a louder recording is left as it is (so is silence)."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
    if rms <= 0.0:
        return wave
    gain_db = target_dbfs - 20.0 * np.log10(rms)
    return wave * np.float32(10.0 ** (gain_db / 20.0)) if gain_db > 0 else wave


def speaker_mels(windows: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` 16-kHz samples -> ``(B, 1 + N // 160, 40)`` mel power frames."""
    if not _FILTERS:
        _FILTERS.append(mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).float())
    stft = torch.stft(windows.float(), N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="constant",
                      return_complex=True)                  # (B, 201, T)
    return (_FILTERS[0] @ stft.abs().pow(2)).transpose(1, 2)
