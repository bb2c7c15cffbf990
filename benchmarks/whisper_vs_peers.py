"""Whisper through asrforge against faster-whisper (CTranslate2), same weights, same files, same options.

    python benchmarks/whisper_vs_peers.py --model PATH/TO/ct2-whisper-folder [--peer-python PY] \
        [--beam-size 5] [--compute float32 int8] [--manifest M ...] [--fsdd N] [--long 1] [--batch-size N]

The model must be a CTranslate2 folder (faster-whisper reads only that; asrforge reads it too). Each engine
runs in its own process, one after the other, with the same thread count; a warm-up file is not timed.
Audio: ../shared/data/english (2 read sentences), one long file stitched from them and 30 FSDD digits (to
exercise the 30-s window seeking) and N FSDD digit recordings, when ../shared is there; or any manifests given.
With --batch-size N both engines run their batched mode (Silero VAD chunks decoded N at a time:
asrforge's ``batch_size``, faster-whisper's ``BatchedInferencePipeline``) instead of sequential windows.
WER is computed after lower-casing, removing punctuation and spelling out single digits.
Prints one JSON line: per engine and compute type, WER and wall time, and asrforge/faster-whisper ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
DIGITS = "zero one two three four five six seven eight nine".split()


def normalize(text: str) -> str:
    text = re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "")
    return " ".join(DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in text.split())


def worker(engine: str, model: str, compute: str, beam: int, threads: int, files: list[str], batch: int = 0) -> dict:
    """Runs inside the engine's process: transcribe every file, return texts and the timed wall clock."""
    if engine == "asrforge":
        import torch

        torch.set_num_threads(threads)
        import asrforge

        recognizer = asrforge.load_model(model, dtype=compute)
        run = lambda f: recognizer.transcribe(f, beam_size=beam, language="en", batch_size=batch or None).text  # noqa: E731
    else:
        from faster_whisper import WhisperModel

        fw = WhisperModel(model, device="cpu", compute_type=compute, cpu_threads=threads)
        if batch:
            from faster_whisper import BatchedInferencePipeline

            batched = BatchedInferencePipeline(model=fw)
            run = lambda f: " ".join(s.text for s in batched.transcribe(f, beam_size=beam, language="en", batch_size=batch)[0])  # noqa: E731
        else:
            run = lambda f: " ".join(s.text for s in fw.transcribe(f, beam_size=beam, language="en")[0])  # noqa: E731
    run(files[0])  # warm-up: first-call allocations and thread pools
    start = time.perf_counter()
    texts = [run(f) for f in files]
    return {"texts": texts, "seconds": time.perf_counter() - start}


def long_file(out: Path, fsdd: Path) -> tuple[str, str]:
    """About 55 s that no single window covers: the two sentences, 30 digits from other files, the sentences
    again in reverse order, with short pauses; exercises seeking across 30-s windows."""
    import numpy as np
    import soundfile as sf

    from asrforge.audio.io import load_audio

    lines = [json.loads(line) for line in (SHARED / "english" / "manifest.jsonl").read_text().splitlines()]
    sentences = [(SHARED / "english" / u["audio_filepath"], u["text"]) for u in lines]
    digits = [(p, DIGITS[int(p.name.split("_")[0])]) for p in sorted(fsdd.glob("*.wav"))[7::67][:30]]
    pieces, words = [], []
    for path, text in [*sentences, *digits, *reversed(sentences)]:
        pieces += [load_audio(path), np.zeros(8000, dtype=np.float32)]
        words.append(text)
    sf.write(out, np.concatenate(pieces), 16000)
    return str(out), " ".join(words)


def build_inputs(args, tmp: Path) -> list[tuple[str, str]]:
    """(audio path, reference text) pairs."""
    items: list[tuple[str, str]] = []
    manifests = [Path(m) for m in args.manifest] or ([SHARED / "english" / "manifest.jsonl"] if SHARED.is_dir() else [])
    for m in manifests:
        for line in m.read_text().splitlines():
            u = json.loads(line)
            items.append((str((m.parent / u["audio_filepath"]).resolve()), u["text"]))
    fsdd = SHARED / "fsdd" / "recordings"
    if args.long and SHARED.is_dir():
        items.append(long_file(tmp / "long.wav", fsdd))
    fsdd = SHARED / "fsdd" / "recordings"
    if args.fsdd and fsdd.is_dir():
        for path in sorted(fsdd.glob("*.wav"))[:: max(1, 2000 // args.fsdd)][: args.fsdd]:
            items.append((str(path), DIGITS[int(path.name.split("_")[0])]))
    if not items:
        sys.exit("no audio: pass --manifest M (JSONL with audio_filepath and text), or run beside ../shared/data")
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)")
    ap.add_argument("--peer-python", default=sys.executable, help="a Python with faster-whisper installed")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--compute", nargs="+", default=["float32", "int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--manifest", nargs="*", default=[])
    ap.add_argument("--fsdd", type=int, default=40, help="FSDD recordings to add (0: none)")
    ap.add_argument("--long", type=int, default=1, help="1: add one long file made of the other recordings (0: none)")
    ap.add_argument("--batch-size", type=int, default=0, help="N > 0: both engines in batched (VAD) mode")
    ap.add_argument("--worker", nargs=4, metavar=("ENGINE", "COMPUTE", "FILES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        engine, compute, files, out = args.worker
        result = worker(engine, args.model, compute, args.beam_size, args.threads, json.loads(Path(files).read_text()),
                        args.batch_size)
        Path(out).write_text(json.dumps(result))
        return

    from asrforge.metrics import wer

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        items = build_inputs(args, tmp)
        files_json = tmp / "files.json"
        files_json.write_text(json.dumps([f for f, _ in items]))
        refs = [normalize(r) for _, r in items]
        report: dict = {"name": "whisper_vs_peers", "model": args.model, "beam_size": args.beam_size,
                        "batch_size": args.batch_size,
                        "files": len(items), "threads": args.threads, "results": {}}
        audio_seconds = 0.0
        import soundfile as sf
        for f, _ in items:
            audio_seconds += sf.info(f).duration
        report["audio_seconds"] = round(audio_seconds, 1)
        for compute in args.compute:
            for engine, python in (("asrforge", sys.executable), ("faster-whisper", args.peer_python)):
                out = tmp / f"{engine}-{compute}.json"
                cmd = [python, __file__, "--model", args.model, "--beam-size", str(args.beam_size), "--threads",
                       str(args.threads), "--batch-size", str(args.batch_size), "--worker", engine, compute,
                       str(files_json), str(out)]
                env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    report["results"][f"{engine}/{compute}"] = {"error": proc.stderr.strip().splitlines()[-1:]}
                    continue
                r = json.loads(out.read_text())
                hyps = [normalize(t) for t in r["texts"]]
                report["results"][f"{engine}/{compute}"] = {
                    "wer": round(wer(refs, hyps), 4), "seconds": round(r["seconds"], 2),
                    "rtf": round(r["seconds"] / audio_seconds, 4), "transcripts": {Path(f).name: t for (f, _), t in zip(items, r["texts"]) if "fsdd" not in f}}
                print(f"{engine}/{compute}: WER {100 * wer(refs, hyps):.2f}%  {r['seconds']:.1f}s", file=sys.stderr)
            ours, peer = report["results"].get(f"asrforge/{compute}", {}), report["results"].get(f"faster-whisper/{compute}", {})
            if "seconds" in ours and "seconds" in peer:
                report[f"time_ratio_{compute}"] = round(ours["seconds"] / peer["seconds"], 3)
                report[f"wer_delta_{compute}"] = round(ours["wer"] - peer["wer"], 4)
        print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
