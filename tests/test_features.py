"""Features against librosa, the field's reference implementation (tolerances stated per check)."""

import librosa
import numpy as np
import pytest
import torch

from asrforge.data.augment import SpecAugment, SpecAugmentConfig
from asrforge.features import FeatureConfig, FeatureExtractor
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


def _tone_in_silence(before_s: float, after_s: float, seed: int = 0) -> np.ndarray:
    """A 0.5-s 300 Hz tone with ``before_s``/``after_s`` of hiss 70 dB under it on either side."""
    rng = np.random.default_rng(seed)
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)
    wave = np.concatenate([np.zeros(int(before_s * 16000)), tone, np.zeros(int(after_s * 16000))])
    return (wave + 1e-4 * rng.standard_normal(wave.size)).astype(np.float32)


def test_trim_cuts_the_silence_around_the_speech_to_the_margin_alike_however_much_there_was():
    fe = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="none", trim_db=30, trim_margin_ms=50))
    tight, padded = _tone_in_silence(0.02, 0.02), _tone_in_silence(1.0, 2.0)
    kept = fe.kept_frames(padded)
    assert abs(kept.start - 95) <= 2 and abs(kept.stop - kept.start - 61) <= 3     # tone 100-150, 5 frames either side
    a, b = fe(tight), fe(padded)
    assert a.shape[0] == fe.config.num_frames(tight.size) and b.shape[0] == kept.stop - kept.start   # nothing to cut
    # the kept frames are the ones the untrimmed features have there: the trim only cuts, it changes nothing
    whole = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="none"))(padded)
    assert whole.shape[0] == 351 and torch.equal(b, whole[kept])
    # speaker statistics come from the kept frames too, then stats_trim_db narrows them to the speech
    both = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="speaker", trim_db=30, stats_trim_db=30))
    assert abs(both.statistics_frames(padded).shape[0] - 51) <= 2


def test_trim_keeps_pauses_inside_the_speech_and_the_margin_stops_at_the_ends():
    fe = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="none", trim_db=30, trim_margin_ms=200))
    burst = _tone_in_silence(0.0, 0.6)
    two = np.concatenate([burst, _tone_in_silence(0.0, 0.05, seed=1)])     # tone, 0.6 s pause, tone, 50 ms
    kept = fe.kept_frames(two)
    assert kept.start == 0 and kept.stop == fe.config.num_frames(two.size)
    off = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="none"))
    assert fe.kept_frames(two) == off.kept_frames(two)


@pytest.mark.parametrize("setting", ["trim_db=0", "trim_db=-3", "stats_trim_db=0", "trim_margin_ms=-1"])
def test_trim_settings_are_checked(setting):
    from asrforge.errors import ConfigError
    key, value = setting.split("=")
    with pytest.raises(ConfigError, match=f"features.{key}"):
        FeatureExtractor(FeatureConfig(**{key: float(value)}))
