"""The mel filterbank and DCT as torch tensors (defined once, in ``asrforge_runtime.features``), and deltas."""

from __future__ import annotations

import torch

from asrforge_runtime import features as _numpy


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, slaney_norm: bool = True, warp: float = 1.0) -> torch.Tensor:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)``, float64 (see :func:`asrforge_runtime.features.mel_filterbank`)."""
    return torch.from_numpy(_numpy.mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, slaney_norm, warp))


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II basis ``(n_mels, n_mfcc)``, float64: ``mfcc = logmel @ basis``."""
    return torch.from_numpy(_numpy.dct_matrix(n_mfcc, n_mels))


def deltas(feats: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas along time for ``(T, D)``, edges repeated (HTK/Kaldi formula)."""
    T = feats.shape[0]
    padded = torch.cat([feats[:1].expand(window, -1), feats, feats[-1:].expand(window, -1)], dim=0)
    num = sum(n * (padded[window + n : window + n + T] - padded[window - n : window - n + T]) for n in range(1, window + 1))
    return num / (2 * sum(n * n for n in range(1, window + 1)))
