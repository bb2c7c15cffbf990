"""`asrforge adapt`: self-training a CTC model on untranscribed audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asrforge_runtime.audio import SAMPLE_RATE, write_audio
from asrforge.cli import main
from asrforge.data.manifest import load_utterance, read_manifest
from asrforge.decoding.kneser_ney import write_lm
from asrforge.inference.transcriber import Transcriber
from asrforge.checkpoint import load_checkpoint, save_checkpoint
from asrforge.recipe import recipe_from_dict
from asrforge.text import tokenizer_from_state


@pytest.fixture(scope="module")
def talking_model(trained, corpus, tmp_path_factory):
    """The tiny trained model, nudged to say "o" on every utterance, saved with a recipe LM beside it.
    (A few training steps leave it emitting blanks only; adaptation needs something to learn from.)"""
    state = load_checkpoint(trained)
    tok = tokenizer_from_state(state["tokenizer"])
    state["model"]["head.bias"][tok.encode("o")[0]] += 4.0
    state["recipe"]["lm"]["order"] = 2
    exp = tmp_path_factory.mktemp("talking")
    recipe = recipe_from_dict(state["recipe"])
    model = Transcriber.from_checkpoint(trained, lm=False).model
    model.load_state_dict(state["model"])
    save_checkpoint(exp / "best.pt", recipe, tok, model)
    texts = [json.loads(line)["text"].lower() for line in open(corpus / "train.jsonl")]
    write_lm(texts + ["o" * k for k in range(1, 6)], 2, exp / "lm.arpa")   # its "words"
    return exp


def unlabelled(corpus, tmp_path, missing: bool = True):
    """The test split with its transcripts blanked, plus a line whose audio does not exist."""
    lines = [{**json.loads(line), "text": ""} for line in open(corpus / "test.jsonl")]
    for x in lines:
        x["audio_filepath"] = str(corpus / x["audio_filepath"])
    if missing:
        lines.append({"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": "", "id": "gone"})
    path = tmp_path / "new_voice.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path, len(lines) - missing


def test_adapt_trains_on_the_confident_pseudo_labels(talking_model, corpus, tmp_path, capsys):
    manifest, n = unlabelled(corpus, tmp_path)
    out = tmp_path / "adapted"
    assert main(["adapt", "--model", str(talking_model), "--manifest", str(manifest), "--out", str(out),
                 "--keep", "0.5", "--epochs", "2", "--lr", "1e-3", "--beam-size", "4"]) == 0
    captured = capsys.readouterr()
    assert f"pseudo-labelled {n} utterances, trained on the {round(0.5 * n)} most confident" in captured.out
    assert "skipped gone:" in captured.err and "gone.wav" in captured.err

    labels = [json.loads(line) for line in open(out / "pseudo_labels.jsonl")]
    assert len(labels) == n and all(0.0 <= p["confidence"] <= 1.0 for p in labels)
    kept = [p for p in labels if p["kept"]]
    assert len(kept) == round(0.5 * n) and all(p["text"] for p in kept)
    assert min(p["confidence"] for p in kept) >= max(p["confidence"] for p in labels if not p["kept"])

    # the adapted checkpoint decodes like its source (the recipe's LM was copied beside it) with new weights
    adapted = Transcriber.from_checkpoint(out / "adapted.pt")
    source = Transcriber.from_checkpoint(talking_model)
    assert adapted.lm is not None and (out / "lm.arpa").read_text() == (talking_model / "lm.arpa").read_text()
    assert not torch.equal(adapted.model.head.weight, source.model.head.weight)
    info = load_checkpoint(out / "adapted.pt")["adaptation"]
    assert info["kept"] == len(kept) and info["bad"][0]["id"] == "gone" and len(info["loss_per_epoch"]) == 2
    assert info["loss_per_epoch"][1] < info["loss_per_epoch"][0]     # it fits its targets
    assert main(["evaluate", "--model", str(out / "adapted.pt"), "--manifest", str(corpus / "test.jsonl"),
                 "--beam-size", "4"]) == 0

    # into the experiment folder itself: adapted.pt lands beside best.pt and shares its LM
    import shutil

    shutil.copytree(talking_model, tmp_path / "exp")
    assert main(["adapt", "--model", str(tmp_path / "exp"), "--manifest", str(manifest), "--out", str(tmp_path / "exp"),
                 "--epochs", "1", "--beam-size", "4"]) == 0
    assert Transcriber.from_checkpoint(tmp_path / "exp" / "adapted.pt").lm is not None
    # an earlier adapted.pt is not replaced unless asked
    stamp = (out / "adapted.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["adapt", "--model", str(talking_model), "--manifest", str(manifest), "--out", str(out)]) == 2
    assert f"{out / 'adapted.pt'} already exists; adapt again over it with --overwrite" in capsys.readouterr().err
    assert (out / "adapted.pt").stat().st_mtime_ns == stamp
    assert main(["adapt", "--model", str(talking_model), "--manifest", str(manifest), "--out", str(out),
                 "--epochs", "1", "--beam-size", "4", "--overwrite"]) == 0
    assert (out / "adapted.pt").stat().st_mtime_ns != stamp


def test_adapt_stops_clearly_when_nothing_is_recognized_or_options_are_wrong(trained, corpus, tmp_path, capsys):
    manifest, _ = unlabelled(corpus, tmp_path, missing=False)
    lm = tmp_path / "words.arpa"
    write_lm(["zebra yak"], 1, lm)     # a closed vocabulary the barely trained model cannot spell
    assert main(["adapt", "--model", str(trained), "--manifest", str(manifest), "--out", str(tmp_path / "a"),
                 "--lm", str(lm), "--closed-vocabulary"]) == 2
    assert "recognized nothing" in capsys.readouterr().err
    assert main(["adapt", "--model", str(trained), "--manifest", str(manifest), "--out", str(tmp_path / "b"),
                 "--keep", "0"]) == 2
    assert "--keep must be in (0, 1]" in capsys.readouterr().err
    assert main(["adapt", "--model", str(trained), "--manifest", str(manifest), "--out", str(tmp_path / "c"),
                 "--beam-size", "1"]) == 2
    assert "--beam-size must be at least 2" in capsys.readouterr().err
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text(json.dumps({"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": ""}) + "\n")
    assert main(["adapt", "--model", str(trained), "--manifest", str(only_bad), "--out", str(tmp_path / "d")]) == 2
    assert "none of the 1 utterances" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["las", "joint", "rnnt"])
def test_adapt_self_trains_attention_and_transducer_models(family, corpus, tmp_path, capsys):
    """A random tiny model of each family says something on every utterance; adapting fits it to its own most
    confident transcripts through the family's training objective, and the result decodes as a normal model."""
    from asrforge.models.build import build_model
    from asrforge.text import CharTokenizer, Normalizer
    from test_families import FAMILIES

    recipe = recipe_from_dict({"model": FAMILIES[family], "features": {"n_mels": 40}, "decode": {"max_len_ratio": 0.5}})
    texts = [Normalizer()(json.loads(line)["text"]) for line in open(corpus / "train.jsonl")]
    tok = CharTokenizer.build(texts)
    torch.manual_seed(0)
    model = build_model(recipe.model, recipe.features.dim, tok.vocab_size)
    save_checkpoint(tmp_path / "random.pt", recipe, tok, model)

    manifest, n = unlabelled(corpus, tmp_path, missing=False)
    out = tmp_path / "adapted"
    assert main(["adapt", "--model", str(tmp_path / "random.pt"), "--manifest", str(manifest), "--out", str(out),
                 "--keep", "0.5", "--epochs", "3", "--lr", "3e-3", "--beam-size", "3"]) == 0
    assert f"trained on the {round(0.5 * n)} most confident" in capsys.readouterr().out
    labels = [json.loads(line) for line in open(out / "pseudo_labels.jsonl")]
    kept = [p for p in labels if p["kept"]]
    assert len(kept) == round(0.5 * n) and all(p["text"] for p in kept)
    assert min(p["confidence"] for p in kept) >= max(p["confidence"] for p in labels if not p["kept"])
    info = load_checkpoint(out / "adapted.pt")["adaptation"]
    assert info["loss_per_epoch"][-1] < info["loss_per_epoch"][0]        # it fits its targets
    adapted = Transcriber.from_checkpoint(out / "adapted.pt").model.state_dict()
    assert any(not torch.equal(v, adapted[k]) for k, v in model.state_dict().items())
    assert main(["evaluate", "--model", str(out / "adapted.pt"), "--manifest", str(corpus / "test.jsonl"),
                 "--beam-size", "2"]) == 0


def test_adapt_refuses_a_whisper_checkpoint(corpus, tmp_path, capsys):
    from whisper_fixtures import tiny_whisper

    model, _ = tiny_whisper(tmp_path / "whisper")
    torch.save({"dims": model.dims.__dict__, "model_state_dict": model.state_dict()}, tmp_path / "whisper" / "tiny.pt")
    manifest, _ = unlabelled(corpus, tmp_path, missing=False)
    assert main(["adapt", "--model", str(tmp_path / "whisper" / "tiny.pt"), "--manifest", str(manifest),
                 "--out", str(tmp_path / "w")]) == 2
    assert "is a Whisper checkpoint" in capsys.readouterr().err


def test_adapt_to_one_long_recording_uses_its_stretches_of_speech(talking_model, corpus, tmp_path, capsys):
    """A new voice given as one long recording (minutes, no transcript) is adapted to piece by piece."""
    utts = read_manifest(corpus / "test.jsonl")[0][:4]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    long = np.tile(np.concatenate([x for u in utts for x in (pause, load_utterance(u))]), 3)
    long += 0.001 * np.random.default_rng(0).standard_normal(long.size).astype(np.float32)
    write_audio(tmp_path / "voice.wav", long, SAMPLE_RATE)
    (tmp_path / "voice.jsonl").write_text(json.dumps({"audio_filepath": "voice.wav", "duration": long.size / SAMPLE_RATE,
                                                      "text": "", "id": "voice"}) + "\n")
    out = tmp_path / "adapted"
    assert main(["adapt", "--model", str(talking_model), "--manifest", str(tmp_path / "voice.jsonl"), "--out", str(out),
                 "--epochs", "1", "--beam-size", "4"]) == 0
    assert "pseudo-labelled 12 utterances (1 recording(s) longer than 20 s cut at their pauses)" in capsys.readouterr().out
    labels = [json.loads(line) for line in open(out / "pseudo_labels.jsonl")]
    assert [p["id"] for p in labels] == [f"voice-{k:04d}" for k in range(1, 13)]
    assert load_checkpoint(out / "adapted.pt")["adaptation"]["long_recordings_cut"] == 1
