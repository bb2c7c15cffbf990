import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asrforge.data.augment.waveform import AugmentConfig, WaveAugment
from asrforge.data.augment.reverb import reverberate, simulated_rir
from asrforge.errors import ConfigError
from conftest import sine


def _decay_time(rir: np.ndarray, sr: int = 16000) -> float:
    """RT60 estimated from the Schroeder energy decay curve's slope between -5 and -25 dB."""
    edc = np.cumsum((rir[1:] ** 2)[::-1])[::-1]          # the tail only: the direct sound is not decay
    edc_db = 10 * np.log10(edc / edc[0])
    t5, t25 = np.argmax(edc_db <= -5), np.argmax(edc_db <= -25)
    return 3.0 * (t25 - t5) / sr                         # 20 dB of decay, times 3


@pytest.mark.parametrize("rt60, drr", [(0.3, 0.0), (0.8, 10.0)])
def test_simulated_rir_has_the_asked_decay_and_direct_to_reverberant_ratio(rt60, drr):
    rir = simulated_rir(rt60, drr, torch.Generator().manual_seed(0))
    assert rir.size == round(rt60 * 16000) and rir[0] == 1.0 and rir.dtype == np.float32
    assert 10 * np.log10(1.0 / np.sum(rir[1:].astype(np.float64) ** 2)) == pytest.approx(drr, abs=0.01)
    assert _decay_time(rir) == pytest.approx(rt60, rel=0.1)


def test_reverberation_keeps_timing_length_and_level():
    wave = np.zeros(16000, dtype=np.float32)
    wave[4000] = 1.0                                      # a click at 0.25 s
    rir = np.concatenate([np.zeros(300), simulated_rir(0.4, 3.0, torch.Generator().manual_seed(1))])
    out = reverberate(wave, rir)                          # 300 samples of leading silence, as recorded RIRs have
    assert out.size == wave.size and out.dtype == np.float32
    assert int(np.argmax(np.abs(out))) == 4000            # aligned on the direct path, not delayed
    assert np.sqrt(np.mean(out**2)) == pytest.approx(np.sqrt(np.mean(wave**2)), rel=1e-4)
    assert np.abs(out[:4000]).max() < 1e-6 and np.abs(out[4100:8000]).max() > 0.01       # the tail follows the click
    assert np.array_equal(reverberate(np.zeros(0, np.float32), rir), np.zeros(0, np.float32))


def test_recorded_impulse_responses_come_from_a_manifest(tmp_path):
    rir = np.zeros((2400, 2), dtype=np.float32)
    rir[50, 0], rir[50 + 1600, 0] = 1.0, 0.5             # direct sound after 50 samples, one echo 100 ms later
    rir[90, 1] = 1.0                                     # a second microphone, further away: not mixed in
    sf.write(tmp_path / "room.wav", rir, 16000)
    (tmp_path / "rirs.jsonl").write_text(json.dumps({"audio_filepath": "room.wav", "duration": 0.15, "text": ""}) + "\n")
    aug = WaveAugment(AugmentConfig(reverb_prob=1.0, rir_manifest=str(tmp_path / "rirs.jsonl")))
    assert aug.config.enabled
    wave = sine(0.5, freq=300)
    out = aug(wave, torch.Generator().manual_seed(0))
    expected = wave.copy()
    expected[1600:] += 0.5 * wave[:-1600]
    expected *= np.sqrt(np.mean(wave**2) / np.mean(expected**2))
    assert np.allclose(out, expected, atol=2e-4)          # 16-bit file: the echo's amplitude is quantized


def test_simulated_reverberation_is_reproducible_and_applied_at_its_probability():
    aug = WaveAugment(AugmentConfig(reverb_prob=0.5, rt60_s=[0.2, 0.6], drr_db=[0.0, 5.0]))
    wave = sine(0.5, freq=300) * np.hanning(8000).astype(np.float32)
    assert np.array_equal(aug(wave, torch.Generator().manual_seed(3)), aug(wave, torch.Generator().manual_seed(3)))
    changed = [not np.allclose(aug(wave, torch.Generator().manual_seed(s)), wave, atol=1e-3) for s in range(40)]
    assert 10 <= sum(changed) <= 30


@pytest.mark.parametrize("bad, match", [
    ({"reverb_prob": 1.5}, "reverb_prob: 1.5 is not a probability"),
    ({"reverb_prob": 0.5, "rt60_s": [0.8, 0.2]}, r"rt60_s: \[0.8, 0.2\] is not a range .* e.g. \[0.2, 0.8\]"),
    ({"reverb_prob": 0.5, "rt60_s": [0.0, 0.5]}, r"rt60_s.*\(above 0\)"),
    ({"reverb_prob": 0.5, "drr_db": [5.0]}, r"drr_db: \[5.0\] is not a range"),
])
def test_bad_reverberation_settings_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        WaveAugment(AugmentConfig(**bad))


def test_an_empty_rir_manifest_is_refused(tmp_path):
    (tmp_path / "rirs.jsonl").write_text("")
    with pytest.raises(ConfigError, match="rir_manifest .*rirs.jsonl lists no readable impulse response"):
        WaveAugment(AugmentConfig(reverb_prob=0.5, rir_manifest=str(tmp_path / "rirs.jsonl")))


def test_unreadable_recordings_in_an_augmentation_manifest_are_skipped_and_named(tmp_path, capsys):
    sf.write(tmp_path / "room.wav", simulated_rir(0.2, 5.0, torch.Generator().manual_seed(0)), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    rows = [{"audio_filepath": name, "duration": 0.2, "text": ""} for name in ("gone.wav", "room.wav", "broken.wav")]
    (tmp_path / "rirs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    aug = WaveAugment(AugmentConfig(reverb_prob=1.0, rir_manifest=str(tmp_path / "rirs.jsonl"),
                                    noise_manifest=str(tmp_path / "rirs.jsonl")))
    assert len(aug.rirs) == 1 and len(aug.noises) == 1
    err = capsys.readouterr().err
    for key in ("rir_manifest", "noise_manifest"):
        assert f"augment.{key}: skipped 3 of the 4 items of {tmp_path / 'rirs.jsonl'}, using the other 1" in err
    (tmp_path / "none.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ConfigError, match=r"rir_manifest .*none.jsonl lists no readable impulse response file; "
                                          r"the first problem: audio file .*gone.wav does not exist"):
        WaveAugment(AugmentConfig(reverb_prob=0.5, rir_manifest=str(tmp_path / "none.jsonl")))
