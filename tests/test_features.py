"""Features against librosa, the field's reference implementation (tolerances stated per check)."""

import librosa
import numpy as np
import pytest
import torch

from asrforge.features import FeatureConfig, FeatureExtractor, SpecAugment, SpecAugmentConfig
from asrforge.features.mel import deltas, mel_filterbank


@pytest.fixture
def wave():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(16000)).astype(np.float32)


@pytest.mark.parametrize("n_mels,htk", [(80, False), (40, True), (64, False)])
def test_mel_filterbank_matches_librosa(n_mels, htk):
    ours = mel_filterbank(16000, 512, n_mels, htk=htk).numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=n_mels, htk=htk, dtype=np.float64)
    np.testing.assert_allclose(ours, ref, atol=1e-10)   # float64 both sides


def test_log_mel_matches_librosa(wave):
    fe = FeatureExtractor(FeatureConfig(cmvn="none"))
    ours = fe(wave).numpy()
    ref = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                         center=True, pad_mode="constant", n_mels=80)
    assert ours.shape == (101, 80)
    # float32 STFT against librosa's float32 path: within 1e-3 in the log domain
    np.testing.assert_allclose(ours, np.log(ref.T + 1e-6), atol=1e-3)


def test_mfcc_and_deltas_match_librosa(wave):
    fe = FeatureExtractor(FeatureConfig(kind="mfcc", n_mfcc=13, deltas=True, cmvn="none"))
    ours = fe(wave).numpy()
    assert ours.shape == (101, 39)
    mel = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                         center=True, pad_mode="constant", n_mels=80)
    mfcc = librosa.feature.mfcc(S=np.log(mel + 1e-6), n_mfcc=13)          # DCT-II, orthonormal
    np.testing.assert_allclose(ours[:, :13], mfcc.T, atol=5e-3)
    d1 = librosa.feature.delta(mfcc, width=5, order=1, mode="nearest")
    np.testing.assert_allclose(ours[:, 13:26], d1.T, atol=5e-3)


def test_deltas_of_a_ramp_are_its_slope():
    ramp = torch.arange(20, dtype=torch.float32)[:, None] * 3.0
    assert torch.allclose(deltas(ramp)[2:-2], torch.full((16, 1), 3.0))


def test_utterance_cmvn(wave):
    feats = FeatureExtractor(FeatureConfig())(wave)
    assert torch.allclose(feats.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(feats.std(0, unbiased=False), torch.ones(80), atol=1e-2)


def test_specaugment_is_deterministic_per_generator_and_masks():
    feats = torch.randn(200, 80)
    aug = SpecAugment(SpecAugmentConfig(freq_masks=2, freq_width=10, time_masks=2, time_width=0.1))
    a = aug(feats, torch.Generator().manual_seed(1))
    b = aug(feats, torch.Generator().manual_seed(1))
    c = aug(feats, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero_cols = (a == 0).all(0).sum()
    zero_rows = (a == 0).all(1).sum()
    assert 0 < zero_cols <= 20 and zero_rows <= 40
    assert torch.equal(feats[a != 0], a[a != 0])        # unmasked cells untouched
