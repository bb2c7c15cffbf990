"""Whisper's log-mel front end, exactly as the reference computes it.

16 kHz audio, 25 ms Hann window (400 samples), 10 ms hop (160), Slaney mel filters (80 or 128),
log10 clamped to 8 decades below the maximum, then scaled to roughly [-1, 1]. The model sees
30-second windows: 3000 frames, which its encoder turns into 1500 positions.
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.features.mel import mel_filterbank

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE          # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH               # 3000 mel frames in a window
FRAME_SECONDS = HOP_LENGTH / SAMPLE_RATE          # 0.01 s per mel frame
INPUT_STRIDE = 2                                  # mel frames per encoder position
TIME_PRECISION = INPUT_STRIDE * FRAME_SECONDS     # 0.02 s per timestamp token

_FILTERS: dict[tuple[int, str], torch.Tensor] = {}


def mel_filters(n_mels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    key = (n_mels, str(device))
    if key not in _FILTERS:
        _FILTERS[key] = mel_filterbank(SAMPLE_RATE, N_FFT, n_mels).float().to(device)
    return _FILTERS[key]


def log_mel_spectrogram(audio: np.ndarray | torch.Tensor, n_mels: int = 80, padding: int = 0,
                        device: torch.device | str = "cpu", block_frames: int = 6000) -> torch.Tensor:
    """``(N,)`` 16 kHz samples -> ``(n_mels, (N + padding) // 160)`` Whisper log-mel.

    ``padding`` zero samples are appended first; the reference appends 30 s so that the last window
    is full, and its dynamic-range floor (max - 8) is taken over the whole padded signal.
    The spectrogram is computed ``block_frames`` frames at a time, so an hour of audio needs the
    mel matrix (115 MB at 80 bins) but never the hour's complex STFT (over 1 GB).
    """
    audio = torch.as_tensor(audio, dtype=torch.float32, device=device)
    n, edge = audio.shape[0] + padding, N_FFT // 2
    frames = n // HOP_LENGTH                            # the reference drops the STFT's last frame
    # One buffer holds the signal, its zero padding and, for centered frames, N_FFT/2 samples reflected
    # at both ends (what torch.stft(center=True) does), so a long file is copied once, not three times.
    padded = audio.new_zeros(n + 2 * edge)
    padded[edge: edge + audio.shape[0]] = audio
    if n > edge:    # shorter signals keep zeros at their edges: there is nothing to reflect
        padded[:edge] = padded[edge + 1: 2 * edge + 1].flip(0)
        padded[edge + n:] = padded[n - 1: edge + n - 1].flip(0)
    window = torch.hann_window(N_FFT, device=audio.device)
    filters = mel_filters(n_mels, audio.device)
    mel = torch.empty(n_mels, frames, device=audio.device)
    for first in range(0, frames, block_frames):
        last = min(frames, first + block_frames)
        piece = padded[first * HOP_LENGTH: (last - 1) * HOP_LENGTH + N_FFT]
        stft = torch.stft(piece, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
        mel[:, first:last] = filters @ stft.abs().pow_(2)
    log_spec = mel.clamp_(min=1e-10).log10_()
    if frames:
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def pad_or_trim(mel: torch.Tensor, frames: int = N_FRAMES) -> torch.Tensor:
    """Cut or zero-pad the last axis to ``frames``."""
    if mel.shape[-1] > frames:
        return mel[..., :frames]
    if mel.shape[-1] < frames:
        return torch.nn.functional.pad(mel, (0, frames - mel.shape[-1]))
    return mel


class WhisperFeatures:
    """Waveform ``(N,)`` at 16 kHz -> Whisper log-mel ``(N // 160, n_mels)`` of the clip alone; batches are
    padded to the 30-s window by :func:`pad_to_window`."""

    def __init__(self, n_mels: int):
        self.n_mels = n_mels

    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        return log_mel_spectrogram(wave, self.n_mels).T.contiguous()


def pad_to_window(feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``(B, T, n_mels)`` clips -> ``(B, n_mels, 3000)`` windows, zero-padded in log-mel space beyond each
    clip, which is what the reference's transcribe does to a window with less than 30 s of audio: training
    and scoring then see exactly what transcription sees."""
    b, _, n_mels = feats.shape
    out = feats.new_zeros(b, N_FRAMES, n_mels)
    for i, n in enumerate(lens.tolist()):
        out[i, :n] = feats[i, :n]
    return out.transpose(1, 2)
