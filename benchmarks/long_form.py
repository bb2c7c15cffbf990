"""Long recordings: WER of a trained model on one long file made of a test set's utterances with pauses between
them, decoded in one piece against cut at its pauses (what `asrforge transcribe` does past --max-segment-s),
with the same utterances decoded alone as the reference point.

    python benchmarks/long_form.py --model EXP --manifest test.jsonl [--utts 150] [--pause 0.3 1.5] [--noise 0.002]

The pauses hold quiet white noise (``--noise``, standard deviation), as a room does. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from asrforge_runtime.audio import SAMPLE_RATE  # noqa: E402
from asrforge.data.manifest import load_utterance, read_manifest  # noqa: E402
from asrforge.inference import load_model  # noqa: E402
from asrforge.inference.transcriber import LONG_FORM_S  # noqa: E402
from asrforge.metrics import ErrorReport  # noqa: E402


def wer(ref: str, hyp: str) -> dict:
    report = ErrorReport()
    report.add("long", ref, hyp)
    s = report.summary()
    return {"wer": s["wer"], "sub": s["sub"], "del": s["del"], "ins": s["ins"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="asrforge checkpoint or experiment folder")
    ap.add_argument("--manifest", required=True, help="test manifest whose utterances make the long file")
    ap.add_argument("--utts", type=int, default=150)
    ap.add_argument("--pause", type=float, nargs=2, default=[0.3, 1.5], help="pause length range, seconds")
    ap.add_argument("--noise", type=float, default=0.002, help="noise level in the pauses (and under the speech)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tr = load_model(args.model)
    utts = read_manifest(args.manifest)[0][: args.utts]
    rng = np.random.default_rng(args.seed)
    waves = [load_utterance(u) for u in utts]
    parts = []
    for wave in waves:
        parts += [np.zeros(int(rng.uniform(*args.pause) * SAMPLE_RATE), np.float32), wave]
    long = np.concatenate(parts)
    long += (args.noise * rng.standard_normal(long.size)).astype(np.float32)
    ref = " ".join(tr.normalizer(u.text) for u in utts)

    figures = {}
    start = time.perf_counter()
    alone = " ".join(r.text for r in tr.transcribe_batch(waves))
    figures["utterances_alone"] = {**wer(ref, alone), "seconds": time.perf_counter() - start}
    for name, limit in (("one_piece", long.size / SAMPLE_RATE + 1), ("cut_at_pauses", LONG_FORM_S)):
        start = time.perf_counter()
        result = tr.transcribe(long, max_segment_s=limit)
        figures[name] = {**wer(ref, result.text), "segments": len(result.segments),
                         "seconds": time.perf_counter() - start}
    print(json.dumps({"name": "long_form", "model": args.model, "utterances": len(utts),
                      "minutes": round(long.size / SAMPLE_RATE / 60, 2), **figures, "machine": machine()}))


if __name__ == "__main__":
    main()
