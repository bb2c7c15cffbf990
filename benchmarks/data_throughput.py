"""Is data loading the bottleneck? Utterances/s the DataLoader delivers (audio decoding, augmentation,
features, SpecAugment, collation) next to utterances/s one training step consumes, in the same run.

    python benchmarks/data_throughput.py [--workers 0 2] [--recipe fsdd_ctc] [--train M] [--device cuda]
        [-- overrides ...]

``--train`` may be a manifest or a shard spec (DIR/shard-{000000..000009}.tar). ``--device`` is where the
training step runs (the loader always runs on the CPU, as in training). Prints one JSON line; loader/step > 1
means the loader keeps up.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_corpus, machine, measure_steps  # noqa: E402

from asrforge.recipe import load_recipe  # noqa: E402
from asrforge.train.trainer import Trainer  # noqa: E402



def loader_rate(recipe, out: Path, max_batches: int) -> dict:
    trainer = Trainer(recipe, out, progress=False)
    utts, batches = 0, 0
    start = time.perf_counter()
    for batch in trainer._loader():
        utts += len(batch)
        batches += 1
        if batches >= max_batches:
            break
    elapsed = time.perf_counter() - start
    return {"utts_per_s": utts / elapsed, "batches": batches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipe", default="demo_ctc", help="a recipe file or shipped recipe name")
    ap.add_argument("--train", help="manifest or shard spec (default: a synthetic corpus)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu", help="where the training step runs: cpu, cuda, cuda:N")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = bench_corpus(Path(tmp) / "corpus")
        base = [f"data.train={args.train or corpus / 'train.jsonl'}", f"data.dev={corpus / 'dev.jsonl'}",
                "data.cache_features=false", *args.overrides]
        loaders = {w: loader_rate(load_recipe(args.recipe, base + ["train.device=cpu", f"data.num_workers={w}"]),
                                  Path(tmp) / f"l{w}", args.batches)
                   for w in args.workers}
        step = measure_steps(load_recipe(args.recipe, base + [f"train.device={args.device}"]), Path(tmp) / "steps",
                             args.steps)
    print(json.dumps({"name": "data_throughput", "recipe": args.recipe, "train": args.train or "synthetic digits",
                      "loader_utts_per_s": {str(w): r["utts_per_s"] for w, r in loaders.items()},
                      "step_utts_per_s": step["utts_per_s"], "step_device": args.device, "step_amp": step["amp"],
                      "loader_over_step": {str(w): r["utts_per_s"] / step["utts_per_s"] for w, r in loaders.items()},
                      "machine": machine()}))


if __name__ == "__main__":
    main()
