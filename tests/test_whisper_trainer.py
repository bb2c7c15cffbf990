"""Whisper fine-tuning through the one Trainer: its targets (language, timestamps), exact resume with EMA and
accumulation, DDP under torchrun, LoRA adapters (saved alone, merged on load and export), gradient
checkpointing and the batch-fit check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from diarize_fixtures import HIGH, LOW, speak
from whisper_fixtures import trainable_init

from asrforge.checkpoint import load_checkpoint
from asrforge.cli import main
from asrforge.errors import AsrforgeError, ConfigError
from asrforge.features.whisper import TIME_PRECISION
from asrforge.models.whisper import load_whisper_checkpoint
from asrforge.recipe import load_recipe
from asrforge.text.whisper import WhisperTokenizer
from asrforge.train.trainer import Trainer
from asrforge.train.whisper_task import WhisperTargets, speech_end
from conftest import REPO

RECIPE = REPO / "configs" / "whisper_finetune.yaml"
TEXTS = ["the fox", "you dog", "what country", "over you", "the dog", "you fox"]
TAIL_S = 0.8     # silence after each utterance: the end timestamp lies before the clip's end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny random Whisper (Hugging Face layout) and six eSpeak utterances with silence after each."""
    root = tmp_path_factory.mktemp("wt")
    trainable_init(root)
    waves = speak([(text, (LOW, HIGH)[i % 2], i) for i, text in enumerate(TEXTS)])
    lines, ends = [], {}
    for i, (text, wave) in enumerate(zip(TEXTS, waves)):
        audio = np.concatenate([wave, np.zeros(int(TAIL_S * 16000), np.float32)])
        sf.write(root / f"u{i}.wav", audio, 16000)
        ends[f"u{i}"] = len(wave) / 16000
        lines.append(json.dumps({"audio_filepath": str(root / f"u{i}.wav"), "duration": len(audio) / 16000,
                                 "text": text, "id": f"u{i}"}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root, ends


def overrides(root, **extra) -> list[str]:
    base = {"model.init": root / "init", "data.train": root / "m.jsonl", "data.dev": root / "m.jsonl",
            "train.epochs": 2, "train.lr": 3e-3, "train.warmup_steps": 1, "data.max_batch_size": 2, "train.threads": 1,
            "train.log_every": 1, "augment.gain_db": "[]", "specaugment.enabled": "true", "data.cache_features": "false"}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def fit(root, out, resume=False, **extra) -> dict:
    return Trainer(load_recipe(RECIPE, overrides(root, **extra)), out, resume=resume, progress=False).fit()


# ---------------------------------------------------------------- targets

@pytest.fixture(scope="module")
def words(corpus):
    root, _ = corpus
    return WhisperTokenizer.from_folder(root / "tok", multilingual=True)


def test_targets_carry_the_line_language_and_timestamps_where_the_speech_ends(words):
    targets = WhisperTargets(words, "en", "transcribe", 64, timestamp_ratio=1.0, find_end=lambda wave: 1.234)
    body = words.encode(" the fox")
    ids = targets.encode_utterance("the fox", "de", lambda: np.zeros(16000), torch.Generator().manual_seed(0))
    de = words.special("<|de|>")
    assert ids == [words.sot, de, words.transcribe, words.timestamp_begin, *body,
                   words.timestamp_begin + round(1.234 / TIME_PRECISION), words.eot]
    plain = WhisperTargets(words, "en", "transcribe", 64, timestamp_ratio=0.0)
    assert plain.encode_utterance("the fox", None, lambda: np.zeros(16000), torch.Generator()) == [
        words.sot, words.special("<|en|>"), words.transcribe, words.no_timestamps, *body, words.eot]
    # no speech found: the item keeps its text, without timestamps
    silent = WhisperTargets(words, "en", "transcribe", 64, timestamp_ratio=1.0, find_end=lambda wave: None)
    assert words.no_timestamps in silent.encode_utterance("the fox", None, lambda: np.zeros(10), torch.Generator())
    with pytest.raises(AsrforgeError, match="lang: unknown language 'xx'"):
        targets.encode_utterance("the fox", "xx", None, None)
    english_only = WhisperTargets(WhisperTokenizer(words.tk, multilingual=False), "en", "transcribe", 64, 1.0)
    with pytest.raises(AsrforgeError, match="English-only"):
        english_only.encode_utterance("the fox", "de", None, None)


def test_each_item_draws_its_timestamps_from_its_own_generator(words):
    """The share follows train.timestamp_ratio, and an item's draw repeats (exact resume depends on it)."""
    targets = WhisperTargets(words, "en", "transcribe", 64, timestamp_ratio=0.5, find_end=lambda wave: 1.0)
    drawn = [words.no_timestamps not in targets.encode_utterance("the fox", None, lambda: np.zeros(10),
                                                                  torch.Generator().manual_seed(s)) for s in range(400)]
    assert 0.4 < sum(drawn) / len(drawn) < 0.6
    again = [words.no_timestamps not in targets.encode_utterance("the fox", None, lambda: np.zeros(10),
                                                                  torch.Generator().manual_seed(s)) for s in range(400)]
    assert drawn == again


def test_speech_end_is_where_voice_activity_stops(corpus):
    root, ends = corpus
    wave, _ = sf.read(root / "u0.wav", dtype="float32")
    assert abs(speech_end(wave) - ends["u0"]) < 0.15
    assert speech_end(np.zeros(16000, np.float32)) is None


def test_manifest_lang_field_reaches_the_items(corpus, tmp_path):
    from asrforge.data.manifest import read_manifest

    root, _ = corpus
    line = json.loads((root / "m.jsonl").read_text().splitlines()[0])
    (tmp_path / "m.jsonl").write_text(json.dumps(line | {"lang": "de"}) + "\n" + json.dumps(line | {"language": "fr"})
                                      + "\n" + json.dumps(line | {"lang": 3}) + "\n")
    utts, bad = read_manifest(tmp_path / "m.jsonl")
    assert [u.language for u in utts] == ["de", "fr"] and "lang must be a language" in bad[0].reason


# ---------------------------------------------------------------- the trainer

def test_whisper_resumes_exactly_with_ema_accumulation_augmentation_and_timestamps(corpus, tmp_path):
    root, _ = corpus
    extra = {"train.ema_decay": 0.9, "train.accum_steps": 2, "augment.speed_factors": "[0.9,1.0,1.1]",
             "train.timestamp_ratio": 0.5}
    straight = fit(root, tmp_path / "a", **extra)
    fit(root, tmp_path / "b", **extra, **{"train.max_steps": 2})
    assert load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]["step"] == 2
    resumed = fit(root, tmp_path / "b", resume=True, **extra)
    assert resumed["steps"] == straight["steps"] > 2
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for part in ("model", "training_model"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 0 and log[0]["step"] == 0 and "dev_wer" in log[0]    # the checkpoint as given
    assert straight["dev_wer_before"] == log[0]["dev_wer"]
    assert (tmp_path / "a" / "whisper.pt").is_file() and not (tmp_path / "a" / "best.pt").exists()
    with pytest.raises(ConfigError, match="model.freeze_encoder=False"):     # a resume that changes the model
        fit(root, tmp_path / "b", resume=True, **extra, **{"model.freeze_encoder": "false"})


def test_the_run_folder_is_the_model_and_last_pt_is_named_as_training_state(corpus, tmp_path, capsys):
    root, _ = corpus
    fit(root, tmp_path / "exp", **{"train.epochs": 1})
    wav = root / "u0.wav"
    assert main(["transcribe", "--model", str(tmp_path / "exp"), str(wav)]) == 0
    capsys.readouterr()
    assert main(["transcribe", "--model", str(tmp_path / "exp" / "last.pt"), str(wav)]) == 2
    assert "training state of a Whisper fine-tuning run" in capsys.readouterr().err


def _epoch_losses(out) -> list[float]:
    """The mean training loss of each epoch, from train_log.jsonl (a step's loss is over every rank's batch)."""
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "loss" in r]
    return [float(np.mean([r["loss"] for r in steps if r["epoch"] == e])) for e in sorted({r["epoch"] for r in steps})]


def test_two_processes_under_torchrun_follow_the_loss_curve_of_one_with_the_doubled_batch(corpus, tmp_path):
    """2 ranks of 1 utterance a step, against 1 process of 2: each epoch sees the same utterances in both, paired
    differently, so the curves differ only by the pairing: each epoch's mean loss within 10 % (stated tolerance)."""
    root, _ = corpus
    settings = {"train.epochs": 8, "specaugment.enabled": "false", "train.final_lr_ratio": 1.0,
                "augment.speed_factors": "[]"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "asrforge.cli",
           "train", str(RECIPE), *overrides(root, **settings, **{"train.trace": "true", "data.max_batch_size": 1}),
           "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = [[json.loads(line) for line in (tmp_path / "ddp" / "trace" / f"rank{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)]
    assert len(traces[0]) == len(traces[1]) == 8 * 3
    for a, b in zip(*traces):
        assert not set(a["ids"]) & set(b["ids"])                      # each step: different utterances per rank
    w0, w1 = (torch.load(tmp_path / "ddp" / "trace" / f"rank{r}_weights.pt") for r in (0, 1))
    initial = load_whisper_checkpoint(root / "init").build().state_dict()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k                            # gradients were all-reduced
    assert any(not torch.equal(w0[k], initial[k.removeprefix("whisper.")]) for k in w0)
    single = fit(root, tmp_path / "one", **settings, **{"data.max_batch_size": 2})
    assert single["steps"] == 8 * 3
    ddp, one = _epoch_losses(tmp_path / "ddp"), _epoch_losses(tmp_path / "one")
    assert len(ddp) == len(one) == 8 and ddp[-1] < 0.7 * ddp[0]      # it learned
    for a, b in zip(ddp, one):
        assert abs(a - b) <= 0.10 * b, (ddp, one)


# ---------------------------------------------------------------- LoRA

def test_lora_trains_adapters_alone_saves_them_alone_and_merges_them_on_load_and_export(corpus, tmp_path, capsys):
    pytest.importorskip("peft")
    root, _ = corpus
    full = fit(root, tmp_path / "full", **{"train.epochs": 1})
    lora = fit(root, tmp_path / "lora", **{"train.epochs": 3, "model.lora.rank": 4, "train.lr": 1e-2})
    assert 0 < lora["trainable_parameters"] < full["trainable_parameters"] / 3
    exp = tmp_path / "lora"
    assert not (exp / "whisper.pt").exists() and (exp / "adapters.safetensors").is_file()
    assert (exp / "adapters.safetensors").stat().st_size < (tmp_path / "full" / "whisper.pt").stat().st_size / 5
    config = json.loads((exp / "adapters.json").read_text())
    assert config["rank"] == 4 and all(t.startswith("decoder.") for t in config["targets"])  # encoder frozen
    base = load_whisper_checkpoint(root / "init").build()
    merged = load_whisper_checkpoint(exp).build()
    differ = [k for k, v in base.state_dict().items() if not torch.equal(v, merged.state_dict()[k])]
    assert differ and all(k.startswith("decoder.") and ".attn." in k or ".cross_attn." in k for k in differ)
    assert main(["export", str(exp), "--format", "openai", "--out", str(tmp_path / "plain")]) == 0
    exported = load_whisper_checkpoint(tmp_path / "plain" / "whisper.pt").build()
    for k, v in merged.state_dict().items():
        assert torch.equal(v, exported.state_dict()[k]), k
    assert main(["transcribe", "--model", str(exp), str(root / "u1.wav")]) == 0


def test_our_merge_equals_the_adapted_model_peft_runs(corpus):
    """The adapters merged by asrforge (no peft at inference) give the logits the peft-adapted model gives."""
    pytest.importorskip("peft")
    from peft import LoraConfig, inject_adapter_in_model

    from asrforge.models.whisper.lora import merge_adapters

    root, _ = corpus
    adapted = load_whisper_checkpoint(root / "init").build()
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=r".*attn\.(query|value)"), adapted)
    torch.manual_seed(0)
    tensors = {}
    for name, p in adapted.named_parameters():
        if "lora_" in name:
            with torch.no_grad():
                p.normal_(0, 0.2)
            layer, which = name.split(".lora_")[0], "lora_" + name.split(".lora_")[1][0]
            tensors[f"{layer}.{which}"] = p.detach().clone()
    merged = merge_adapters(load_whisper_checkpoint(root / "init").build(), tensors, rank=4, alpha=8)
    mel, tokens = torch.randn(1, 80, 3000), torch.tensor([[50, 51, 52, 53]])
    with torch.no_grad():
        assert torch.allclose(adapted.eval()(mel, tokens), merged.eval()(mel, tokens), atol=1e-5)


# ---------------------------------------------------------------- memory

def test_gradient_checkpointing_gives_the_same_gradients(corpus):
    root, _ = corpus
    grads = []
    for recompute in (False, True):
        model = load_whisper_checkpoint(root / "init").build().train()
        model.encoder.checkpointing = model.decoder.checkpointing = recompute
        torch.manual_seed(0)
        model(torch.randn(2, 80, 3000), torch.tensor([[50, 51, 52], [53, 54, 55]])).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6), name


def test_a_batch_that_cannot_fit_is_named_before_the_first_step(corpus, tmp_path, monkeypatch):
    root, _ = corpus
    trainer = Trainer(load_recipe(RECIPE, overrides(root)), tmp_path / "x", progress=False)

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "_loss", out_of_memory)
    with pytest.raises(ConfigError, match=r"largest training batch \(2 utterances.*data.max_batch_seconds.*"
                                          r"train.grad_checkpointing=true"):
        trainer.check_batch_fits()


# ---------------------------------------------------------------- what Whisper could do, kept

def _segments(model_dir, wav: str, out) -> dict:
    assert main(["transcribe", "--model", str(model_dir), wav, "--output-format", "json", "--output-dir", str(out)]) == 0
    return json.loads((out / (os.path.basename(wav).rsplit(".", 1)[0] + ".json")).read_text())


def test_timestamps_survive_fine_tuning_and_long_recordings_are_transcribed_whole(corpus, tmp_path):
    """Tuned with timestamp targets (the default share), the model still transcribes with timestamps: each clip's
    text, from 0.00 to about where its speech ends. Tuned without them (timestamp_ratio=0), it scores as well
    without timestamps, but asked for them it no longer says the text (what users of other recipes report)."""
    root, ends = corpus
    settings = {"train.epochs": 80, "model.freeze_encoder": "false", "specaugment.enabled": "false",
                "data.max_batch_size": 6, "train.final_lr_ratio": 1.0}
    kept = fit(root, tmp_path / "kept", **settings)
    lost = fit(root, tmp_path / "lost", **settings, **{"train.timestamp_ratio": 0.0})
    assert kept["best_dev_wer"] <= 0.2 and lost["best_dev_wer"] <= 0.2       # both learned the text
    right = {"kept": 0, "lost": 0}
    for run in right:
        for i, text in enumerate(TEXTS):
            result = _segments(tmp_path / run, str(root / f"u{i}.wav"), tmp_path / f"{run}_out")
            seg = result["segments"]
            assert all(0.0 <= s["start"] <= s["end"] <= result["duration"] for s in seg)
            if run == "kept" and seg:
                assert seg[0]["start"] == 0.0 and abs(seg[-1]["end"] - ends[f"u{i}"]) < 0.35
            right[run] += result["text"].strip() == text
    assert right["kept"] >= 5 and right["lost"] <= right["kept"] - 2, right
    # two minutes of the utterances one after another: segments in order, inside the audio, to its end
    waves = [sf.read(root / f"u{i}.wav", dtype="float32")[0] for i in range(len(TEXTS))]
    long = np.concatenate([waves[i % len(waves)] for i in range(90)])
    sf.write(tmp_path / "long.wav", long, 16000)
    result = _segments(tmp_path / "kept", str(tmp_path / "long.wav"), tmp_path / "long_out")
    seg = result["segments"]
    assert result["duration"] >= 120 and len(seg) >= 4
    assert all(a["start"] <= b["start"] for a, b in zip(seg, seg[1:]))
    assert all(0.0 <= s["start"] <= s["end"] <= result["duration"] for s in seg)
    assert seg[-1]["end"] > result["duration"] - 30                          # the last window was decoded too


# ---------------------------------------------------------------- a frozen encoder's states, kept

def test_kept_encoder_states_equal_the_encoder_bit_for_bit(corpus):
    from asrforge.features.whisper import pad_to_window
    from asrforge.train.whisper_task import EncoderStates

    root, _ = corpus
    encoder = load_whisper_checkpoint(root / "init").build().eval().encoder
    torch.manual_seed(0)
    feats, lens = torch.randn(4, 120, 80), torch.tensor([120, 90, 60, 100])
    kept = EncoderStates(max_bytes=2**30)
    first = kept.encode(feats[:2], lens[:2], encoder)                      # both new
    mixed = kept.encode(feats[[1, 2, 0, 3]], lens[[1, 2, 0, 3]], encoder)  # two kept, two new, in another batch
    with torch.no_grad():
        direct = encoder(pad_to_window(feats, lens))
    assert torch.equal(first, direct[:2]) and torch.equal(mixed, direct[[1, 2, 0, 3]])
    assert (kept.hits, kept.misses) == (2, 4) and len(kept.states) == 4
    full = EncoderStates(max_bytes=first[0].numel() * 4)                    # room for one: the rest recomputed
    full.encode(feats, lens, encoder)
    assert len(full.states) == 1 and torch.equal(full.encode(feats, lens, encoder), direct)


def test_a_run_with_kept_encoder_states_ends_with_the_weights_of_one_without(corpus, tmp_path):
    root, _ = corpus
    settings = {"train.epochs": 3, "specaugment.enabled": "false", "augment.speed_factors": "[]",
                "train.timestamp_ratio": 0.0}
    runs = {}
    for name, gb in (("kept", 1.0), ("recomputed", 0)):
        trainer = Trainer(load_recipe(RECIPE, overrides(root, **settings, **{"train.frozen_encoder_cache_gb": gb})),
                          tmp_path / name, progress=False)
        trainer.fit()
        runs[name] = trainer
    states = runs["kept"].task.encoder_states
    assert runs["recomputed"].task.encoder_states is None
    assert states.hits >= 2 * len(TEXTS) and len(states.states) == len(TEXTS)   # epochs 2 and 3 skip the encoder
    a, b = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("kept", "recomputed"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
