"""Waveform -> (T, D) feature matrix: log-mel filterbank or MFCC, normalized per utterance or per speaker.

The recipe's section, :class:`FeatureConfig`, is the runtime's (``asrforge_runtime.features``), whose numpy front end
computes these same features for exported models; this one computes them with torch for training (frequency warping
included) and for PyTorch models.
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.errors import ConfigError
from asrforge.features.cmvn import CMVNStats, utterance_cmvn
from asrforge.features.mel import dct_matrix, deltas, mel_filterbank
from asrforge_runtime.features import LOG_FLOOR, FeatureConfig, kaldi_fbank

__all__ = ["FeatureConfig", "FeatureExtractor"]


class FeatureExtractor:
    """Callable turning a mono waveform ``(N,)`` into features ``(T, D)`` (float32, CPU)."""

    def __init__(self, config: FeatureConfig):
        config.check()
        self.global_stats = None
        if config.global_mean is not None:
            self.global_stats = CMVNStats(torch.tensor(config.global_mean), torch.tensor(config.global_std))
        self.config = config
        self.window = torch.hann_window(config.win_length, periodic=True)
        self.mel = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin,
                                  config.fmax, htk=config.htk_mel).float()
        self.dct = dct_matrix(config.n_mfcc, config.n_mels).float() if config.kind == "mfcc" else None

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``(N,)`` -> ``(T, n_fft//2+1)`` power spectrum, centered frames, zero padding at the edges."""
        c = self.config
        spec = torch.stft(wave, c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        return spec.abs().pow(2).T

    def filterbank(self, warp: float = 1.0) -> torch.Tensor:
        """Mel filters ``(n_mels, F)``, frequency-warped by ``warp`` (training augmentation) when it is not 1."""
        if warp == 1.0:
            return self.mel
        c = self.config
        return mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, htk=c.htk_mel, warp=warp).float()

    def power_features(self, power: torch.Tensor, warp: float = 1.0) -> torch.Tensor:
        """Power spectrum ``(T, F)`` -> every frame's features ``(T, D)``, before CMVN."""
        feats = torch.log(power @ self.filterbank(warp).T + LOG_FLOOR)
        if self.dct is not None:
            feats = feats @ self.dct
        if self.config.deltas:
            d1 = deltas(feats)
            feats = torch.cat([feats, d1, deltas(d1)], dim=1)
        return feats

    def _kept(self, power: torch.Tensor) -> slice:
        """The frames ``features.trim_db`` keeps of a power spectrum ``(T, F)``: all of them when it is unset."""
        if self.config.trim_db is None:
            return slice(0, power.shape[0])
        first, end = _loud_span(power, self.config.trim_db)
        margin = int(round(self.config.trim_margin_ms / self.config.hop_ms))
        return slice(max(0, first - margin), min(power.shape[0], end + margin))

    def kept_frames(self, wave: np.ndarray | torch.Tensor) -> slice:
        """``(N,)`` -> the frames of it that the features keep (``features.trim_db``); frame ``k`` is centred on
        sample ``k * hop_length``, so ``kept.start * hop_ms`` is where the first kept frame lies in ``wave``."""
        if self.config.trim_db is None:
            return slice(0, self.config.num_frames(len(wave)))
        return self._kept(self.power_spectrogram(torch.as_tensor(wave, dtype=torch.float32)))

    def _kaldi(self, wave: np.ndarray | torch.Tensor, warp: float) -> torch.Tensor:
        """``features.kind: kaldi_fbank`` by kaldi-native-fbank (the runtime's and sherpa-onnx's own), deltas added."""
        if warp != 1.0:
            raise ConfigError("augment.vtlp warps asrforge's own filterbank; with features.kind: kaldi_fbank leave "
                              "augment.vtlp empty")
        feats = torch.from_numpy(kaldi_fbank(np.asarray(wave, dtype=np.float32), self.config))
        if self.config.deltas:
            d1 = deltas(feats)
            feats = torch.cat([feats, d1, deltas(d1)], dim=1)
        return feats

    def unnormalized(self, wave: np.ndarray | torch.Tensor, warp: float = 1.0) -> torch.Tensor:
        """``(N,)`` -> ``(T, D)`` features before CMVN (what speaker statistics are accumulated from), of the
        frames ``features.trim_db`` keeps."""
        if self.config.kind == "kaldi_fbank":
            return self._kaldi(wave, warp)
        power = self.power_spectrogram(torch.as_tensor(wave, dtype=torch.float32))
        return self.power_features(power, warp)[self._kept(power)]

    def statistics_frames(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(N,)`` -> the un-normalized frames ``(T', D)`` that speaker statistics are pooled from."""
        if self.config.kind == "kaldi_fbank":       # (stats_trim_db does not apply to it)
            return self._kaldi(wave, 1.0)
        power = self.power_spectrogram(torch.as_tensor(wave, dtype=torch.float32))
        kept = self._kept(power)
        feats, power = self.power_features(power)[kept], power[kept]
        if self.config.stats_trim_db is None:
            return feats
        first, end = _loud_span(power, self.config.stats_trim_db)
        return feats[first:end]

    def __call__(self, wave: np.ndarray | torch.Tensor, speaker_stats: CMVNStats | None = None,
                 warp: float = 1.0) -> torch.Tensor:
        """``(N,)`` -> normalized ``(T, D)`` (fewer frames with ``features.trim_db``); ``speaker_stats`` is used
        when ``cmvn`` is "speaker"; ``warp`` is a VTLP factor (training only)."""
        return self.normalized(self.unnormalized(wave, warp), speaker_stats)

    def normalized(self, feats: torch.Tensor, speaker_stats: CMVNStats | None = None) -> torch.Tensor:
        """``(T, D)`` un-normalized -> what ``features.cmvn`` makes of them."""
        if self.config.cmvn == "speaker" and speaker_stats is not None:
            feats = speaker_stats.apply(feats)
        elif self.config.cmvn in ("global", "none"):
            feats = self.frame_normalized(feats)
        else:
            feats = utterance_cmvn(feats)
        return feats.contiguous()

    def frame_normalized(self, feats: torch.Tensor) -> torch.Tensor:
        """``(T, D)`` un-normalized -> normalized frame by frame (``cmvn`` global or none), as streaming needs."""
        if self.config.cmvn == "none":
            return feats
        if self.global_stats is None:
            raise ConfigError("features.cmvn=global needs features.global_mean and features.global_std; "
                              "`asrforge train` measures them on data.train")
        return self.global_stats.apply(feats)


def _loud_span(power: torch.Tensor, below_db: float) -> tuple[int, int]:
    """Power spectrum ``(T, F)`` -> ``(first, last + 1)``: the frames from the first to the last whose energy
    comes within ``below_db`` of the loudest frame's."""
    energy_db = 10 * torch.log10(power.sum(1) + LOG_FLOOR)
    loud = torch.nonzero(energy_db >= energy_db.max() - below_db).squeeze(1)
    return int(loud[0]), int(loud[-1]) + 1
