"""Every model family on the same synthetic corpus under the same wall-clock training budget.

    python benchmarks/families.py [--minutes 10] [--hours 1.5] [--out bench-families] [--recipes demo_ctc demo_las ...]
                                  [--eval-only]

Synthesizes the demo corpus (``asrforge demo``'s: 1.5 h of digits, test voices never heard in training; ``--hours``
for another size) once, trains each recipe for ``--minutes`` of wall clock, then scores the best checkpoint on the
test voices with greedy and beam search. The transducers in minutes:
``--hours 0.5 --minutes 4 --recipes demo_rnnt demo_conformer_rnnt demo_rnnt_fbank demo_rnnt_streaming``. Prints a Markdown table, then one JSON line with every figure.
RTF = decoding seconds (features + network + search) / audio seconds, batched as `asrforge evaluate` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from asrforge.data.synth import synthesize_corpus  # noqa: E402
from asrforge.cli.demo import DEMO_HOURS  # noqa: E402
from asrforge.data.synth import SynthConfig  # noqa: E402
from asrforge.inference import load_model  # noqa: E402
from asrforge.recipe import load_recipe  # noqa: E402
from asrforge.train.trainer import Trainer  # noqa: E402

RECIPES = ["demo_ctc", "demo_conformer_ctc", "demo_las", "demo_transformer", "demo_joint", "demo_rnnt"]
TRANSDUCERS = ["demo_conformer_rnnt", "demo_rnnt_fbank", "demo_rnnt_streaming", "demo_rnnt_fbank_streaming"]      # with demo_rnnt: every one shipped
OTHERS = ["demo_ctc_fbank"]


def run_one(name: str, corpus: Path, out: Path, minutes: float, eval_only: bool = False) -> dict:
    recipe = load_recipe(name,
                         [f"data.train={corpus / 'train.jsonl'}", f"data.dev={corpus / 'dev.jsonl'}",
                          f"train.max_minutes={minutes}"])
    exp = out / name
    if eval_only:      # score the checkpoint an earlier run of this script trained (e.g. after a search change)
        trained = json.loads((exp / "trained.json").read_text())
    else:
        for stale in ("train_log.jsonl", "best.pt", "last.pt"):
            (exp / stale).unlink(missing_ok=True)
        print(f"== {name}: family {recipe.model.family}, encoder {recipe.model.encoder.kind}, {minutes} min", flush=True)
        trained = Trainer(recipe, exp).fit()
        (exp / "trained.json").write_text(json.dumps(trained))
    transcriber = load_model(exp)   # best.pt, or last.pt if no epoch finished
    row = {"recipe": name, "family": recipe.model.family, "encoder": recipe.model.encoder.kind,
           "params_m": sum(p.numel() for p in transcriber.model.parameters()) / 1e6,
           "train_minutes": trained["train_minutes"], "epochs": trained["epochs"], "beam_size": recipe.decode.beam_size}
    for label, beam in (("greedy", 1), ("beam", recipe.decode.beam_size)):
        s = transcriber.evaluate(corpus / "test.jsonl", beam_size=beam, progress=False).summary()
        row.update({f"{label}_wer": s["wer"], f"{label}_cer": s["cer"], f"{label}_rtf": s["rtf"], "utts": s["utts"]})
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per family (wall clock)")
    parser.add_argument("--out", default="bench-families")
    parser.add_argument("--hours", type=float, default=DEMO_HOURS, help="synthetic training hours (the demo's: 1.5)")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES + TRANSDUCERS + OTHERS)
    parser.add_argument("--eval-only", action="store_true", help="score the checkpoints already in --out, no training")
    args = parser.parse_args()
    out = Path(args.out)
    corpus = out / "corpus"
    t0 = time.time()
    summary = synthesize_corpus(corpus, SynthConfig(domain="digits", hours=args.hours, seed=0))   # the demo's, by default
    print(f"corpus: {summary['train']['utts']} train utts, {summary['test']['utts']} test utts from "
          f"{summary['test']['speakers']} held-out voices ({time.time() - t0:.0f} s)", flush=True)
    rows = [run_one(name, corpus, out, args.minutes, args.eval_only) for name in args.recipes]
    print("\n| recipe | family | encoder | params | train min | epochs | WER greedy | WER beam | CER beam | RTF greedy | RTF beam |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['family']} | {r['encoder']} | {r['params_m']:.2f} M | {r['train_minutes']:.1f} | "
              f"{r['epochs']} | {100 * r['greedy_wer']:.2f} % | {100 * r['beam_wer']:.2f} % (beam {r['beam_size']}) | "
              f"{100 * r['beam_cer']:.2f} % | {r['greedy_rtf']:.4f} | {r['beam_rtf']:.4f} |")
    print(json.dumps({"benchmark": "families", "minutes": args.minutes, "hours": args.hours, "rows": rows,
                      "machine": machine()}))


if __name__ == "__main__":
    main()
