"""The one recognizer interface: load_model reads a checkpoint once and decides its kind once, what each kind
offers and refuses, the one result type, the decode knobs from recipe to search, the registries' contracts, and
the recipes that ship with the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asrforge.cli import main
from asrforge_runtime.search.config import DecodeConfig
from asrforge.errors import ConfigError
from asrforge.inference import Result, Segment, Word, load_model
from asrforge.inference.transcriber import Transcriber
from asrforge.inference.whisper import WhisperTranscriber
from asrforge.recipe import load_recipe, shipped_recipes
from asrforge.registry import MODELS, PRETRAINED_MODELS


def test_a_checkpoint_file_is_read_once_to_tell_its_kind_and_build_it(trained, whisper_pt, monkeypatch):
    reads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    assert isinstance(load_model(trained), Transcriber)            # an experiment folder: its best.pt
    assert isinstance(load_model(whisper_pt), WhisperTranscriber)
    assert [str(p) for p in reads] == [str(trained / "best.pt"), str(whisper_pt)]


def test_what_each_kind_offers_and_refuses(trained, whisper_pt):
    ours, whisper = load_model(trained), load_model(whisper_pt)
    assert (ours.source, whisper.source) == (str(trained / "best.pt"), str(whisper_pt))
    assert ours.sample_rate == whisper.sample_rate == 16000
    assert ours.tasks == ("transcribe",) and ours.languages == () and ours.word_timestamps and not ours.streaming
    ours.check_options(beam_size=3, token_beam=2, language=None, task="transcribe", temperature=0, word_timestamps=True)
    for options, reason in [({"language": "de"}, "takes no language option"),
                            ({"task": "translate"}, "translation needs a multilingual Whisper"),
                            ({"temperature": 0.4}, "decodes by search, not by sampling"),
                            ({"patience": 2.0}, "apply to Whisper checkpoints only"),
                            ({"token_beam": 0}, "decode.token_beam and decode.candidates must be >= 1"),
                            ({"beam_sise": 3}, "apply to Whisper checkpoints only")]:
        with pytest.raises(ConfigError, match=reason):
            ours.check_options(**options)
    whisper.check_options(beam_size=3, language="en", word_timestamps=True, patience=2.0)
    for options, reason in [({"token_beam": 2}, "token_beam is for asrforge models"),
                            ({"max_segment_s": 5}, "max_segment_s is for asrforge models"),
                            ({"language": "xx"}, "unknown language 'xx'"),
                            ({"task": "translate"}, "cannot translate")]:
        with pytest.raises(ConfigError, match=reason):
            whisper.check_options(**options)


def test_an_attention_decoder_offers_no_word_times(corpus, tmp_path):
    from asrforge.train.trainer import Trainer
    from conftest import TINY_RECIPE, tiny_overrides

    overrides = [o for o in tiny_overrides(corpus, **{"train.epochs": 1}) if not o.startswith("model.")]
    Trainer(load_recipe("demo_las", overrides + TINY_RECIPE["demo_las.yaml"]), tmp_path, progress=False).fit()
    las = load_model(tmp_path)
    assert not las.word_timestamps
    result = las.transcribe(np.zeros(16000, dtype=np.float32))
    assert all(s.words is None for s in result.segments) and "words" not in json.dumps(result.to_dict())
    with pytest.raises(ConfigError, match="has no alignment to the audio"):
        las.check_options(word_timestamps=True)


def test_the_result_is_openai_whispers_layout_and_reads_back():
    result = Result(" one two", [Segment(0.0, 1.2, " one two", [Word("one", 0.1, 0.5, 0.9), Word("two", 0.6, 1.1)],
                                         id=0, seek=0, tokens=[5, 6], temperature=0.0, avg_logprob=-0.3,
                                         compression_ratio=1.1, no_speech_prob=0.01)], "en", 1.25, {"en": 0.9})
    d = result.to_dict()
    assert list(d) == ["text", "segments", "language", "duration", "language_probs"]
    assert list(d["segments"][0]) == ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                                      "compression_ratio", "no_speech_prob", "words"]
    assert d["segments"][0]["words"] == [{"word": "one", "start": 0.1, "end": 0.5, "probability": 0.9},
                                         {"word": "two", "start": 0.6, "end": 1.1}]
    assert Result.from_dict(json.loads(json.dumps(d))) == result
    assert [w.word for w in result.words] == ["one", "two"]
    plain = Result("hi", [Segment(0.0, 1.0, "hi")]).to_dict()       # an asrforge model's segment: no Whisper figures
    assert plain["segments"] == [{"id": 0, "seek": 0, "start": 0.0, "end": 1.0, "text": "hi"}] and plain["language"] is None


def test_transcribe_batch_gives_what_transcribe_gives_for_each(babbler, whisper_pt, corpus):
    from asrforge.data.manifest import read_manifest

    files = [u.audio_filepath for u in read_manifest(corpus / "test.jsonl")[0][:5]]
    long = np.tile(np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32), 35)    # two windows
    for model, options in ((load_model(babbler), {"beam_size": 3}),
                           (load_model(whisper_pt), {"temperature": 0.0, "word_timestamps": True})):
        items = [*files, long, *files]           # more than one batch of first windows (8)
        batch = model.transcribe_batch(items, **options)
        for together, alone in zip(batch, [model.transcribe(x, **options) for x in items]):
            assert (together.text, together.language, together.duration) == (alone.text, alone.language, alone.duration)
            assert len(together.segments) == len(alone.segments)
            for a, b in zip(together.segments, alone.segments):
                assert (a.id, a.seek, a.start, a.end, a.text, a.tokens, a.temperature) == \
                    (b.id, b.seek, b.start, b.end, b.text, b.tokens, b.temperature)
                assert a.words == b.words or [(w.word, w.start, w.end) for w in a.words] == \
                    [(w.word, w.start, w.end) for w in b.words]
                # decoded in a batch or alone, the same sums in another order: the last digits of a float differ
                for x, y in ((a.avg_logprob, b.avg_logprob), (a.no_speech_prob, b.no_speech_prob)):
                    assert x == y or x == pytest.approx(y, rel=1e-4)
        assert [r.source for r in batch] == [*files, None, *files] and all(r.segments for r in batch[:5])


def test_decode_knobs_reach_the_search_from_the_recipe_and_the_command_line(trained, corpus, monkeypatch, capsys):
    from asrforge.decoding import searches

    seen = []
    real = searches.ctc_prefix_beam_search
    monkeypatch.setattr(searches, "ctc_prefix_beam_search", lambda lp, n, options, lm=None: seen.append(options) or real(lp, n, options, lm=lm))
    model = load_model(trained)
    assert model.decode_config() is model.recipe.decode and model.recipe.decode.beam_size == 4   # no beam: the recipe's
    assert model.decode_config(2, token_beam=3, prune_logprob=-4) == DecodeConfig(beam_size=2, token_beam=3, prune_logprob=-4)
    model.transcribe(np.zeros(16000, dtype=np.float32), token_beam=3, score_margin=5.0)
    assert (seen[-1].beam_size, seen[-1].token_beam, seen[-1].score_margin) == (4, 3, 5.0)
    test = str(corpus / "test.jsonl")
    assert main(["evaluate", "--model", str(trained), "--manifest", test, "decode.token_beam=2", "decode.prune_logprob=-3",
                 "--beam-size", "5"]) == 0
    assert (seen[-1].beam_size, seen[-1].token_beam, seen[-1].prune_logprob) == (5, 2, -3.0)
    assert "(beam 5, 2-gram LM" in capsys.readouterr().out
    from asrforge.data.manifest import read_manifest

    wav = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    assert main(["transcribe", wav, "decode.score_margin=7", "--model", str(trained)]) == 0
    assert seen[-1].score_margin == 7.0 and seen[-1].beam_size == 4
    assert main(["evaluate", "--model", str(trained), "--manifest", test, "decode.token_bean=2"]) == 2
    assert "unknown decode option(s) ['token_bean']; known: ['beam_size'" in capsys.readouterr().err


def test_every_search_knob_is_a_recipe_key():
    r = load_recipe("demo_ctc", ["decode.token_beam=4", "decode.prune_logprob=-6", "decode.score_margin=.inf",
                                 "decode.min_len=2", "decode.candidates=6"])
    assert (r.decode.token_beam, r.decode.prune_logprob, r.decode.score_margin, r.decode.min_len, r.decode.candidates) \
        == (4, -6.0, float("inf"), 2, 6)
    with pytest.raises(ConfigError, match="decode.ctc_weight must be in"):
        load_recipe("demo_ctc", ["decode.ctc_weight=2"])
    with pytest.raises(Exception):            # the recipe's decode section cannot be changed in place
        r.decode.beam_size = 2


def test_every_registry_entry_keeps_its_registrys_contract(whisper_pt):
    from asrforge.models.build import build_model
    from asrforge.models.whisper import Whisper

    for family in MODELS.names():
        model = build_model(load_recipe(None, [f"model.family={family}"]).model, 80, 30)
        assert isinstance(model, torch.nn.Module) and model.objective in ("ctc", "attention", "transducer")
    for family in PRETRAINED_MODELS.names():
        config = load_recipe(None, [f"model.family={family}", f"model.init={whisper_pt}"]).model
        assert isinstance(PRETRAINED_MODELS.get(family).cls(config), Whisper)
        with pytest.raises(ConfigError, match="fine-tuned from a pretrained checkpoint"):
            build_model(config, 80, 30)
    with pytest.raises(ConfigError, match="choose one of: ctc, joint, las, rnnt, transformer, whisper"):
        load_recipe(None, ["model.family=wav2vec"])


def test_recipes_ship_with_the_package_and_train_by_name(corpus, tmp_path, capsys):
    from conftest import tiny_overrides

    assert {"demo_ctc", "demo_rnnt", "whisper_finetune", "fsdd_ctc"} <= set(shipped_recipes())
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "demo_ctc" in listing and "BiLSTM-CTC on the synthetic digit corpus" in listing
    assert main(["recipes", "show", "demo_rnnt"]) == 0
    shown = capsys.readouterr().out
    (tmp_path / "mine.yaml").write_text(shown)
    assert load_recipe(tmp_path / "mine.yaml") == load_recipe("demo_rnnt")
    assert main(["recipes", "show", "demo_rnt"]) == 2
    assert "no shipped recipe is called demo_rnt" in capsys.readouterr().err
    assert main(["train", "demo_ctc", *tiny_overrides(corpus, **{"train.epochs": 1}), "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "best.pt").is_file()
