"""DDP under torchrun with 2 CPU processes (gloo): ranks see different data and end with identical weights."""

import json
import os
import subprocess
import sys

import pytest
import torch

from asrforge.data.shards import write_shards
from conftest import REPO, TINY_RECIPE, tiny_overrides


@pytest.mark.parametrize("source,recipe", [("manifest", "demo_ctc.yaml"), ("shards", "demo_ctc.yaml"),
                                           ("manifest", "demo_las.yaml"), ("manifest", "demo_rnnt.yaml"),
                                           ("speaker_adversarial", "demo_ctc.yaml")])
def test_two_process_ddp(corpus, tmp_path, source, recipe):
    # TMPDIR: torchrun writes a log folder per run under the temp dir; keep it inside the test's own folder
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    extra = {"train.trace": "true", "data.max_batch_seconds": 6}
    if source == "speaker_adversarial":   # its classifier sits outside DDP and averages its own gradients
        extra["train.speaker_adversarial"] = 0.5
    if source == "shards":   # with speaker CMVN: each rank pools its share of the shards, and they share them
        extra["data.train"] = write_shards(corpus / "train.jsonl", tmp_path / "shards", shard_size=6, progress=False)["spec"]
        extra["features.cmvn"] = "speaker"
    if recipe == "demo_las.yaml":     # rank 0 alone writes TensorBoard's events
        extra["train.loggers"] = "[jsonl,tensorboard]"
    overrides = tiny_overrides(corpus, **extra)
    if recipe in TINY_RECIPE:   # other families: their own shrinking keys instead of the BiLSTM-CTC ones
        overrides = [o for o in overrides if not o.startswith("model.")] + TINY_RECIPE[recipe]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "asrforge.cli",
           "train", str(REPO / "configs" / recipe), *overrides, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = [[json.loads(line) for line in (tmp_path / "trace" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(traces[0]) == len(traces[1]) > 2                       # same number of steps on both ranks
    for a, b in zip(*traces):
        assert (a["epoch"], a["batch"]) == (b["epoch"], b["batch"])
        assert not set(a["ids"]) & set(b["ids"])                      # each step: different utterances per rank
    seen = [{i for t in tr for i in t["ids"]} for tr in traces]
    assert seen[0] != seen[1]
    w0 = torch.load(tmp_path / "trace" / "rank0_weights.pt")
    w1 = torch.load(tmp_path / "trace" / "rank1_weights.pt")
    assert w0.keys() == w1.keys()
    assert any(k.startswith("adversary.") for k in w0) == (source == "speaker_adversarial")
    speakers = {u["speaker"] for u in map(json.loads, (corpus / "train.jsonl").read_text().splitlines())}
    assert {k.split(".")[1] for k in w0 if k.startswith("speaker_stats.")} == (speakers if source == "shards" else set())
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k                            # gradients were all-reduced
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "train_log.jsonl").is_file()
    if recipe == "demo_las.yaml":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        files = list((tmp_path / "tensorboard").iterdir())
        assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
        events = EventAccumulator(str(files[0]), size_guidance={"images": 0})
        events.Reload()
        evals = [r for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "dev_wer" in r]
        assert len(evals) == 2 and [e.step for e in events.Scalars("dev/wer")] == [r["step"] for r in evals]
        assert len([t for t in events.Tags()["images"] if t.startswith("attention/")]) == 3
