"""Features as audio arrives: the frames :class:`FeatureExtractor` gives a whole waveform, computed piece by piece.

Frame ``k`` is centred on sample ``k * hop`` and reads ``n_fft`` samples, with zeros before the first sample and
after the last (the offline STFT's constant padding), so it is ready once ``k * hop + n_fft / 2`` samples are in;
:meth:`OnlineFeatures.finish` adds the zeros after the end and gives the last frames. Only features whose frame
depends on no later audio can be computed so: the recipe refuses utterance and speaker CMVN, deltas and trimming for streaming models.
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.features.extractor import FeatureExtractor


class OnlineFeatures:
    """``accept(samples (N,)) -> (T, D)`` frames that became ready; ``finish() -> (T', D)`` the rest. Over a whole
    waveform the frames concatenated equal the extractor's (``features.cmvn`` global or none)."""

    def __init__(self, extractor: FeatureExtractor):
        self.extractor = extractor
        c = extractor.config
        self.hop, self.n_fft = c.hop_length, c.n_fft
        # the samples still needed by frames not yet computed, the padding's zeros included
        self.pending = np.zeros(self.n_fft // 2, dtype=np.float32)
        self.samples = 0            # real samples received
        self.frames = 0             # frames given out
        self.finished = False

    def accept(self, samples: np.ndarray) -> torch.Tensor:
        if self.finished:
            raise ValueError("features were finished; start a new OnlineFeatures for more audio")
        self.pending = np.concatenate([self.pending, np.asarray(samples, dtype=np.float32).reshape(-1)])
        self.samples += len(samples)
        return self._frames(final=False)

    def finish(self) -> torch.Tensor:
        """The frames after the last full one; the offline count is ``samples // hop + 1`` frames in all."""
        self.finished = True
        self.pending = np.concatenate([self.pending, np.zeros(self.n_fft // 2, dtype=np.float32)])
        return self._frames(final=True)

    def _frames(self, final: bool) -> torch.Tensor:
        ready = (len(self.pending) - self.n_fft) // self.hop + 1 if len(self.pending) >= self.n_fft else 0
        if final:
            ready = min(ready, self.samples // self.hop + 1 - self.frames)
        if ready <= 0:
            return torch.zeros(0, self.extractor.config.dim)
        c = self.extractor.config
        wave = torch.from_numpy(self.pending[: (ready - 1) * self.hop + self.n_fft])
        spec = torch.stft(wave, c.n_fft, hop_length=self.hop, win_length=c.win_length, window=self.extractor.window,
                          center=False, return_complex=True)
        self.pending = self.pending[ready * self.hop:]
        self.frames += ready
        return self.extractor.frame_normalized(self.extractor.power_features(spec.abs().pow(2).T)).contiguous()
