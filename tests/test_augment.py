import json

import numpy as np
import pytest
import torch

from asrforge.data.augment.waveform import (AugmentConfig, WaveAugment, add_noise, band_limit, colored_noise, pad_with_pauses,
                                    recut_edges, speech_span, speed_perturb)
from asrforge.errors import ConfigError
from asrforge_runtime.features import warp_frequencies
from asrforge.data.dataset import SpeechDataset
from asrforge.data.manifest import read_manifest
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.text import CharTokenizer, Normalizer
from conftest import sine


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_and_pitch(factor):
    wave = sine(1.0, freq=500)
    out = speed_perturb(wave, factor)
    assert out.size == pytest.approx(16000 / factor, abs=2)
    peak = np.argmax(np.abs(np.fft.rfft(out))) * 16000 / out.size
    assert peak == pytest.approx(500 * factor, rel=0.01)


def test_noise_is_mixed_at_the_requested_snr():
    rng = np.random.default_rng(0)
    wave, noise = sine(1.0), rng.standard_normal(16000).astype(np.float32)
    mixed = add_noise(wave, noise, 10.0)
    added = mixed - wave
    snr = 10 * np.log10(np.mean(wave**2) / np.mean(added**2))
    assert snr == pytest.approx(10.0, abs=0.01)


@pytest.mark.parametrize("color, exponent", [("white", 0), ("pink", 1), ("brown", 2)])
def test_generated_noise_has_the_colour_of_its_name(color, exponent):
    noise = colored_noise(64000, color, torch.Generator().manual_seed(0))
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / 16000)
    # power density falls 10*k dB per decade: compare 100-200 Hz against 1-2 kHz
    drop_db = 10 * np.log10(power[(freqs >= 100) & (freqs < 200)].mean() / power[(freqs >= 1000) & (freqs < 2000)].mean())
    assert drop_db == pytest.approx(10 * exponent, abs=1.0)
    assert noise.dtype == np.float32 and noise.std() == pytest.approx(1.0, rel=0.05)


def test_generated_noise_is_added_at_an_snr_in_range():
    aug = WaveAugment(AugmentConfig(noise_colors=["pink", "brown"], noise_prob=1.0, snr_db=[12.0, 18.0]))
    wave = sine(0.5)
    for seed in range(5):
        added = aug(wave, torch.Generator().manual_seed(seed)) - wave
        snr = 10 * np.log10(np.mean(wave**2) / np.mean(added**2))
        assert 12.0 - 1e-3 <= snr <= 18.0 + 1e-3
    assert AugmentConfig(noise_colors=["white"]).enabled
    with pytest.raises(ConfigError, match="noise_colors.*'grey'.*choose from"):
        WaveAugment(AugmentConfig(noise_colors=["grey"]))


def test_band_limit_keeps_the_band_and_attenuates_outside_it():
    t = np.arange(16000) / 16000
    tones = {200: 0.0, 1000: 0.0, 3500: 0.0}
    wave = sum(np.sin(2 * np.pi * f * t) for f in tones).astype(np.float32)
    out = band_limit(wave, 400.0, 2000.0)
    gain = {f: abs(np.fft.rfft(out)[f]) / abs(np.fft.rfft(wave)[f]) for f in tones}   # 1-s signal: bin == Hz
    # order-4 Butterworth magnitude: 1/sqrt(1 + (f/fc)^8) on the low-pass side, mirrored for the high-pass
    assert gain[1000] == pytest.approx(1 / np.sqrt((1 + (1000 / 2000) ** 8) * (1 + (400 / 1000) ** 8)), rel=1e-3)
    assert gain[3500] == pytest.approx(1 / np.sqrt(1 + (3500 / 2000) ** 8), rel=1e-2)
    assert gain[200] == pytest.approx(1 / np.sqrt(1 + (400 / 200) ** 8), rel=1e-2)
    assert out.size == wave.size and out.dtype == np.float32
    assert np.array_equal(band_limit(wave, None, None), wave)


def test_augment_is_reproducible_per_generator(tmp_path):
    noise_path = tmp_path / "noise.wav"
    import soundfile as sf
    sf.write(noise_path, np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1, 16000)
    (tmp_path / "noise.jsonl").write_text(json.dumps({"audio_filepath": "noise.wav", "duration": 0.5, "text": ""}) + "\n")
    aug = WaveAugment(AugmentConfig(speed_factors=[0.9, 1.1], noise_manifest=str(tmp_path / "noise.jsonl"),
                                    noise_prob=1.0, gain_db=[-6, 6], bandlimit_prob=0.5))
    wave = sine(0.5)
    a = aug(wave, torch.Generator().manual_seed(5))
    b = aug(wave, torch.Generator().manual_seed(5))
    outs = {aug(wave, torch.Generator().manual_seed(s)).size for s in range(20)}
    assert np.array_equal(a, b) and outs == {round(8000 / 0.9), round(8000 / 1.1)}


def test_augmented_dataset_differs_per_epoch_not_per_call(corpus):
    utts, _ = read_manifest(corpus / "train.jsonl")
    tok = CharTokenizer.build(Normalizer()(u.text) for u in utts)
    ds = SpeechDataset(utts[:3], FeatureExtractor(FeatureConfig()), tok, Normalizer(), cache_features=True,
                       wave_augment=WaveAugment(AugmentConfig(speed_factors=[0.8, 1.2], gain_db=[-3, 3])))
    e0, again, e1 = ds[(0, 0)], ds[(0, 0)], ds[(0, 1)]
    assert torch.equal(e0.feats, again.feats)
    assert not (e0.feats.shape == e1.feats.shape and torch.equal(e0.feats, e1.feats))
    assert isinstance(ds.cache[0], np.ndarray)            # waveforms are cached, not features


def test_dataset_takes_the_callers_normalized_texts_instead_of_normalizing_again(corpus):
    utts, _ = read_manifest(corpus / "train.jsonl")
    normalize = Normalizer()
    tok = CharTokenizer.build(normalize(u.text) for u in utts)
    given = [normalize(u.text)[::-1] for u in utts[:2]]      # not what the normalizer would make: proves which is used
    ds = SpeechDataset(utts[:2], FeatureExtractor(FeatureConfig()), tok, normalize, texts=given)
    assert [ds[(i, 0)].text for i in range(2)] == given
    assert SpeechDataset(utts[:2], FeatureExtractor(FeatureConfig()), tok, normalize)[(0, 0)].text == normalize(utts[0].text)
    with pytest.raises(ValueError, match="1 normalized texts for 2 utterances"):
        SpeechDataset(utts[:2], FeatureExtractor(FeatureConfig()), tok, normalize, texts=given[:1])


def test_vtlp_warp_keeps_the_band_edge_and_is_continuous():
    freqs = np.linspace(0, 4000, 401)
    for factor in (0.85, 1.0, 1.15):
        warped = warp_frequencies(freqs, factor, top=4000.0)
        assert warped[0] == 0 and warped[-1] == pytest.approx(4000.0)
        assert np.all(warped[1:] > warped[:-1])                         # monotonic: no folding
        low = freqs < 3000 * min(factor, 1.0) / factor                 # below the knee it is a plain scaling
        np.testing.assert_allclose(warped[low], freqs[low] * factor)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_vtlp_moves_a_tone_to_the_mel_bin_of_its_scaled_frequency(factor):
    config = FeatureConfig(n_mels=64, fmax=4000, cmvn="none")
    extract = FeatureExtractor(config)
    wave = sine(1.0, freq=1000)
    peak = int(extract(wave, warp=factor).mean(0).argmax())
    # the bin a real 1000*factor Hz tone lands in, unwarped
    expected = int(extract(sine(1.0, freq=1000 * factor)).mean(0).argmax())
    assert peak == expected != int(extract(wave).mean(0).argmax())


def test_vtlp_draws_a_factor_per_utterance_in_range_and_is_checked(corpus):
    aug = WaveAugment(AugmentConfig(vtlp=[0.9, 1.1]))
    factors = [aug.warp_factor(torch.Generator().manual_seed(s)) for s in range(50)]
    assert all(0.9 <= f <= 1.1 for f in factors) and max(factors) - min(factors) > 0.1
    assert WaveAugment(AugmentConfig()).warp_factor(torch.Generator()) == 1.0
    for bad in ([1.1], [1.1, 0.9], [0.0, 1.0]):
        with pytest.raises(ConfigError, match="augment.vtlp"):
            WaveAugment(AugmentConfig(vtlp=bad))
    # through the dataset: a warped epoch differs from another, the same epoch is reproduced exactly
    utts, _ = read_manifest(corpus / "train.jsonl")
    tok = CharTokenizer.build(Normalizer()(u.text) for u in utts)
    ds = SpeechDataset(utts[:2], FeatureExtractor(FeatureConfig()), tok, Normalizer(), cache_features=True,
                       wave_augment=WaveAugment(AugmentConfig(vtlp=[0.8, 1.2])))
    e0, again, e1 = ds[(0, 0)], ds[(0, 0)], ds[(0, 1)]
    assert torch.equal(e0.feats, again.feats) and e0.feats.shape == e1.feats.shape
    assert not torch.equal(e0.feats, e1.feats)


def test_recut_edges_measures_from_the_speech_not_the_file():
    wave = np.zeros(16000, dtype=np.float32)
    wave[4000:12000] = sine(0.5, freq=300)                     # 0.25-0.75 s speech, silence around it
    assert speech_span(wave) == (4000, 12000)
    into = recut_edges(wave, 20.0, 30.0)                       # 20 ms into the onset, 30 ms before the end
    assert into.size == 8000 - 320 - 480 and np.array_equal(into, wave[4320:11520])
    padded = recut_edges(wave, -50.0, -10.0)                   # keep 50 ms of silence before, 10 ms after
    assert np.array_equal(padded, wave[3200:12160])
    assert np.array_equal(recut_edges(wave, 4000.0, 4000.0), wave)   # nothing would be left: unchanged
    aug = WaveAugment(AugmentConfig(crop_prob=1.0, crop_ms=[-50.0, 40.0]))
    sizes = {aug(wave, torch.Generator().manual_seed(s)).size for s in range(10)}
    assert len(sizes) > 1 and all(8000 - 2 * 640 <= n <= 8000 + 2 * 800 for n in sizes)


def test_pauses_are_room_tone_at_the_asked_level_around_the_untouched_speech():
    speech = sine(0.5, freq=300)
    padded = pad_with_pauses(speech, 0.25, 0.5, -40.0, torch.Generator().manual_seed(0))
    assert padded.size == 4000 + speech.size + 8000 and np.array_equal(padded[4000:4000 + speech.size], speech)
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    pauses = np.concatenate([padded[:4000], padded[-8000:]])
    assert 20 * np.log10(rms(pauses) / rms(speech)) == pytest.approx(-40.0, abs=0.5)
    assert np.array_equal(pad_with_pauses(speech, 0.0, 0.0, -40.0, torch.Generator()), speech)
    aug = WaveAugment(AugmentConfig(pad_prob=1.0, pad_s=[0.1, 0.3]))
    sizes = [aug(speech, torch.Generator().manual_seed(s)).size - speech.size for s in range(8)]
    assert len(set(sizes)) > 1 and all(2 * 1600 <= n <= 2 * 4800 for n in sizes)
    for bad in ({"pad_prob": 1.5}, {"pad_prob": 0.5, "pad_s": [-0.1, 0.5]}, {"pad_prob": 0.5, "pad_floor_db": [-20, -40]}):
        with pytest.raises(ConfigError, match="augment.pad_"):
            WaveAugment(AugmentConfig(**bad))


def test_pauses_alone_keep_cached_features_and_each_epoch_cuts_its_own_pauses(corpus, monkeypatch):
    """With cached features and pauses as the only augmentation, an utterance is read and featurized once with
    the longest pauses; every epoch then cuts that to the pauses it draws, around the same speech frames."""
    import asrforge.data.dataset as dataset_module

    utts, _ = read_manifest(corpus / "train.jsonl")
    tok = CharTokenizer.build(Normalizer()(u.text) for u in utts)
    features = FeatureExtractor(FeatureConfig(cmvn="none"))
    reads = []
    real_load = dataset_module.load_utterance
    monkeypatch.setattr(dataset_module, "load_utterance", lambda u: reads.append(u.id) or real_load(u))
    ds = SpeechDataset(utts[:1], features, tok, Normalizer(), cache_features=True,
                       wave_augment=WaveAugment(AugmentConfig(pad_prob=0.7, pad_s=[0.1, 0.5])))
    alone = features(real_load(utts[0]))
    epochs = [ds[(0, e)].feats for e in range(12)]
    assert reads == [utts[0].id] and isinstance(ds.cache[0], tuple)
    assert torch.equal(ds[(0, 3)].feats, epochs[3])                       # an epoch is reproduced exactly
    lengths = {f.shape[0] - alone.shape[0] for f in epochs}
    assert 0 in lengths and len(lengths) > 2                               # some epochs pause, some do not
    assert all(lengths_ == 0 or 2 * 10 <= lengths_ <= 2 * 50 for lengths_ in lengths)
    for f in epochs:
        quiet = f.mean(1) < alone.mean(1).min()                            # room tone is quieter than any speech frame
        lead = int(quiet[: f.shape[0] // 2].sum())
        # the speech frames away from the edges (whose windows reach into the pause) are the unpadded ones
        torch.testing.assert_close(f[lead + 2: lead + alone.shape[0] - 2], alone[2:-2], atol=1e-4, rtol=1e-4)
    plain = ds.features_of(0)                                              # no generator: no pauses
    assert plain.shape == alone.shape and torch.allclose(plain[2:-2], alone[2:-2], atol=1e-4)
