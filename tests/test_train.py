import io
import json
import time

import pytest
import soundfile as sf
import torch

from asrforge.data.manifest import load_utterance, read_manifest, write_manifest
from asrforge.errors import ConfigError
from asrforge.recipe import load_recipe
from asrforge.checkpoint import load_checkpoint
from asrforge.train.trainer import Trainer
from conftest import REPO, TINY_RECIPE, sine, tiny_overrides

DEMO = REPO / "configs" / "demo_ctc.yaml"


def run(corpus, out, resume=False, **extra):
    return Trainer(load_recipe(DEMO, tiny_overrides(corpus, **extra)), out, resume=resume, progress=False).fit()


def test_training_writes_checkpoints_and_log(trained):
    for name in ("best.pt", "last.pt", "train_log.jsonl", "skipped.jsonl"):
        assert (trained / name).is_file()
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    epochs = [r for r in log if "dev_wer" in r]
    assert steps and all({"lr", "utts_per_s", "grad_norm"} <= set(r) for r in steps)
    assert len(epochs) == 2 and all(0 <= r["dev_wer"] for r in epochs)
    best = load_checkpoint(trained / "best.pt")
    assert best["recipe"]["model"]["encoder"]["hidden"] == 32 and best["tokenizer"]["kind"] == "char"
    assert "optimizer" not in best and "optimizer" in load_checkpoint(trained / "last.pt")


def test_resume_continues_exactly(corpus, tmp_path):
    # 2 epochs straight vs. stopping mid-epoch at step 3 and resuming: identical weights and optimizer state
    straight = run(corpus, tmp_path / "a")
    run(corpus, tmp_path / "b", **{"train.max_steps": 3})
    interrupted = load_checkpoint(tmp_path / "b" / "last.pt")
    assert interrupted["train_state"]["step"] == 3 and interrupted["train_state"]["batch_in_epoch"] > 0
    resumed = run(corpus, tmp_path / "b", resume=True)
    assert resumed["steps"] == straight["steps"] > 3
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["scheduler"] == b["scheduler"]


def test_ctrl_c_saves_where_training_stopped_and_resume_continues_exactly(corpus, tmp_path, capsys):
    """Ctrl-C used to end training at once, losing everything since the last epoch's save. Now the step in
    hand finishes, last.pt is saved mid-epoch, and --resume ends where an uninterrupted run ends."""
    import os
    import signal

    from asrforge.progress import show_log

    show_log()          # the message goes where the command puts it (alone, no earlier test has set that up)
    straight = run(corpus, tmp_path / "a")
    trainer = Trainer(load_recipe(DEMO, tiny_overrides(corpus, **{"data.num_workers": 1})), tmp_path / "b", progress=False)
    step = trainer._optimizer_step

    def interrupted_after_the_third_step():
        norm = step()
        if trainer.state.step == 3:
            os.kill(os.getpid(), signal.SIGINT)          # as Ctrl-C in the terminal
        return norm

    trainer._optimizer_step = interrupted_after_the_third_step
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert f"stopped at step 3 (epoch 1, batch 3); saved {tmp_path / 'b' / 'last.pt'}: continue with --resume" \
        in capsys.readouterr().err
    saved = load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (3, 0, 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler        # the handler is put back
    resumed = run(corpus, tmp_path / "b", resume=True)
    assert resumed["steps"] == straight["steps"]
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    capsys.readouterr()
    assert run(corpus, tmp_path / "b", resume=True)["steps"] == straight["steps"]      # finished: nothing more
    assert "has finished its 2 epochs; nothing is left to train" in capsys.readouterr().err


def test_resume_refuses_a_changed_setting_by_name_and_takes_where_and_how_long_from_the_command(corpus, tmp_path):
    """A changed train.epochs or lr was silently replaced by the checkpoint's: the run did something other
    than asked (train.epochs=2 on a 1-epoch checkpoint trained nothing more)."""
    run(corpus, tmp_path / "a", **{"train.max_steps": 1})
    with pytest.raises(ConfigError, match=r"train.epochs=3 \(the checkpoint's: 2\), train.lr=0.0005 \(the checkpoint's: "
                                          r"0.002\) differ from how it was started.*--overwrite"):
        run(corpus, tmp_path / "a", resume=True, **{"train.epochs": 3, "train.lr": 5e-4})
    with pytest.raises(ConfigError, match=r"model.encoder.hidden=48 \(the checkpoint's: 32\)"):
        run(corpus, tmp_path / "a", resume=True, **{"model.encoder.hidden": 48})
    summary = run(corpus, tmp_path / "a", resume=True, **{"train.max_steps": 2, "train.log_every": 7})
    assert summary["steps"] == 2
    assert load_checkpoint(tmp_path / "a" / "last.pt")["recipe"]["train"]["log_every"] == 7


def test_time_budget_stops_and_saves(corpus, tmp_path):
    summary = run(corpus, tmp_path / "c", **{"train.max_minutes": 0.0001, "train.epochs": 50})
    assert summary["epochs"] == 0 and summary["steps"] >= 1
    # no epoch was validated: null (Infinity is not JSON that jq or a browser reads)
    assert summary["best_dev_wer"] is None and "Infinity" not in json.dumps(summary)
    assert load_checkpoint(tmp_path / "c" / "last.pt")["train_state"]["step"] == summary["steps"]


@pytest.mark.parametrize("cached", [True, False])
def test_the_schedule_is_fitted_to_the_budget_after_the_first_epoch_and_again_after_a_cache_filling_one(
        corpus, tmp_path, cached):
    """Epoch 1 took 67 s (and, with cached features, computed them all), epoch 2 then 50 s, of a 10-minute budget:
    8 epochs fit after the first; with cached features the second refits to 2 + 483 // 50 = 11."""
    overrides = tiny_overrides(corpus, **{"train.max_minutes": 10, "train.epochs": 60,
                                          "data.cache_features": str(cached).lower()})
    trainer = Trainer(load_recipe(DEMO, overrides), tmp_path / "t", progress=False)
    trainer.state.planned_epochs = 60
    for epoch, elapsed, seconds in ((1, 67.0, 67.0), (2, 117.0, 50.0)):
        trainer.state.epoch, trainer.state.elapsed = epoch, elapsed
        trainer._end_of_epoch(time.time() - seconds, finished=True)
        if epoch == 1:
            assert trainer.state.planned_epochs == 8
    assert trainer.state.planned_epochs == (11 if cached else 8)
    assert trainer.scheduler.total_steps == trainer.state.planned_epochs * trainer.steps_per_epoch


def test_bad_items_are_skipped_counted_and_named(corpus, tmp_path):
    utts, _ = read_manifest(corpus / "train.jsonl")
    good = utts[0]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....garbage" * 10)
    short = tmp_path / "short.wav"
    sf.write(short, sine(0.1), 16000)
    bad = [
        good.__class__(str(tmp_path / "missing.wav"), 1.0, "one", 0.0, None, "missing"),
        good.__class__(str(corrupt), 1.0, "two", 0.0, None, "corrupt"),
        good.__class__(good.audio_filepath, good.duration, "?!", 0.0, None, "emptytext"),
        good.__class__(str(short), 0.1, "one two three four five six seven", 0.0, None, "tooshort"),
    ]
    write_manifest(tmp_path / "train.jsonl", utts + bad)
    with open(tmp_path / "train.jsonl", "a") as f:
        f.write("{broken json\n")
    summary = run(corpus, tmp_path / "exp", **{"data.train": tmp_path / "train.jsonl", "train.epochs": 1})
    report = {json.loads(line)["item"]: json.loads(line)["reason"] for line in (tmp_path / "exp" / "skipped.jsonl").read_text().splitlines()}
    assert "does not exist" in report["missing"]
    assert "cannot be decoded" in report["corrupt"] and "corrupt.wav" in report["corrupt"]
    assert "empty after normalization" in report["emptytext"]
    assert "too few frames" in report["tooshort"]
    assert any("not valid JSON" in r for k, r in report.items() if k.endswith(":" + str(len(utts) + 5)))
    assert summary["skipped"] == 5 and summary["steps"] > 0


def test_empty_manifest_is_a_clear_error(corpus, tmp_path):
    from asrforge.errors import AsrforgeError
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(AsrforgeError, match="empty.jsonl. lists no utterances"):
        run(corpus, tmp_path / "x", **{"data.train": tmp_path / "empty.jsonl"})
    # nothing usable: the first item and its reason, since no skip report is written before training starts
    (tmp_path / "gone.jsonl").write_text(json.dumps({"audio_filepath": "gone.wav", "duration": 1.0, "text": "one",
                                                    "id": "g1"}) + "\n")
    with pytest.raises(AsrforgeError, match=r"no usable utterance: all 1 skipped, the first \(g1\) because: audio "
                                            r"file .*gone.wav does not exist"):
        run(corpus, tmp_path / "x", **{"data.train": tmp_path / "gone.jsonl"})


def test_resume_without_checkpoint_is_a_clear_error(corpus, tmp_path):
    from asrforge.errors import CheckpointError
    with pytest.raises(CheckpointError, match="last.pt does not exist"):
        run(corpus, tmp_path / "none", resume=True)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_model_overfits_a_tiny_batch(corpus, tmp_path, rnn_type):
    """A small model memorizes four utterances: the pipeline really learns, not just runs."""
    utts, _ = read_manifest(corpus / "train.jsonl")
    few = sorted(utts, key=lambda u: u.duration)[:4]
    write_manifest(tmp_path / "few.jsonl", few)
    run(corpus, tmp_path / "exp", **{"data.train": tmp_path / "few.jsonl", "data.dev": tmp_path / "few.jsonl",
                                     "model.encoder.hidden": 96, "model.encoder.layers": 2, "model.encoder.conv_channels": 8,
                                     "model.encoder.rnn_type": rnn_type, "specaugment.enabled": "false",
                                     "train.epochs": 220, "train.lr": 3e-3, "train.warmup_steps": 10,
                                     "data.max_batch_seconds": 100, "train.log_every": 50})
    log = [json.loads(line) for line in (tmp_path / "exp" / "train_log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if "dev_wer" in r]
    assert min(r["dev_wer"] for r in epochs) == 0.0
    # once dev WER is 0 % it cannot improve: best.pt is the 0 % epoch with the lowest dev loss, not the first
    perfect = [r for r in epochs if r["dev_wer"] == 0.0]
    best = load_checkpoint(tmp_path / "exp" / "best.pt")["train_state"]
    assert best["epoch"] == min(perfect, key=lambda r: r["dev_loss"])["epoch"] > perfect[0]["epoch"]
    assert best["best_loss"] == pytest.approx(min(r["dev_loss"] for r in perfect))
    assert epochs[-1]["dev_loss"] < epochs[0]["dev_loss"]


def test_gradient_accumulation_counts_optimizer_steps(corpus, tmp_path):
    summary = run(corpus, tmp_path / "acc", **{"train.accum_steps": 2, "train.epochs": 1})
    trainer = Trainer(load_recipe(DEMO, tiny_overrides(corpus)), tmp_path / "probe", progress=False)
    batches = len(trainer.sampler.batches(0))
    assert batches > 2 and summary["steps"] == (batches + 1) // 2


@pytest.mark.parametrize("recipe", ["demo_ctc.yaml", *sorted(TINY_RECIPE)])
def test_a_batch_of_only_bad_items_is_skipped_without_a_crash(recipe, corpus, tmp_path):
    """Every family: an empty batch still runs a zero backward through every parameter (DDP ranks must all
    join the gradient all-reduce), and changes nothing."""
    from asrforge.data.dataset import BadItem, collate
    overrides = tiny_overrides(corpus)
    if recipe in TINY_RECIPE:   # tiny_overrides shrinks the BiLSTM-CTC model; other families have their own keys
        overrides = [o for o in overrides if not o.startswith("model.")] + TINY_RECIPE[recipe]
    trainer = Trainer(load_recipe(REPO / "configs" / recipe, overrides), tmp_path / "t", progress=False)
    empty = collate([BadItem("x", "audio file x cannot be decoded")])
    assert len(empty) == 0 and trainer._train_step(empty) is None
    grads = [p.grad for p in trainer.model.parameters()]
    assert all(g is not None for g in grads) and not any(g.any() for g in grads)


def test_weight_average_is_saved_and_resumes_exactly(corpus, tmp_path):
    ema = {"train.ema_decay": 0.9}
    straight = run(corpus, tmp_path / "a", **ema)
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    assert a["ema_steps"] == straight["steps"]
    # "model" (what evaluation loads) is the average, not the last step's weights
    assert any(not torch.equal(a["model"][k], a["training_model"][k]) for k in a["model"])
    run(corpus, tmp_path / "b", **ema, **{"train.max_steps": 3})
    run(corpus, tmp_path / "b", resume=True, **ema)
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]) and torch.equal(a["training_model"][k], b["training_model"][k]), k
    run(corpus, tmp_path / "c", **{"train.max_steps": 2})
    with pytest.raises(ConfigError, match="ema_decay"):
        run(corpus, tmp_path / "c", resume=True, **ema)


def test_dev_loss_scores_what_it_can_and_wer_scores_everything(corpus, tmp_path):
    """A dev transcript outside the training vocabulary still counts in dev WER; the dev loss leaves it out,
    and is the training objective of the evaluated weights on the rest."""
    from asrforge.losses.ctc import ctc_loss
    utts, _ = read_manifest(corpus / "dev.jsonl")
    odd = utts[0].__class__(utts[0].audio_filepath, utts[0].duration, "zwölf", 0.0, None, "oov")
    write_manifest(tmp_path / "dev.jsonl", utts + [odd])
    # on the CPU: the reference below is computed in float32, as validation does there (a GPU would use bfloat16)
    trainer = Trainer(load_recipe(DEMO, tiny_overrides(corpus, **{"data.dev": tmp_path / "dev.jsonl", "train.device": "cpu"})),
                      tmp_path / "exp", progress=False)
    from asrforge.data.dataset import BadItem
    assert isinstance(trainer.dev_targets[len(utts)], BadItem)   # "ö" is not in the digits' vocabulary
    metrics = trainer.validate()
    assert metrics["utts"] == len(utts) + 1
    model = trainer.eval_model.eval()
    expected = []
    with torch.no_grad():
        for i in range(len(utts)):
            item = trainer.dev_targets[i]
            log_probs, out_lens = model(item.feats[None], torch.tensor([len(item.feats)]), item.tokens[None],
                                        torch.tensor([len(item.tokens)]))
            expected.append(float(ctc_loss(log_probs, out_lens, item.tokens[None], torch.tensor([len(item.tokens)])).loss))
    assert metrics["loss"] == pytest.approx(sum(expected) / len(expected), rel=1e-4)


def test_tensorboard_holds_the_scalars_and_a_resume_continues_them(corpus, tmp_path):
    pytest.importorskip("tensorboard")      # the tensorboard extra, in the test extra
    from PIL import Image                   # matplotlib's
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(folder):
        events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "audio": 0,
                                                                               "tensors": 0})
        events.Reload()
        return events

    def scalars(folder):
        events = read(folder)
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

    out = tmp_path / "tb"
    run(corpus, out, **{"train.loggers": "[jsonl,tensorboard]", "train.max_steps": 3})       # stopped early
    first = scalars(out)
    assert {"train/loss", "train/lr", "train/grad_norm", "train/utts_per_s"} <= set(first)
    assert [s for s, _ in first["train/loss"]] == [1, 2, 3]
    run(corpus, out, resume=True, **{"train.loggers": "[jsonl,tensorboard]"})                # on to the end
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps, evals = [r for r in log if "loss" in r], [r for r in log if "dev_wer" in r]
    again = scalars(out)
    assert len(steps) > 3 and len(evals) == 2
    assert not [k for r in steps for k in r if k.startswith("loss_")]        # CTC alone: a loss of one term
    # the curves continue where the first run stopped, and hold the log's figures
    assert again["train/loss"] == [(r["step"], pytest.approx(r["loss"])) for r in steps]
    assert again["dev/wer"] == [(r["step"], pytest.approx(r["dev_wer"])) for r in evals]
    assert {"dev/cer", "dev/loss"} <= set(again)

    # at each validation, three fixed dev utterances: their texts and CTC posteriorgram; their audio once
    events, dev = read(out), {u.id: u for u in read_manifest(corpus / "dev.jsonl")[0]}
    tags, validated = events.Tags(), [r["step"] for r in evals]
    shown = sorted(tag.split("/")[1] for tag in tags["images"])
    assert len(shown) == 3 and set(shown) <= set(dev) and not [t for t in tags["images"] if "attention" in t]
    for uid in shown:
        pictures = events.Images(f"posteriorgram/{uid}")
        assert [p.step for p in pictures] == validated and pictures[-1].width == 800
        assert Image.open(io.BytesIO(pictures[-1].encoded_image_string)).size == (800, pictures[-1].height)
        texts = [e.tensor_proto.string_val[0].decode() for e in events.Tensors(f"dev_text/{uid}/text_summary")]
        assert len(texts) == 2 and all(f"**reference:** {dev[uid].text}" in t for t in texts)
        audio = events.Audio(f"dev_audio/{uid}")
        assert [a.step for a in audio] == validated[:1] and audio[0].sample_rate == 16000
        assert audio[0].length_frames == len(load_utterance(dev[uid]))


@pytest.mark.parametrize("recipe_name,terms", [("demo_joint.yaml", ("attention", "ctc")),
                                               ("demo_rnnt.yaml", ("transducer", "ctc"))])
def test_a_loss_of_two_terms_logs_each(corpus, tmp_path, recipe_name, terms):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [o for o in tiny_overrides(corpus, **{"train.max_steps": 4, "train.loggers": "[jsonl,tensorboard]"})
                 if not o.startswith("model.")] + TINY_RECIPE[recipe_name] + ["model.ctc_weight=0.3"]
    Trainer(load_recipe(REPO / "configs" / recipe_name, overrides), tmp_path, progress=False).fit()
    steps = [r for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(steps) == 4
    for r in steps:     # every batch had both terms, so the logged loss is their weighted sum
        assert r["loss"] == pytest.approx(0.7 * r[f"loss_{terms[0]}"] + 0.3 * r[f"loss_{terms[1]}"], rel=1e-5)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {f"train/loss_{t}" for t in terms} <= set(events.Tags()["scalars"])


def test_unknown_loggers_are_refused():
    with pytest.raises(ConfigError, match="train.loggers takes jsonl"):
        load_recipe(DEMO, ["train.loggers=[wandb]"])
    with pytest.raises(ConfigError, match="train.loggers takes jsonl"):
        load_recipe(DEMO, ["train.loggers=[tensorboard]"])
