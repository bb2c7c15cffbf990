"""The runtime's numpy front end computes what asrforge's torch front end computes, within 1e-4."""

import numpy as np
import pytest

from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge_runtime.errors import ConfigError
from asrforge_runtime.features import FrontEnd


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced harmonics under a moving envelope, noise, and silence at both ends (what trimming cuts)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None) ** 2
    wave = 0.2 * voiced * envelope + 0.003 * rng.standard_normal(t.size)
    silence = np.zeros(4000)
    return np.concatenate([silence, wave, silence]).astype(np.float32)


CONFIGS = [
    {},                                                       # 80 log-mel, utterance CMVN
    {"cmvn": "none"},
    {"kind": "mfcc", "deltas": True, "cmvn": "utterance"},
    {"n_mels": 40, "htk_mel": True, "fmin": 20.0, "fmax": 7600.0, "cmvn": "speaker"},
    {"n_mels": 40, "trim_db": 30.0, "trim_margin_ms": 50.0},
    {"win_ms": 20.0, "hop_ms": 12.5, "n_fft": 400, "deltas": True, "cmvn": "none"},
    {"kind": "kaldi_fbank", "fmin": 20.0},                   # sherpa-onnx's front end
    {"kind": "kaldi_fbank", "fmin": 20.0, "n_mels": 40, "deltas": True, "cmvn": "none"},
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=[str(c) or "default" for c in CONFIGS])
@pytest.mark.parametrize("seconds", [0.3, 1.7])
def test_numpy_front_end_equals_torch_front_end(overrides, seconds):
    config = FeatureConfig(**overrides)
    wave = _speechlike(seconds, seed=len(overrides))
    ours = FrontEnd(config)(wave)
    theirs = FeatureExtractor(config)(wave).numpy()
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (ours.shape[0], config.dim)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_global_cmvn_uses_the_recipe_statistics():
    mean, std = list(np.linspace(-3, 3, 40)), list(np.linspace(0.5, 2, 40))
    config = FeatureConfig(n_mels=40, cmvn="global", global_mean=mean, global_std=std)
    wave = _speechlike(0.8, seed=3)
    np.testing.assert_allclose(FrontEnd(config)(wave), FeatureExtractor(config)(wave).numpy(), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="global_mean and features.global_std must both hold 40"):
        FrontEnd(FeatureConfig(n_mels=40, cmvn="global", global_mean=mean[:3], global_std=std))
    with pytest.raises(ConfigError, match="needs features.global_mean"):
        FrontEnd(FeatureConfig(n_mels=40, cmvn="global"))(wave)


def test_trimming_reports_where_the_kept_frames_start():
    config = FeatureConfig(n_mels=40, trim_db=30.0, trim_margin_ms=50.0)
    wave = _speechlike(1.0, seed=5)
    assert FrontEnd(config).trimmed_start(wave) == FeatureExtractor(config).kept_frames(wave).start > 0


def test_kaldi_fbank_is_kaldi_native_fbank_as_sherpa_onnx_sets_it_up():
    import kaldi_native_fbank as knf

    config = FeatureConfig(kind="kaldi_fbank", fmin=20.0, cmvn="none")
    wave = _speechlike(1.23, seed=9)
    opts = knf.FbankOptions()           # sherpa-onnx's FeatureExtractor: dither 0, unsnipped edges, 80 bins, -400 Hz
    opts.frame_opts.dither, opts.frame_opts.snip_edges = 0.0, False
    opts.mel_opts.num_bins, opts.mel_opts.high_freq = 80, -400.0
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, wave)
    fbank.input_finished()
    reference = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    ours = FrontEnd(config)(wave)
    assert ours.shape == reference.shape == (config.num_frames(wave.size), 80)
    np.testing.assert_array_equal(ours, reference)
    with pytest.raises(ConfigError, match="trim_db"):
        FrontEnd(FeatureConfig(kind="kaldi_fbank", trim_db=30.0))
