"""An exported model against its PyTorch self and against sherpa-onnx, on the same held-out utterances.

    python benchmarks/runtime_vs_torch.py --model EXPDIR [--model EXPDIR2 ...] --manifest test.jsonl [--threads 2]

Each model is exported (``--format onnx``, float32 and int8; and ``--format sherpa-onnx`` when sherpa-onnx can run it,
i.e. a ``features.kind: kaldi_fbank`` recipe such as demo_rnnt_fbank), then each engine transcribes every utterance in
a fresh process of its own, greedily (one token per frame for transducers: sherpa-onnx's greedy search), on
``--threads`` threads:

- ``torch``: asrforge's PyTorch recognizer (eager float32);
- ``runtime`` / ``runtime-int8``: asrforge-runtime on the ``--format onnx`` graphs (the process never imports torch);
- ``runtime-sherpa-graphs`` / ``sherpa-onnx``: asrforge-runtime and sherpa-onnx on the same ``--format sherpa-onnx``
  graphs (and their int8 versions);
- for a streaming model (``model.streaming``), instead of those two: ``runtime-stream`` (asrforge-runtime's streaming
  engine on the ``--format onnx`` export) and ``sherpa-onnx-stream`` (sherpa-onnx's ``OnlineRecognizer`` on the
  ``--format sherpa-onnx`` export), both fed each recording in 160 ms pieces followed by 0.5 s of silence (sherpa-onnx
  decodes a stream's end only in whole chunks; its examples pad so).

One JSON line per engine: real-time factor (decoding seconds / audio seconds, features included, model loading
not), throughput against torch's, WER, peak RSS of the process, cold start (process start to the first result, the
imports and loading included), and the installed size of what the engine needs (the files of its distributions and
their requirements, as installed here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve()


# ---- the worker: one engine in its own process ------------------------------------------------------------------------
def _worker(engine: str, model: str, manifest: str, threads: int) -> None:
    started = time.time()
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
    paths = [r["audio_filepath"] if os.path.isabs(r["audio_filepath"]) else
             str(Path(manifest).parent / r["audio_filepath"]) for r in rows]
    if engine.endswith("-stream"):
        transcribe_all = _streaming_engine(engine, model, threads)
    elif engine == "sherpa-onnx":
        import sherpa_onnx

        from asrforge_runtime.audio import load_audio

        folder = Path(model)
        info = json.loads((folder / "asrforge_onnx.json").read_text())
        if info["objective"] == "ctc":
            recognizer = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
                str(folder / "model.onnx"), str(folder / "tokens.txt"), num_threads=threads)
        else:
            recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
                str(folder / "encoder.onnx"), str(folder / "decoder.onnx"), str(folder / "joiner.onnx"),
                str(folder / "tokens.txt"), num_threads=threads, decoding_method="greedy_search")

        def decode(batch):
            streams = []
            for p in batch:
                s = recognizer.create_stream()
                s.accept_waveform(16000, load_audio(p))
                streams.append(s)
            recognizer.decode_streams(streams)
            return [s.result.text.strip() for s in streams]

        def transcribe_all(batch):
            return [t for i in range(0, len(batch), 32) for t in decode(batch[i: i + 32])]
    else:
        if engine == "torch":
            import torch

            torch.set_num_threads(threads)
            from asrforge.inference.transcriber import Transcriber

            recognizer = Transcriber.from_checkpoint(model, lm=False)
        else:
            sys.modules["torch"] = None          # the runtime must not need it: importing it now fails
            from asrforge_runtime.recognizer import OnnxRecognizer

            recognizer = OnnxRecognizer.load(model, threads=threads, lm=False)
        options = {"beam_size": 1, "max_symbols_per_frame": 1, "word_timestamps": False}

        def transcribe_all(batch):
            return [r.text for r in recognizer.transcribe_batch(batch, **options)]
    first = transcribe_all(paths[:1])[0]
    first_at = time.time()
    t0 = time.perf_counter()
    texts = transcribe_all(paths)
    seconds = time.perf_counter() - t0
    print(json.dumps({"texts": texts, "decode_s": seconds, "first_result_at": first_at, "started_at": started,
                      "first": first, "peak_rss_mb": _peak_rss_mb()}))


PIECE_S, TAIL_S = 0.16, 0.5        # streaming engines: audio arrives in pieces of this long, then this much silence


def _streaming_engine(engine: str, model: str, threads: int):
    """``paths -> texts`` by a streaming engine fed each recording piece by piece."""
    import numpy as np

    from asrforge_runtime.audio import load_audio

    def pieces(path):
        wave = np.concatenate([load_audio(path), np.zeros(int(16000 * TAIL_S), np.float32)])
        step = int(16000 * PIECE_S)
        return [wave[i: i + step] for i in range(0, wave.size, step)]

    if engine == "sherpa-onnx-stream":
        import sherpa_onnx

        folder = Path(model)
        recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
            str(folder / "tokens.txt"), str(folder / "encoder.onnx"), str(folder / "decoder.onnx"),
            str(folder / "joiner.onnx"), num_threads=threads, decoding_method="greedy_search")

        def one(path):
            s = recognizer.create_stream()
            for piece in pieces(path):
                s.accept_waveform(16000, piece)
                while recognizer.is_ready(s):
                    recognizer.decode_stream(s)
            s.input_finished()
            while recognizer.is_ready(s):
                recognizer.decode_stream(s)
            return recognizer.get_result(s).strip()
    else:
        sys.modules["torch"] = None
        from asrforge_runtime.native_streaming import NativeStreamingRecognizer
        from asrforge_runtime.recognizer import OnnxRecognizer

        streaming = NativeStreamingRecognizer(OnnxRecognizer.load(model, threads=threads, lm=False),
                                              beam_size=1, max_symbols_per_frame=1)

        def one(path):
            s = streaming.create_stream()
            for piece in pieces(path):
                s.accept_waveform(piece)
                streaming.decode_streams([s])
            s.finish()
            streaming.decode_streams([s])
            return " ".join(e.text for e in s.finals).strip()
    return lambda paths: [one(p) for p in paths]


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec; getrusage's maximum may still hold the
    forking parent's (here: a process that had imported torch)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- installed size of an engine's distributions ----------------------------------------------------------------------
def _requirement_names(dist: metadata.Distribution) -> list[str]:
    names = []
    for req in dist.requires or []:
        if "extra ==" in req:
            continue                        # only what a plain install brings
        names.append(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0])
    return names


def installed_mb(*roots: str) -> float:
    """The files of ``roots`` and of everything they require (no extras), as installed here, in MB."""
    seen, todo, total = set(), list(roots), 0
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            path = Path(f.locate())
            if path.is_file():
                total += path.stat().st_size
        todo.extend(_requirement_names(dist))
    return round(total / 2**20, 1)


# ---- the parent: export, run each engine, score --------------------------------------------------------------------
def _run(engine: str, model: Path, manifest: str, threads: int) -> dict:
    spawned = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, str(HERE), "--worker", engine, "--model", str(model), "--manifest", manifest,
                           "--threads", str(threads)], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{engine} on {model} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["cold_start_s"] = out["first_result_at"] - spawned
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="an asrforge experiment folder or checkpoint (repeatable)")
    ap.add_argument("--manifest", required=True, help="held-out utterances with transcripts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args.worker, args.model[0], args.manifest, args.threads)

    rows = [json.loads(line) for line in Path(args.manifest).read_text().splitlines() if line.strip()]
    audio_s = sum(r["duration"] for r in rows)
    sizes = {"torch": installed_mb("asrforge"), "runtime": installed_mb("asrforge-runtime"),
             "sherpa-onnx": installed_mb("sherpa-onnx")}
    work = Path(tempfile.mkdtemp(prefix="runtime_vs_torch-"))
    try:
        _compare(args, rows, audio_s, sizes, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)       # the exports are the benchmark's own


def _compare(args, rows: list[dict], audio_s: float, sizes: dict, work: Path) -> None:
    """Export each model, run every engine on it, print one JSON line per engine."""
    from asrforge.checkpoint import load_checkpoint
    from asrforge.export.onnx import export_onnx
    from asrforge.export.sherpa import export_sherpa_onnx, sherpa_problems
    from asrforge.inference.transcriber import Transcriber
    from asrforge.metrics import ErrorReport
    from asrforge.text import Normalizer

    for model in args.model:
        transcriber = Transcriber.from_state(load_checkpoint(model), lm=False)
        normalize = Normalizer(transcriber.recipe.text)
        name = Path(model).name
        engines = [("torch", Path(model), "torch")]
        export_onnx(model, work / f"{name}-f32")
        export_onnx(model, work / f"{name}-int8", "int8")
        engines += [("runtime", work / f"{name}-f32", "runtime"), ("runtime-int8", work / f"{name}-int8", "runtime")]
        streaming = bool(getattr(transcriber.recipe.model, "streaming", False))
        if streaming:
            engines.append(("runtime-stream", work / f"{name}-f32", "runtime-stream"))
        if not sherpa_problems(transcriber.recipe, transcriber.model) and streaming:
            export_sherpa_onnx(model, work / f"{name}-sherpa-stream")
            engines.append(("sherpa-onnx-stream", work / f"{name}-sherpa-stream", "sherpa-onnx-stream"))
        elif not sherpa_problems(transcriber.recipe, transcriber.model):
            for q in ("float32", "int8"):
                folder = work / f"{name}-sherpa-{q}"
                export_sherpa_onnx(model, folder, q)
                suffix = "" if q == "float32" else "-int8"
                engines += [(f"runtime-sherpa-graphs{suffix}", folder, "runtime"),
                            (f"sherpa-onnx{suffix}", folder, "sherpa-onnx")]
        results = {}
        for label, path, engine in engines:
            out = _run(engine, path, args.manifest, args.threads)
            report = ErrorReport()
            for i, (row, hyp) in enumerate(zip(rows, out["texts"])):
                report.add(str(i), normalize(row["text"]), hyp)
            results[label] = out
            summary = report.summary()
            print(json.dumps({
                "model": name, "family": transcriber.recipe.model.family, "engine": label, "threads": args.threads,
                "utts": len(rows), "audio_s": round(audio_s, 1), "rtf": round(out["decode_s"] / audio_s, 5),
                "throughput_vs_torch": round(results["torch"]["decode_s"] / out["decode_s"], 2),
                "wer": round(summary["wer"], 4), "peak_rss_mb": round(out["peak_rss_mb"]),
                "cold_start_s": round(out["cold_start_s"], 2),
                "installed_mb": sizes[engine.removesuffix("-stream")]}), flush=True)


if __name__ == "__main__":
    main()
