"""Features as audio arrives: the frames :class:`FeatureExtractor` gives a whole waveform, computed piece by piece.

Frame ``k`` is centred on sample ``k * hop`` and reads ``n_fft`` samples, with zeros before the first sample and
after the last (the offline STFT's constant padding), so it is ready once ``k * hop + n_fft / 2`` samples are in;
:meth:`OnlineFeatures.finish` adds the zeros after the end and gives the last frames. Only features whose frame
depends on no later audio can be computed so: the recipe refuses utterance and speaker CMVN, deltas and trimming for streaming models.
``features.kind: kaldi_fbank`` is computed by kaldi-native-fbank's own online computation instead (the runtime's
:class:`~asrforge_runtime.features.OnlineKaldiFbank`, as sherpa-onnx's streams compute it).
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.features.extractor import FeatureExtractor
from asrforge_runtime.features import OnlineFrames


class OnlineFeatures(OnlineFrames):
    """``accept(samples (N,)) -> (T, D)`` frames that became ready; ``finish() -> (T', D)`` the rest, as torch
    tensors. Over a whole waveform the frames concatenated equal the extractor's (``features.cmvn`` global or none);
    the buffering is the runtime's :class:`~asrforge_runtime.features.OnlineFrames`."""

    def __init__(self, extractor: FeatureExtractor):
        super().__init__(extractor.config)
        self.extractor = extractor

    def _from_kaldi(self, raw: np.ndarray) -> torch.Tensor:
        return self.extractor.frame_normalized(torch.from_numpy(raw))

    def _compute(self, samples: np.ndarray) -> torch.Tensor:
        c = self.extractor.config
        spec = torch.stft(torch.from_numpy(samples), c.n_fft, hop_length=self.hop, win_length=c.win_length,
                          window=self.extractor.window, center=False, return_complex=True)
        return self.extractor.frame_normalized(self.extractor.power_features(spec.abs().pow(2).T)).contiguous()

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, self.extractor.config.dim)
