"""Whisper through asrforge against faster-whisper (CTranslate2), same weights, same files, same options.

    python benchmarks/whisper_vs_peers.py --model PATH/TO/ct2-whisper-folder [--peer-python PY] \
        [--beam-size 5] [--compute float32 int8] [--manifest M ...] [--fsdd N] [--long 1] [--batch-size N]
    python benchmarks/whisper_vs_peers.py --long-form --model BASE TINY [--peer-python PY] [--minutes 5]

The model must be a CTranslate2 folder (faster-whisper reads only that; asrforge reads it too). Each engine
runs in its own process, one after the other, with the same thread count; a warm-up file is not timed.
Audio: ../shared/data/english (2 read sentences), one long file stitched from them and 30 FSDD digits (to
exercise the 30-s window seeking) and N FSDD digit recordings, when ../shared is there; or any manifests given.
With --batch-size N both engines run their batched mode (Silero VAD chunks decoded N at a time:
asrforge's ``batch_size``, faster-whisper's ``BatchedInferencePipeline``) instead of sequential windows.
WER is computed after lower-casing, removing punctuation and spelling out single digits.
Prints one JSON line: per engine and compute type, WER and wall time, and asrforge/faster-whisper ratios.

``--long-form`` measures what people transcribe: one recording of at least ``--minutes`` minutes built from
the shared read sentences, FSDD digits (three to a group) and English sentences spoken by several eSpeak
voices, joined with half-second pauses. For each model it runs the four modes (sequential float32 and int8,
batched float32 and int8 with ``--batch-size``, default 8) in both engines, one fresh process each, and
reports wall time, WER and peak resident memory (``ru_maxrss`` of that process, model loading included),
plus the cold start: the seconds from starting ``asrforge transcribe`` (or a script that imports
faster-whisper and loads the same model) to its first printed segment, on the 11-s ``jfk.flac``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
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
    seconds = time.perf_counter() - start
    return {"texts": texts, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# Sentences written for this benchmark (plain read English with no digits, so the normalizer does not matter)
SENTENCES = [
    "the morning train was late again so we walked to the harbour and watched the boats come in",
    "she opened the window and the smell of fresh bread drifted up from the bakery below",
    "a small group of students gathered in the library to prepare for their final examination",
    "the old bridge over the river was closed for repairs during most of the summer",
    "please remember to turn off the lights and lock the back door before you leave the house",
    "our neighbour grows tomatoes and beans in a garden that faces the afternoon sun",
    "the committee agreed to meet again next week after everyone had read the report",
    "he picked up the heavy box and carried it carefully down the narrow stairs",
    "the weather forecast promised clear skies but by noon it was raining heavily",
    "most of the audience stayed after the concert to talk with the musicians",
    "the children built a castle of sand and waited for the tide to wash it away",
    "a quiet voice at the back of the room asked the speaker to repeat the question",
    "the museum will open a new exhibition about the history of maps and travel",
    "after dinner they played cards by the fire until the candles burned low",
    "the doctor told him to rest for a few days and drink plenty of water",
    "every spring the valley fills with flowers and the hills turn bright green",
    "the pilot announced that the plane would land about twenty minutes early",
    "she wrote a long letter to her brother describing the city and its people",
    "the engineers tested the new engine for several hours before they were satisfied",
    "we could hear the sound of the waves long before we reached the beach",
    "the shop on the corner sells coffee newspapers and warm sandwiches",
    "nobody expected the young team to win the match but they played very well",
    "the teacher drew a simple diagram on the board to explain the idea",
    "a thick fog covered the fields and the farmers waited for it to lift",
    "he spent the whole weekend painting the fence behind the garage",
]
VOICES = ["en-us+m1", "en+f2", "en-gb-x-rp+m3", "en-us+f4", "en-029+m5", "en-us+klatt2"]


def long_form_recording(out: Path, minutes: float, pause_s: float = 0.5) -> tuple[str, str]:
    """A recording of at least ``minutes`` minutes and its reference: the shared read sentences, groups of three
    FSDD digits and :data:`SENTENCES` in several eSpeak voices, in a fixed interleaved order, with pauses of
    ``pause_s`` between them."""
    import random

    import numpy as np
    import soundfile as sf

    from asrforge_runtime.audio import SAMPLE_RATE, load_audio, resample
    from asrforge.data.synth.espeak import EspeakEngine

    rng = random.Random(0)
    lines = [json.loads(line) for line in (SHARED / "english" / "manifest.jsonl").read_text().splitlines()]
    real = [(load_audio(SHARED / "english" / u["audio_filepath"]), u["text"]) for u in lines]
    digit_files = sorted((SHARED / "fsdd" / "recordings").glob("*.wav"))
    engine = EspeakEngine.get()
    pause = np.zeros(int(SAMPLE_RATE * pause_s), dtype=np.float32)
    pieces, words, seconds, k = [], [], 0.0, 0
    while seconds < 60 * minutes:
        if k % 8 == 0:
            wave, text = real[(k // 8) % len(real)]
        elif k % 8 == 4:
            picks = rng.sample(digit_files, 3)
            wave = np.concatenate([np.concatenate([load_audio(p), np.zeros(4000, np.float32)]) for p in picks])
            text = " ".join(DIGITS[int(p.name.split("_")[0])] for p in picks)
        else:
            text = SENTENCES[k % len(SENTENCES)]
            engine.seed(k)
            pcm = engine.synthesize(text, VOICES[k % len(VOICES)], rate=rng.randint(150, 185))
            wave = resample(pcm.astype(np.float32) / 32768.0, engine.sample_rate, SAMPLE_RATE)
            wave *= 0.5 / (np.abs(wave).max() + 1e-8)
        pieces += [wave.astype(np.float32), pause]
        words.append(text)
        seconds += (wave.size + pause.size) / SAMPLE_RATE
        k += 1
    sf.write(out, np.concatenate(pieces), SAMPLE_RATE)
    return str(out), " ".join(words)


COLD_START_FW = """
import sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type="float32", cpu_threads=int(sys.argv[3]))
for segment in model.transcribe(sys.argv[2], beam_size=5, language="en")[0]:
    print(f"[{segment.start:.2f} --> {segment.end:.2f}] {segment.text}", flush=True)
"""


def cold_start(command: list[str], env: dict) -> float:
    """Seconds from starting ``command`` to its first line on standard output (the process then runs to its end)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline()
    seconds = time.perf_counter() - start
    proc.communicate()
    if proc.returncode != 0 or not first.strip():
        raise RuntimeError(f"{command[:3]} failed (exit {proc.returncode})")
    return seconds


def run_long_form(args) -> None:
    """Every model x mode x engine on one long recording, plus each engine's cold start; one JSON line."""
    from asrforge.metrics import wer

    if not SHARED.is_dir():
        sys.exit("--long-form builds its recording from ../shared/data, which is not here")
    asrforge_cli = str(Path(sys.executable).with_name("asrforge"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    modes = [("float32", 0), ("int8", 0), ("float32", args.batch_size or 8), ("int8", args.batch_size or 8)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        audio, reference = long_form_recording(tmp / "long_form.wav", args.minutes)
        import soundfile as sf

        report: dict = {"name": "whisper_vs_peers_long_form", "audio_seconds": round(sf.info(audio).duration, 1),
                        "beam_size": args.beam_size, "threads": args.threads, "models": {}}
        files_json = tmp / "files.json"
        files_json.write_text(json.dumps([audio]))
        jfk = str(SHARED / "english" / "jfk.flac")
        fw_script = tmp / "cold_start_fw.py"
        fw_script.write_text(COLD_START_FW)
        for model in args.model:
            rows = report["models"][model] = {}
            for compute, batch in modes:
                mode = f"{'batched' if batch else 'sequential'} {compute}"
                row = rows[mode] = {}
                for engine, python in (("asrforge", sys.executable), ("faster-whisper", args.peer_python)):
                    out = tmp / "result.json"
                    cmd = [python, __file__, "--model", model, "--beam-size", str(args.beam_size), "--threads",
                           str(args.threads), "--batch-size", str(batch), "--worker", engine, compute,
                           str(files_json), str(out)]
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    if proc.returncode != 0:
                        row[engine] = {"error": proc.stderr.strip().splitlines()[-1:]}
                        continue
                    r = json.loads(out.read_text())
                    hyp = normalize(r["texts"][0])
                    row[engine] = {"seconds": round(r["seconds"], 2), "wer": round(100 * wer([normalize(reference)], [hyp]), 2),
                                   "peak_rss_mb": round(r["peak_rss_mb"])}
                if all("seconds" in row.get(e, {}) for e in ("asrforge", "faster-whisper")):
                    ours, peer = row["asrforge"], row["faster-whisper"]
                    row["time_ratio"] = round(ours["seconds"] / peer["seconds"], 3)
                    row["memory_ratio"] = round(ours["peak_rss_mb"] / peer["peak_rss_mb"], 3)
                    row["wer_delta"] = round(ours["wer"] - peer["wer"], 2)
                print(f"{Path(model).name} {mode}: {json.dumps(row)}", file=sys.stderr)
            rows["cold_start_seconds"] = {
                "asrforge": round(cold_start([asrforge_cli, "transcribe", jfk, "--model", model, "--beam-size", "5",
                                              "--language", "en"], env), 2),
                "faster-whisper": round(cold_start([args.peer_python, str(fw_script), model, jfk, str(args.threads)], env), 2)}
            print(f"{Path(model).name} cold start: {rows['cold_start_seconds']}", file=sys.stderr)
        print(json.dumps(report, ensure_ascii=False))


def long_file(out: Path, fsdd: Path) -> tuple[str, str]:
    """About 55 s that no single window covers: the two sentences, 30 digits from other files, the sentences
    again in reverse order, with short pauses; exercises seeking across 30-s windows."""
    import numpy as np
    import soundfile as sf

    from asrforge_runtime.audio import load_audio

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
    if args.fsdd and fsdd.is_dir():
        for path in sorted(fsdd.glob("*.wav"))[:: max(1, 2000 // args.fsdd)][: args.fsdd]:
            items.append((str(path), DIGITS[int(path.name.split("_")[0])]))
    if not items:
        sys.exit("no audio: pass --manifest M (JSONL with audio_filepath and text), or run beside ../shared/data")
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, nargs="+",
                    help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json); --long-form takes several")
    ap.add_argument("--peer-python", default=sys.executable, help="a Python with faster-whisper installed")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--compute", nargs="+", default=["float32", "int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--manifest", nargs="*", default=[])
    ap.add_argument("--fsdd", type=int, default=40, help="FSDD recordings to add (0: none)")
    ap.add_argument("--long", type=int, default=1, help="1: add one long file made of the other recordings (0: none)")
    ap.add_argument("--batch-size", type=int, default=0, help="N > 0: both engines in batched (VAD) mode")
    ap.add_argument("--long-form", action="store_true", help="the long-recording comparison (see above)")
    ap.add_argument("--minutes", type=float, default=5.0, help="--long-form: the recording's least length")
    ap.add_argument("--worker", nargs=4, metavar=("ENGINE", "COMPUTE", "FILES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        engine, compute, files, out = args.worker
        result = worker(engine, args.model[0], compute, args.beam_size, args.threads, json.loads(Path(files).read_text()),
                        args.batch_size)
        Path(out).write_text(json.dumps(result))
        return
    if args.long_form:
        run_long_form(args)
        return
    if len(args.model) > 1:
        sys.exit("one --model at a time without --long-form")
    args.model = args.model[0]

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
