"""Bulk transcription: utterances per second of `asrforge transcribe --manifest` with 1, 2, ... processes under
torchrun, on the same manifest and model, and a check that every process count writes the same output.

    python benchmarks/bulk_transcribe.py --model EXP --manifest test.jsonl [--copies 10] [--processes 1 2] [--threads 1]

``--copies`` repeats the manifest (each copy with its own ids) so that there is enough work to time; each run starts
from an empty output. Two figures per run: the rate the job reports over its own work (model loading excluded),
and the wall time of the whole command (Python and torch start-up and model loading included). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402


def repeated(manifest: Path, copies: int, out: Path) -> tuple[Path, float]:
    """The manifest ``copies`` times over, absolute audio paths, and its hours of audio."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    base = manifest.resolve().parent
    with open(out, "w") as f:
        for k in range(copies):
            for i, r in enumerate(rows):
                f.write(json.dumps({**r, "audio_filepath": str(base / r["audio_filepath"]),
                                    "id": f"{r.get('id', i)}-{k}"}) + "\n")
    return out, copies * sum(float(r["duration"]) for r in rows) / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="an asrforge or Whisper checkpoint")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    ap.add_argument("--out", default="bench-bulk")
    ap.add_argument("extra", nargs="*", help="more transcribe options after --, e.g. -- --beam-size 4")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest, hours = repeated(Path(args.manifest), args.copies, out / "manifest.jsonl")
    runs, outputs = [], {}
    for n in args.processes:
        result = out / f"preds-{n}.jsonl"
        result.unlink(missing_ok=True)
        shutil.rmtree(result.with_name(result.name + ".parts"), ignore_errors=True)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                   "-m", "asrforge.cli", "transcribe", "--manifest", str(manifest), "--output-manifest", str(result),
                   "--model", args.model, *args.extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TMPDIR": str(out)}
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        reported = re.search(r"this run: (\d+) in ([\d.]+) s with (\d+) process\(es\), ([\d.]+) utt/s", proc.stderr)
        runs.append({"processes": n, "utterances": int(reported.group(1)), "job_seconds": float(reported.group(2)),
                     "utt_per_s": float(reported.group(4)), "wall_seconds": round(wall, 2),
                     "utt_per_s_wall": round(int(reported.group(1)) / wall, 1),
                     "audio_h_per_h": round(hours * 3600 / float(reported.group(2)), 1)})
        outputs[n] = result.read_text()
        print(json.dumps(runs[-1]), file=sys.stderr)
    same = len(set(outputs.values())) == 1
    print(json.dumps({"name": "bulk_transcribe", "model": args.model, "utterances": runs[0]["utterances"],
                      "audio_hours": round(hours, 3), "threads_per_process": args.threads, "runs": runs,
                      "same_output_for_every_process_count": same, "machine": machine()}))


if __name__ == "__main__":
    main()
