"""FSDD held-out-speaker WER: for each speaker, train configs/fsdd_ctc.yaml on the other three and evaluate
on the held-out one. Reads ../shared/data/fsdd by default (not part of a user's clone: pass --fsdd).

    python benchmarks/fsdd_heldout.py [--fsdd PATH] [--speakers george jackson] [--epochs 30] [--out DIR] [overrides ...]

Prints one JSON line with each speaker's WER/CER and the mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from asrforge.data.importers import prepare  # noqa: E402
from asrforge.inference.commands import evaluate_manifest  # noqa: E402
from asrforge.inference.transcriber import Transcriber  # noqa: E402
from asrforge.recipe import load_recipe  # noqa: E402
from asrforge.train.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    ap.add_argument("--speakers", nargs="+", default=["george", "jackson", "lucas", "nicolas"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default="exp/fsdd-heldout")
    ap.add_argument("--extra-train", nargs="*", default=[], help="more training manifests (e.g. synthetic digits)")
    ap.add_argument("overrides", nargs="*", help="recipe overrides, e.g. augment.speed_factors=[0.8,1.0,1.2]")
    args = ap.parse_args()
    if not Path(args.fsdd).is_dir():
        sys.exit(f"FSDD not found at {args.fsdd}; pass --fsdd PATH (the folder holding recordings/)")
    results = {}
    for speaker in args.speakers:
        data, exp = Path(args.out) / f"data-{speaker}", Path(args.out) / f"exp-{speaker}"
        prepare("fsdd", args.fsdd, data, holdout_speakers=(speaker,), progress=False)
        recipe = load_recipe(REPO / "configs" / "fsdd_ctc.yaml",
                             [f"data.train=[{','.join([str(data / 'train.jsonl'), *args.extra_train])}]", f"data.dev={data / 'dev.jsonl'}",
                              "train.max_minutes=null", f"train.epochs={args.epochs}", *args.overrides])
        trained = Trainer(recipe, exp).fit()
        ev = evaluate_manifest(Transcriber.from_checkpoint(exp), data / "test.jsonl", recipe.decode.beam_size, progress=False)
        s = ev.summary()
        results[speaker] = {"wer": s["wer"], "cer": s["cer"], "utts": s["utts"], "train_minutes": trained["train_minutes"]}
        print(f"held out {speaker}: WER {100 * s['wer']:.2f}%  CER {100 * s['cer']:.2f}%", file=sys.stderr)
    mean = sum(r["wer"] for r in results.values()) / len(results)
    print(json.dumps({"name": "fsdd_heldout", "epochs": args.epochs, "extra_train": args.extra_train,
                      "overrides": args.overrides, "speakers": results,
                      "mean_wer": mean, "machine": machine()}))


if __name__ == "__main__":
    main()
