"""Mel filterbank, DCT and delta primitives (the same definitions librosa uses)."""

from __future__ import annotations

import math

import torch


def hz_to_mel(freq: torch.Tensor, htk: bool = False) -> torch.Tensor:
    if htk:
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = freq / f_sp
    log = min_log_mel + torch.log(torch.clamp(freq, min=1e-10) / min_log_hz) / logstep
    return torch.where(freq >= min_log_hz, log, linear)


def mel_to_hz(mel: torch.Tensor, htk: bool = False) -> torch.Tensor:
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = f_sp * mel
    log = min_log_hz * torch.exp(logstep * (mel - min_log_mel))
    return torch.where(mel >= min_log_mel, log, linear)


def warp_frequencies(freqs: torch.Tensor, factor: float, top: float, knee_ratio: float = 0.85) -> torch.Tensor:
    """Vocal tract length perturbation's frequency warp (Jaitly & Hinton, 2013): ``f -> factor * f`` up to a
    knee, then a straight line that lands on ``top`` at ``top``, so the band's edge stays where it is.

    ``factor > 1`` moves formants up, as a shorter vocal tract does; pitch and timing are left alone, which is
    what speed perturbation cannot do (it moves all three together).
    """
    knee = knee_ratio * top * min(factor, 1.0) / factor
    upper = top - (top - factor * knee) * (top - freqs) / (top - knee)
    return torch.where(freqs <= knee, freqs * factor, upper)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
    htk: bool = False, slaney_norm: bool = True, warp: float = 1.0,
) -> torch.Tensor:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)``, float64 for accuracy.

    With ``slaney_norm`` each filter is scaled to unit area (constant energy per band). ``warp`` != 1 gathers
    each FFT bin's energy into the filter of its warped frequency (:func:`warp_frequencies`, edge at ``fmax``).
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    if warp != 1.0:
        fft_freqs = warp_frequencies(fft_freqs, warp, fmax)
    mel_pts = torch.linspace(
        float(hz_to_mel(torch.tensor(fmin, dtype=torch.float64), htk)),
        float(hz_to_mel(torch.tensor(fmax, dtype=torch.float64), htk)),
        n_mels + 2, dtype=torch.float64,
    )
    hz_pts = mel_to_hz(mel_pts, htk)
    widths = hz_pts[1:] - hz_pts[:-1]                       # (n_mels + 1,)
    ramps = hz_pts[:, None] - fft_freqs[None, :]            # (n_mels + 2, F)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    if slaney_norm:
        weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II basis ``(n_mels, n_mfcc)``: ``mfcc = logmel @ basis``."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)
    basis = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :])
    basis[:, 0] *= math.sqrt(1.0 / n_mels)
    basis[:, 1:] *= math.sqrt(2.0 / n_mels)
    return basis


def deltas(feats: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas along time for ``(T, D)``, edges repeated (HTK/Kaldi formula)."""
    T = feats.shape[0]
    padded = torch.cat([feats[:1].expand(window, -1), feats, feats[-1:].expand(window, -1)], dim=0)
    num = sum(n * (padded[window + n : window + n + T] - padded[window - n : window - n + T]) for n in range(1, window + 1))
    return num / (2 * sum(n * n for n in range(1, window + 1)))
