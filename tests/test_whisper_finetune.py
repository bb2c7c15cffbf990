"""Whisper fine-tuning through `asrforge train`: it learns, WER is measured before and after, the frozen
encoder stays put, and the saved OpenAI .pt and Hugging Face folder load (the latter in transformers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from whisper_fixtures import trainable_init

from asrforge.cli import main
from asrforge.features.whisper import log_mel_spectrogram, pad_or_trim, pad_to_window
from asrforge.models.whisper import load_whisper_checkpoint

# first words that the test tokenizer does not split into a bare space + rest (a blank first token is suppressed)
TEXTS = ["the fox", "you dog", "what country", "over you"]
SECONDS = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random checkpoint (Hugging Face layout) and four tones, each with its own transcript."""
    root = tmp_path_factory.mktemp("ft")
    model = trainable_init(root)
    lines = []
    t = np.arange(16000 * SECONDS) / 16000
    for i, text in enumerate(TEXTS):
        wave = 0.3 * np.sin(2 * np.pi * (300 + 900 * i) * t)
        sf.write(root / f"u{i}.wav", wave.astype(np.float32), 16000)
        lines.append(json.dumps({"audio_filepath": str(root / f"u{i}.wav"), "duration": float(SECONDS), "text": text,
                                 "id": f"u{i}"}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root, model


@pytest.fixture(scope="module")
def finetuned(setup):
    root, _ = setup
    out = root / "exp"
    code = main(["train", "configs/whisper_finetune.yaml", f"model.init={root / 'init'}", f"data.train={root / 'm.jsonl'}",
                 f"data.dev={root / 'm.jsonl'}", "train.epochs=60", "train.lr=3e-3", "train.warmup_steps=2", "train.final_lr_ratio=1.0",
                 "data.max_batch_size=4", "augment.speed_factors=[]", "augment.gain_db=[]", "specaugment.enabled=false",
                 "--out", str(out)])
    assert code == 0
    return out


def test_finetuning_learns_the_transcripts(finetuned):
    results = json.loads((finetuned / "results.json").read_text())
    assert results["dev_wer_before"] >= 0.5          # a random model knows none of it
    assert results["best_dev_wer"] == 0.0             # four utterances, memorized
    log = [json.loads(line) for line in (finetuned / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 0 and "dev_wer" in log[0]   # the "before" figure is logged first
    # once dev WER reaches 0 it stays there; the kept epoch is the one with the lowest dev loss, not the first
    scored = [r for r in log if "dev_wer" in r]
    assert results["best_epoch"] == min(scored, key=lambda r: (r["dev_wer"], r["dev_loss"]))["epoch"]
    perfect = [r["epoch"] for r in scored if r["dev_wer"] == 0.0]
    assert len(perfect) > 1 and results["best_epoch"] != perfect[0]


def test_tensorboard_shows_whisper_examples_with_their_alignment_heads_attention(setup, finetuned, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from asrforge.data.dataset import SpeechDataset
    from asrforge.data.manifest import read_manifest
    from asrforge.recipe import load_recipe
    from asrforge.text import Normalizer, TextConfig
    from asrforge.train.whisper_task import WhisperTask

    root, _ = setup
    out = tmp_path / "tb"
    assert main(["train", "configs/whisper_finetune.yaml", f"model.init={root / 'init'}", f"data.train={root / 'm.jsonl'}",
                 f"data.dev={root / 'm.jsonl'}", "train.epochs=1", "data.max_batch_size=4", "augment.speed_factors=[]",
                 "augment.gain_db=[]", "specaugment.enabled=false", "train.loggers=[jsonl,tensorboard]",
                 "train.tensorboard_examples=2", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "tensors": 0, "audio": 0})
    events.Reload()
    # the checkpoint as given (step 0) and after the epoch; the first and last dev utterances
    assert sorted(events.Tags()["images"]) == ["attention/u0", "attention/u3"]
    assert [e.step for e in events.Images("attention/u0")][0] == 0 and len(events.Images("attention/u0")) == 2
    assert [e.step for e in events.Audio("dev_audio/u3")] == [0]
    assert "**reference:** over you" in events.Tensors("dev_text/u3/text_summary")[0].tensor_proto.string_val[0].decode()

    # of the fine-tuned model: what it says, and where its alignment heads look while saying it
    recipe = load_recipe("configs/whisper_finetune.yaml", [f"model.init={finetuned / 'whisper.pt'}"])
    task = WhisperTask(recipe, tmp_path / "look", torch.device("cpu"), progress=False)
    dev = SpeechDataset(read_manifest(root / "m.jsonl")[0], task.features, None, Normalizer(TextConfig()))
    examples = task.examples(task.model.eval(), dev, [0, 1])
    assert [(e.reference, e.hypothesis) for e in examples] == [(TEXTS[0], TEXTS[0]), (TEXTS[1], TEXTS[1])]
    for example in examples:
        tokens = len(task.words.encode(" " + example.reference))
        assert example.attention.shape == (1, tokens + 1, SECONDS * 50)     # 20 ms a position; the tokens and <eot>
        assert np.allclose(example.attention.sum(-1), 1.0, atol=1e-4) and example.posteriors is None


def test_frozen_encoder_is_unchanged_and_saved_files_load(setup, finetuned):
    _, initial = setup
    saved = load_whisper_checkpoint(finetuned / "whisper.pt").build()
    again = load_whisper_checkpoint(finetuned).build()       # the run's folder names its whisper.pt
    for name, value in initial.encoder.state_dict().items():
        assert torch.equal(saved.encoder.state_dict()[name], value), name
    changed = [n for n, v in initial.decoder.state_dict().items() if not torch.equal(saved.decoder.state_dict()[n], v)]
    assert changed, "the decoder should have been trained"
    for name, value in saved.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    assert (finetuned / "tokenizer.json").is_file()


def test_exported_run_loads_in_transformers_with_the_same_logits(finetuned, tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = load_whisper_checkpoint(finetuned / "whisper.pt").build().eval()
    assert main(["export", str(finetuned), "--format", "huggingface", "--out", str(tmp_path / "hf")]) == 0
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(str(tmp_path / "hf")).eval()
    mel = pad_to_window(log_mel_spectrogram(np.random.default_rng(0).normal(0, 0.1, 16000)).T[None], torch.tensor([100]))
    tokens = torch.tensor([[hf.config.decoder_start_token_id, 5, 77, 120]])
    with torch.no_grad():
        assert torch.allclose(ours(mel, tokens), hf(input_features=mel, decoder_input_ids=tokens).logits, atol=1e-4)


def test_padding_matches_the_windows_transcription_sees():
    """A clip padded as features equals the window the long-form transcriber cuts for the same audio."""
    wave = (0.2 * np.random.default_rng(1).normal(size=16000 * 2)).astype(np.float32)
    mel = log_mel_spectrogram(wave, padding=16000 * 30)
    window = pad_or_trim(mel[:, : len(wave) // 160])
    clip = log_mel_spectrogram(wave).T
    ours = pad_to_window(clip[None], torch.tensor([clip.shape[0]]))[0]
    assert ours.shape == window.shape
    assert torch.allclose(ours[:, :195], window[:, :195], atol=1e-4)   # the clip's last frames see zeros or reflection
    assert torch.equal(ours[:, 200:], window[:, 200:])


def test_missing_init_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "configs/whisper_finetune.yaml", "--out", str(tmp_path / "x")]) == 2
    assert "model.init is not set" in capsys.readouterr().err


def test_evaluate_scores_a_whisper_checkpoint(setup, finetuned, tmp_path, capsys):
    root, _ = setup
    long = tmp_path / "long.jsonl"
    lines = (root / "m.jsonl").read_text().splitlines()
    extra = json.loads(lines[0]) | {"id": "too-long", "duration": 31.0}
    long.write_text("\n".join(lines + [json.dumps(extra)]) + "\n")
    out = tmp_path / "ev.json"
    assert main(["evaluate", "--model", str(finetuned / "whisper.pt"), "--manifest", str(long), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["wer"] == 0.0 and summary["utts"] == len(TEXTS) and summary["skipped"] == 1
    assert "too-long: longer than 30 s" in capsys.readouterr().out
    # English is scored after Whisper's English normalizer unless told otherwise
    assert main(["evaluate", "--model", str(finetuned / "whisper.pt"), "--manifest", str(root / "m.jsonl"),
                 "--language", "en", "--json", str(out)]) == 0
    english = json.loads(out.read_text())
    assert english["normalizer"] == "whisper_english" and english["wer"] == 0.0
    # the texts as written, for `compare --normalizer`: the manifest's, and the model's before normalization
    assert sorted(u["written_reference"] for u in english["utterances"]) == sorted(TEXTS)
    assert all(u["hypothesis"] == " ".join(u["written_hypothesis"].lower().split()) for u in english["utterances"])
    assert "scored after the whisper_english normalizer" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(finetuned / "whisper.pt"), "--manifest", str(root / "m.jsonl"),
                 "--language", "en", "--normalizer", "basic", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["normalizer"] == "basic"


def test_vtlp_is_refused_for_whisper_front_end(setup, tmp_path, capsys):
    root, _ = setup
    assert main(["train", "configs/whisper_finetune.yaml", f"model.init={root / 'init'}", f"data.train={root / 'm.jsonl'}",
                 f"data.dev={root / 'm.jsonl'}", "augment.vtlp=[0.9,1.1]", "--out", str(tmp_path / "x")]) == 2
    assert "augment.vtlp" in capsys.readouterr().err


def test_long_audio_and_long_transcripts_are_skipped_and_a_wrong_init_is_named(setup, trained, tmp_path, capsys):
    root, _ = setup
    lines = (root / "m.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    extra = [first | {"id": "too-long-audio", "duration": 31.0},
             first | {"id": "too-long-text", "text": " ".join(["fox"] * 200)}]      # beyond the 64-token context
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines + [json.dumps(e) for e in extra]) + "\n")
    out = tmp_path / "exp"
    assert main(["train", "configs/whisper_finetune.yaml", f"model.init={root / 'init'}", f"data.train={manifest}",
                 f"data.dev={root / 'm.jsonl'}", "train.epochs=1", "data.max_batch_size=4", "augment.speed_factors=[]",
                 "augment.gain_db=[]", "specaugment.enabled=false", "--out", str(out)]) == 0
    skipped = {json.loads(line)["item"]: json.loads(line)["reason"] for line in (out / "skipped.jsonl").open()}
    assert "longer than" in skipped["too-long-audio"] and "more than this model's 64" in skipped["too-long-text"]
    assert main(["train", "configs/whisper_finetune.yaml", f"model.init={trained}", f"data.train={manifest}",
                 f"data.dev={root / 'm.jsonl'}", "--out", str(tmp_path / "wrong")]) == 2
    err = capsys.readouterr().err
    assert str(trained) in err and "Traceback" not in err
