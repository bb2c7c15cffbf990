"""Speaker-level CMVN: statistics pooled over a speaker's utterances, in datasets, training and transcription."""

import numpy as np
import pytest
import torch

from asrforge_runtime.audio import load_audio, write_audio
from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.data.manifest import Utterance, load_utterance, read_manifest
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.features.cmvn import CMVNAccumulator, utterance_cmvn
from asrforge.text import Normalizer

from conftest import REPO, tiny_overrides


def test_accumulated_stats_equal_those_of_the_concatenation():
    parts = [torch.randn(n, 5) * 3 + 7 for n in (4, 11, 30)]
    acc = CMVNAccumulator()
    for p in parts:
        acc.add(p)
    whole = torch.cat(parts)
    stats = acc.stats()
    assert acc.frames == 45
    assert torch.allclose(stats.mean, whole.mean(0), atol=1e-5)
    assert torch.allclose(stats.std, whole.std(0, unbiased=False), atol=1e-5)
    with pytest.raises(ValueError):
        CMVNAccumulator().stats()


def _voice(path, freq, seconds, rng):
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    write_audio(path, wave.astype(np.float32), 16000)
    return str(path)


@pytest.fixture
def two_speakers(tmp_path):
    """Three utterances of a low voice, two of a high one, one without a speaker, one unreadable."""
    rng = np.random.default_rng(0)
    utts = [Utterance(_voice(tmp_path / f"a{i}.wav", 200 + 20 * i, 0.5 + 0.2 * i, rng), 1.0, "one", speaker="a", id=f"a{i}")
            for i in range(3)]
    utts += [Utterance(_voice(tmp_path / f"b{i}.wav", 900 + 50 * i, 0.6, rng), 0.6, "two", speaker="b", id=f"b{i}")
             for i in range(2)]
    utts.append(Utterance(_voice(tmp_path / "lone.wav", 500, 0.4, rng), 0.4, "three", id="lone"))
    utts.append(Utterance(str(tmp_path / "gone.wav"), 0.5, "four", speaker="a", id="gone"))
    return utts


def test_speaker_cmvn_normalizes_each_speaker_as_a_whole(two_speakers):
    fe = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="speaker"))
    ds = SpeechDataset(two_speakers, fe, None, Normalizer())
    assert sorted(ds.speaker_stats) == ["a", "b"]          # the unreadable file does not stop the pass
    feats = {u.id: ds.features_of(i) for i, u in enumerate(two_speakers[:-1])}
    for speaker in "ab":
        pooled = torch.cat([f for k, f in feats.items() if k.startswith(speaker)])
        assert torch.allclose(pooled.mean(0), torch.zeros(40), atol=1e-3)
        assert torch.allclose(pooled.std(0, unbiased=False), torch.ones(40), atol=1e-2)
        # ...but not each utterance on its own: the utterances keep what differs between them
        assert feats[f"{speaker}0"].mean(0).abs().max() > 0.1
    # an utterance with no speaker is its own speaker
    raw = fe.unnormalized(ds.wave(5))
    assert torch.allclose(feats["lone"], utterance_cmvn(raw), atol=1e-6)
    assert isinstance(ds[(6, 0)], BadItem) and "does not exist" in ds[(6, 0)].reason


def test_speaker_cmvn_without_stats_is_utterance_cmvn():
    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    by_speaker = FeatureExtractor(FeatureConfig(cmvn="speaker"))(wave)
    by_utterance = FeatureExtractor(FeatureConfig(cmvn="utterance"))(wave)
    assert torch.equal(by_speaker, by_utterance)


def test_speaker_cmvn_with_waveform_augmentation_caches_waves(two_speakers):
    from asrforge.data.augment.waveform import AugmentConfig, WaveAugment

    fe = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="speaker"))
    ds = SpeechDataset(two_speakers[:5], fe, None, Normalizer(), cache_features=True,
                       wave_augment=WaveAugment(AugmentConfig(gain_db=[-6, 6])))
    assert set(ds.cache) == set(range(5)) and all(isinstance(w, np.ndarray) for w in ds.cache.values())
    g = torch.Generator().manual_seed(0)
    # gain only shifts log-mel by a constant, which the speaker's mean does not remove: the result moves
    assert not torch.allclose(ds.features_of(0, g), ds.features_of(0))


def _speaker_recipe(corpus):
    from asrforge.recipe import load_recipe

    return load_recipe(REPO / "configs" / "demo_ctc.yaml", tiny_overrides(corpus, **{"features.cmvn": "speaker", "train.epochs": 1}))


def test_training_and_transcription_with_speaker_cmvn(corpus, tmp_path, capsys):
    from asrforge.data.manifest import read_manifest
    from asrforge.cli import main
    from asrforge.inference.transcriber import Transcriber
    from asrforge.train.trainer import Trainer

    exp = tmp_path / "exp"
    trainer = Trainer(_speaker_recipe(corpus), exp, progress=False)
    assert trainer.train_set.speaker_stats and trainer.dev_set.speaker_stats
    trainer.fit()
    tr = Transcriber.from_checkpoint(exp)
    assert tr.recipe.features.cmvn == "speaker"
    ev = tr.evaluate(corpus / "test.jsonl", beam_size=1, progress=False)
    assert ev.summary()["utts"] > 0

    # --same-speaker pools the files' statistics: the same as a manifest whose lines share one speaker
    paths = [u.audio_filepath for u in read_manifest(corpus / "test.jsonl")[0][:3]]
    stats = tr.pooled_speaker_stats(paths)
    acc = CMVNAccumulator()
    for p in paths:
        acc.add(tr.features.unnormalized(load_audio(p)))
    assert torch.allclose(stats.mean, acc.stats().mean) and torch.allclose(stats.std, acc.stats().std)
    wave = load_audio(paths[0])
    assert not torch.allclose(tr.features(wave, stats), tr.features(wave))   # pooled, not per file
    pooled = [r.text for r in tr.transcribe_batch(paths, beam_size=1, speaker_stats=stats)]
    assert main(["transcribe", *paths, "--model", str(exp), "--same-speaker", "--beam-size", "1"]) == 0
    printed = capsys.readouterr()
    assert [line.split("\t", 1)[1] for line in printed.out.splitlines()] == pooled
    assert "speaker CMVN" not in printed.err
    assert main(["transcribe", paths[0], "--model", str(exp), "--beam-size", "1"]) == 0   # one file on its own: warned
    assert "--same-speaker" in capsys.readouterr().err


def test_same_speaker_is_refused_for_utterance_cmvn_models(trained, corpus, capsys):
    from asrforge.cli import main
    from asrforge.data.manifest import read_manifest

    path = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    assert main(["transcribe", path, "--model", str(trained), "--same-speaker"]) == 2
    assert "--same-speaker applies to models trained with features.cmvn=speaker" in capsys.readouterr().err


def test_speaker_cmvn_from_shards_uses_the_statistics_the_manifest_gives(corpus, tmp_path):
    """Training from shards pools each speaker's statistics from the shards' audio (the same as from the
    manifest, up to the shards' 16-bit FLAC), normalizes every streamed utterance by its speaker's, and trains."""
    from asrforge.data.shards import write_shards
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    spec = write_shards(corpus / "train.jsonl", tmp_path / "shards", shard_size=15, progress=False)["spec"]
    overrides = {"features.cmvn": "speaker", "specaugment.enabled": "false",
                 "train.max_steps": 2}
    recipe = load_recipe(REPO / "configs" / "demo_ctc.yaml", tiny_overrides(corpus, **overrides, **{"data.train": spec}))
    trainer = Trainer(recipe, tmp_path / "exp", progress=False)
    utts, _ = read_manifest(corpus / "train.jsonl")
    features = FeatureExtractor(recipe.features)
    expected = SpeechDataset(utts, features, None, Normalizer()).speaker_stats
    streamed = trainer.sampler.speaker_stats
    assert set(streamed) == set(expected) and len(expected) > 1
    for speaker in expected:
        assert torch.allclose(streamed[speaker].mean, expected[speaker].mean, atol=1e-2)
        assert torch.allclose(streamed[speaker].std, expected[speaker].std, atol=1e-2)
    batch = next(iter(trainer.sampler))
    by_id = {u.id: u for u in utts}
    for uid, speaker, feats, n in zip(batch.ids, batch.speakers, batch.feats, batch.feat_lens):
        assert speaker == by_id[uid].speaker
        direct = features(load_utterance(by_id[uid]), expected[speaker])   # speaker, not utterance, CMVN
        assert torch.allclose(feats[:n], direct, atol=0.05)
    assert trainer.fit()["steps"] == 2


def test_speaker_statistics_leave_out_the_silence_around_the_speech_but_not_inside_it(tmp_path):
    """The same tone recorded with little or much silence around it: with stats_trim_db the speaker statistics
    are the same either way; over every frame, the silence drags the mean down. A pause between two bursts of
    speech stays in the statistics (the model hears it)."""
    rng = np.random.default_rng(2)
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)
    hiss = lambda n: 1e-4 * rng.standard_normal(n)
    utts = []
    waves = [np.concatenate([np.zeros(800), tone, np.zeros(800)]),
             np.concatenate([np.zeros(16000), tone, np.zeros(16000)]),
             np.concatenate([np.zeros(16000), tone, np.zeros(8000), tone, np.zeros(16000)])]
    for i, wave in enumerate(waves):
        write_audio(tmp_path / f"u{i}.wav", (wave + hiss(wave.size)).astype(np.float32), 16000)
        utts.append(Utterance(str(tmp_path / f"u{i}.wav"), wave.size / 16000, "one", speaker=f"s{i}", id=f"u{i}"))
    stats = {}
    for trim in (None, 30.0):
        fe = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="speaker", stats_trim_db=trim))
        ds = SpeechDataset(utts, fe, None, Normalizer())
        stats[trim] = [ds.speaker_stats[f"s{i}"].mean for i in range(2)]
        # 10-ms frames: 2.5 s in all, or the 0.5-s tone (a frame either side, where the window reaches into it)
        assert abs(fe.statistics_frames(ds.wave(1)).shape[0] - (51 if trim else 251)) <= 2
        # two 0.5-s tones 0.5 s apart: 1.5 s from the first tone's start to the second one's end
        assert abs(fe.statistics_frames(ds.wave(2)).shape[0] - (151 if trim else 351)) <= 2
    assert (stats[None][0] - stats[None][1]).abs().max() > 1.0
    assert (stats[30.0][0] - stats[30.0][1]).abs().max() < 0.2


def test_accumulators_merged_from_shares_give_the_statistics_of_the_whole():
    """Ranks pool their own shares of a speaker's frames; merged, they are the statistics of all of them."""
    frames = torch.randn(300, 5) * 3 + 7
    whole, parts = CMVNAccumulator(), [CMVNAccumulator() for _ in range(3)]
    whole.add(frames)
    parts[0].add(frames[:40])
    parts[1].add(frames[40:])       # parts[2] saw none of this speaker
    merged = CMVNAccumulator().merge(parts[2]).merge(parts[0]).merge(parts[1])
    assert merged.frames == 300
    assert torch.allclose(merged.stats().mean, whole.stats().mean) and torch.allclose(merged.stats().std, whole.stats().std)
    assert parts[0].frames == 40    # merging into a new accumulator leaves the shares as they were
