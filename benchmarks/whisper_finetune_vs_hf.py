"""Whisper fine-tuning throughput and WER: asrforge's trainer against transformers' Seq2SeqTrainer, same run.

    python benchmarks/whisper_finetune_vs_hf.py --whisper PATH/TO/tiny.en --hf-python PEER/bin/python
        [--fsdd PATH] [--train-utts 300] [--dev-utts 100] [--batch 8] [--lr 1e-5] [--out DIR]
        [--variants hf,asrforge,asrforge-2proc,asrforge-full,asrforge-lora]

The same weights (the checkpoint written as a Hugging Face folder by asrforge's own saver), the same
``--train-utts`` recordings of the four FSDD speakers (seeded), the same steps (``--epochs``, default 1), learning rate, warm-up,
cosine schedule, gradient clipping and batch, no augmentation, targets without timestamps (what the peer's recipe
trains), the encoder frozen unless the variant says otherwise. Each trained model is scored the same way, by
``asrforge evaluate`` (greedy) on ``--dev-utts`` held-out recordings of the same speakers (FSDD's official test
indices 0-4). Samples per second count training steps only: the peer's over ``trainer.train()`` (features
computed before, as its recipe does), asrforge's from its log windows (each step, its data loading included;
per-epoch validation excluded). Peak RSS is the largest process's. Variants: ``asrforge-2proc``: 2 processes under
torchrun (gloo), half the batch each; ``asrforge-recompute``: the frozen encoder's states not kept across epochs
(``train.frozen_encoder_cache_gb=0``); ``asrforge-full``: the encoder trained too; ``asrforge-lora``: LoRA rank 16 on
the decoder's attention. Prints one JSON line per variant, then a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

SPEAKERS = ("george", "jackson", "lucas", "nicolas")


def split(fsdd: Path, train_utts: int, dev_utts: int, out: Path) -> tuple[Path, Path]:
    """Seeded train (indices >= 5) and dev (FSDD's official test indices 0-4) manifests of the four speakers."""
    rows = [json.loads(line) for line in (fsdd / "manifest.jsonl").read_text().splitlines() if line.strip()]
    for r in rows:
        r["audio_filepath"] = str((fsdd / r["audio_filepath"]).resolve())
    rows = [r for r in rows if r["speaker"] in SPEAKERS]
    test = [r for r in rows if int(r["id"].rsplit("_", 1)[1]) < 5]
    train = [r for r in rows if int(r["id"].rsplit("_", 1)[1]) >= 5]
    rng = random.Random(0)
    paths = []
    for name, chosen in (("train", rng.sample(train, train_utts)), ("dev", rng.sample(test, dev_utts))):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
        paths.append(path)
    return paths[0], paths[1]


# runs a command and reports the peak RSS of the largest process under it (RUSAGE_CHILDREN: the maximum over every
# descendant waited for, torchrun's workers included), measured afresh for each command
_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
         "sys.exit(r.returncode)")


def run(cmd: list[str], env: dict | None = None) -> tuple[str, float]:
    """Run a command; -> its stdout and the peak RSS (MB) of the largest process it ran."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr[-3000:]}")
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")][-1]
    return proc.stdout, int(peak.split()[1]) / 1024


def asrforge_run(name: str, hf: Path, train: Path, dev: Path, out: Path, args, steps: int, extra: list[str],
                 processes: int = 1) -> dict:
    exp = out / name
    overrides = [f"model.init={hf}", f"data.train={train}", f"data.dev={dev}", f"train.epochs={args.epochs}",
                 f"data.max_batch_size={args.batch // processes}", f"train.lr={args.lr}", f"train.warmup_steps={args.warmup}",
                 "train.final_lr_ratio=0.0", "train.weight_decay=0.0", "train.log_every=1", "augment.speed_factors=[]",
                 "augment.gain_db=[]", "specaugment.enabled=false", "train.timestamp_ratio=0", "data.cache_features=true",
                 *extra]
    base = [sys.executable, "-m", "asrforge.cli"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m", "asrforge.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        _, peak = run([*base, "train", "whisper_finetune", *overrides, "--out", str(exp), "--overwrite"],
                      env={"TMPDIR": tmp})
    log = [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]
    windows = [r for r in log if "utts_per_s" in r]
    # each logged step: utts_per_s over that step's utterances (all ranks) -> total utterances / total seconds
    seconds = sum(args.batch / r["utts_per_s"] for r in windows)
    results = json.loads((exp / "results.json").read_text())
    # torchrun: each rank takes a whole share of the batches, so up to world-1 of them are left for the next epoch
    return {"system": f"asrforge {name}", "samples_per_s": len(windows) * args.batch / seconds, "train_s": seconds,
            "steps": results["steps"], "batch": args.batch, "processes": processes,
            "mean_loss": sum(r["loss"] for r in windows) / len(windows), "peak_rss_mb": peak,
            "trainable_parameters": results["trainable_parameters"], "model": str(exp)}


def dev_wer(model: Path, dev: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "asrforge.cli", "evaluate", "--model", str(model), "--manifest", str(dev),
             "--language", "en", "--json", f"{tmp}/ev.json"])
        return json.loads(Path(f"{tmp}/ev.json").read_text())["wer"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--whisper", required=True, help="any Whisper checkpoint asrforge reads (e.g. tiny.en)")
    ap.add_argument("--hf-python", help="python of a venv with transformers and accelerate (the peer)")
    ap.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    ap.add_argument("--train-utts", type=int, default=300)
    ap.add_argument("--dev-utts", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1, help="epochs over --train-utts (the peer: as many steps)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--out", default="exp/whisper-ft-vs-hf")
    ap.add_argument("--variants", default="hf,asrforge,asrforge-2proc,asrforge-full,asrforge-lora")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    hf = out / "init-hf"
    if not hf.exists():
        run([sys.executable, "-m", "asrforge.cli", "export", args.whisper, "--format", "huggingface", "--out", str(hf)])
    train, dev = split(Path(args.fsdd), args.train_utts, args.dev_utts, out)
    steps = args.epochs * math.ceil(args.train_utts / args.batch)
    rows = [{"system": "checkpoint as given", "dev_wer": dev_wer(hf, dev)}]
    variants = args.variants.split(",")
    for variant in variants:
        start = time.time()
        if variant == "hf":
            if not args.hf_python:
                raise SystemExit("--variants hf needs --hf-python PEER/bin/python (transformers + accelerate)")
            stdout, peak = run([args.hf_python, str(REPO / "benchmarks" / "peers" / "hf_seq2seq_finetune.py"),
                                "--model", str(hf), "--train", str(train), "--out", str(out / "hf-trained"),
                                "--batch", str(args.batch), "--steps", str(steps), "--lr", str(args.lr),
                                "--warmup", str(args.warmup), "--freeze-encoder"])
            row = json.loads(stdout.strip().splitlines()[-1]) | {"model": str(out / "hf-trained")}
        elif variant == "asrforge":
            row = asrforge_run("frozen-encoder", hf, train, dev, out, args, steps, [])
        elif variant == "asrforge-recompute":     # the frozen encoder run every epoch, its states not kept
            row = asrforge_run("frozen-encoder-recompute", hf, train, dev, out, args, steps,
                               ["train.frozen_encoder_cache_gb=0"])
        elif variant == "asrforge-2proc":
            row = asrforge_run("frozen-encoder-2proc", hf, train, dev, out, args, steps, [], processes=2)
        elif variant == "asrforge-full":
            row = asrforge_run("full", hf, train, dev, out, args, steps, ["model.freeze_encoder=false"])
        elif variant == "asrforge-lora":
            row = asrforge_run("lora", hf, train, dev, out, args, steps, ["model.lora.rank=16", "model.lora.alpha=32",
                                                                       f"train.lr={args.lr * 10}"])
        else:
            raise SystemExit(f"unknown variant {variant}")
        row["dev_wer"] = dev_wer(Path(row["model"]), dev)
        row["wall_s"] = time.time() - start
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"machine": machine(), "train_utts": args.train_utts, "dev_utts": args.dev_utts, "steps": steps,
                      "epochs": args.epochs,
                      "batch": args.batch, "lr": args.lr}))
    print("\n| system | samples/s | peak RSS MB | trainable params | dev WER |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r.get('samples_per_s', float('nan')):.2f} | {r.get('peak_rss_mb', float('nan')):.0f} | "
              f"{r.get('trainable_parameters', '')} | {100 * r['dev_wer']:.2f} % |")


if __name__ == "__main__":
    main()
