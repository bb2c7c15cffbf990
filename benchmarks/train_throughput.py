"""Training throughput: utterances/s and audio-seconds/s of optimizer steps, BiLSTM vs BiGRU in the same run.

    python benchmarks/train_throughput.py [--steps 20] [--device cpu] [recipe overrides ...]

Prints one JSON line. Features are cached first so the figure is the model's step rate; the data
pipeline's own rate is measured by benchmarks/data_throughput.py (issue 3).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_corpus, machine, measure_steps  # noqa: E402

from asrforge.recipe import load_recipe  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corpus", default=None, help="corpus folder (default: a synthetic one in a temp dir)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus) if args.corpus else bench_corpus(Path(tmp) / "corpus")
        base = [f"data.train={corpus / 'train.jsonl'}", f"data.dev={corpus / 'dev.jsonl'}", f"train.device={args.device}",
                "data.cache_features=false", *args.overrides]
        figures = {}
        for rnn in ("lstm", "gru"):
            recipe = load_recipe("demo_ctc", base + [f"model.encoder.rnn_type={rnn}"])
            figures[rnn] = measure_steps(recipe, Path(tmp) / rnn, args.steps)
    print(json.dumps({"name": "train_throughput", "recipe": "demo_ctc", "steps": args.steps,
                      "bilstm": figures["lstm"], "bigru": figures["gru"],
                      "gru_over_lstm_speed": figures["gru"]["utts_per_s"] / figures["lstm"]["utts_per_s"],
                      "machine": machine()}))


if __name__ == "__main__":
    main()
