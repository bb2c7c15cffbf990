"""Speaker diarization: DER and speaker counts on conversations built from real recordings of different people.

Each conversation joins turns of 2-4 speakers: turns of FSDD digits (one speaker reading 4 to 40 digits with short
gaps, a few seconds to about 25 s) and, in some conversations, the pieces of the two English recordings (jfk.flac
split at its pauses, LDC93S1.wav whole), with pauses of 0.2-1.0 s between turns; the reference RTTM holds each
turn from its first to its last sample. Scored with pyannote.metrics (DER, collar 0.25 s each side, overlap
excluded; there is none) and the share of conversations whose speaker count is right.

Compared in the same run: asrforge (spectral and agglomerative clustering), the seed's baseline (a new speaker at
every pause over 2 s, alternating between two), and resemblyzer's own front end and embeddings of its partial
utterances with Google's spectralcluster (``--resemblyzer-python``: a venv with resemblyzer and spectralcluster).

    python benchmarks/diarization_der.py --data ../shared/data --conversations 30 [--resemblyzer-python PY]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asrforge_runtime.audio import load_audio
from asrforge.inference.diarization import SPEECH, DiarizeOptions, Diarizer, Turn
from asrforge.inference.rttm import read_rttm, write_rttm
from asrforge.inference.speaker_embedding import load_embedder
from asrforge.inference.vad import SAMPLE_RATE, VadOptions, speech_spans

RESEMBLYZER_PEER = r"""
import json, sys
import numpy as np
from resemblyzer import VoiceEncoder, preprocess_wav
from spectralcluster import SpectralClusterer, refinement
import soundfile as sf
enc = VoiceEncoder("cpu", verbose=False)
out = {}
for path in sys.argv[1:]:
    wav, sr = sf.read(path, dtype="float32")
    # as resemblyzer's diarization demo: embeddings of 1.6-s partials, 16 per second, of the unprocessed recording
    wav = preprocess_wav(wav, source_sr=sr) if sr != 16000 else wav
    _, partials, slices = enc.embed_utterance(wav, return_partials=True, rate=16)
    # spectralcluster's README settings; at least 2 speakers (every conversation here has 2 or more: with 1 it
    # finds one speaker everywhere)
    clusterer = SpectralClusterer(min_clusters=2, max_clusters=8, refinement_options=refinement.RefinementOptions(
        gaussian_blur_sigma=1, p_percentile=0.90, thresholding_soft_multiplier=0.01))
    labels = clusterer.predict(partials)
    centres = [((s.start + s.stop) / 2) / 16000 for s in slices]
    out[path] = [[c, int(l)] for c, l in zip(centres, labels)]
print(json.dumps(out))
"""


def fsdd_speakers(root: Path) -> dict[str, list[Path]]:
    by: dict[str, list[Path]] = {}
    for path in sorted((root / "fsdd").rglob("*.wav")):
        by.setdefault(path.stem.split("_")[1], []).append(path)
    return by


def english_pieces(root: Path) -> dict[str, list[np.ndarray]]:
    """jfk.flac cut at its pauses (a turn each), LDC93S1.wav whole."""
    pieces = {}
    jfk = root / "english" / "jfk.flac"
    if jfk.exists():
        wave = load_audio(jfk)
        spans = speech_spans(wave, VadOptions(min_silence_ms=300, speech_pad_ms=50, max_chunk_s=1e9))
        groups = np.array_split(np.arange(len(spans)), min(3, len(spans)))
        pieces["jfk"] = [wave[spans[g[0]][0]: spans[g[-1]][1]] for g in groups if len(g)]
    ldc = root / "english" / "LDC93S1.wav"
    if ldc.exists():
        pieces["ldc"] = [load_audio(ldc)]
    return pieces


def build_conversation(rng: np.random.Generator, digits: dict[str, list[Path]], english: dict[str, list[np.ndarray]],
                       cache: dict) -> tuple[np.ndarray, list[Turn], int]:
    k = int(rng.integers(2, 5))
    names = list(rng.choice(sorted(digits), size=min(k, len(digits)), replace=False))
    if english and rng.random() < 0.4:          # an English speaker joins (or replaces one) in some conversations
        extra = str(rng.choice(sorted(english)))
        names = names[:-1] + [extra] if len(names) >= 4 else names + [extra]
    pools = {n: list(rng.permutation(len(digits[n]))) for n in names if n in digits}
    english_left = {n: list(english[n]) for n in names if n in english}
    turns_wanted = int(rng.integers(6, 13))
    order: list[str] = []
    for _ in range(turns_wanted):
        choices = [n for n in names if (not order or n != order[-1]) and (n in pools or english_left.get(n))]
        order.append(str(rng.choice(choices)))
    for n in names:                               # every speaker speaks at least once
        if n not in order:
            order.append(n)
    audio, turns, t = [np.zeros(int(0.3 * SAMPLE_RATE), np.float32)], [], 0.3
    for prev, n in zip([None] + order[:-1], order):
        if n == prev:
            continue
        if n in english_left:
            if not english_left[n]:
                continue
            piece = english_left[n].pop(0)
        else:
            count = int(np.exp(rng.uniform(np.log(4), np.log(40))))
            parts = []
            for _ in range(count):
                path = digits[n][pools[n].pop()]
                if path not in cache:
                    cache[path] = load_audio(path)
                parts += [cache[path], np.zeros(int(rng.uniform(0.03, 0.2) * SAMPLE_RATE), np.float32)]
            piece = np.concatenate(parts[:-1])
        turns.append(Turn(round(t, 3), round(t + len(piece) / SAMPLE_RATE, 3), n))
        pause = np.zeros(int(rng.uniform(0.2, 1.0) * SAMPLE_RATE), np.float32)
        audio += [piece, pause]
        t += (len(piece) + len(pause)) / SAMPLE_RATE
    return np.concatenate(audio), turns, len({tr.speaker for tr in turns})


def baseline(wave: np.ndarray) -> list[Turn]:
    """The seed's dummy: a new speaker at every pause over 2 s, alternating between two."""
    spans = speech_spans(wave, VadOptions(max_chunk_s=1e9))
    turns, speaker, last_end = [], 0, None
    for a, b in spans:
        if last_end is not None and (a - last_end) / SAMPLE_RATE > 2.0:
            speaker = 1 - speaker
        turns.append(Turn(a / SAMPLE_RATE, b / SAMPLE_RATE, f"SPEAKER_{speaker + 1}"))
        last_end = b
    return turns


def turns_from_centres(points: list[list], duration: float, speech: list[tuple[int, int]]) -> list[Turn]:
    """The peer's labelled partial centres -> turns changing halfway between centres of different speakers, kept
    to the speech our VAD finds (resemblyzer's own VAD trims silences away, which loses the times), so the two
    differ in embeddings and clustering alone."""
    turns = []
    for i, (c, label) in enumerate(points):
        start = 0.0 if i == 0 else (points[i - 1][0] + c) / 2
        end = duration if i == len(points) - 1 else (c + points[i + 1][0]) / 2
        if turns and turns[-1].speaker == f"S{label}":
            turns[-1].end = end
        else:
            turns.append(Turn(start, end, f"S{label}"))
    kept = []
    for t in turns:
        for a, b in speech:
            start, end = max(t.start, a / SAMPLE_RATE), min(t.end, b / SAMPLE_RATE)
            if end > start:
                kept.append(Turn(start, end, t.speaker))
    return kept


def score(pairs: list[tuple[list[Turn], list[Turn]]]) -> dict:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        a = Annotation()
        for i, t in enumerate(turns):
            a[Segment(t.start, t.end), i] = t.speaker
        return a
    metric = DiarizationErrorRate(collar=0.5, skip_overlap=True)     # pyannote's collar is the total width
    per = [metric(annotation(ref), annotation(hyp)) for ref, hyp in pairs]
    right = [len({t.speaker for t in ref}) == len({t.speaker for t in hyp}) for ref, hyp in pairs]
    return {"der": abs(metric), "der_median": float(np.median(per)), "right_count": float(np.mean(right)),
            "worst": float(np.max(per))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data", help="folder holding fsdd/ and english/")
    p.add_argument("--conversations", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resemblyzer-python", help="a Python with resemblyzer and spectralcluster, for the peer")
    p.add_argument("--rttm-dir", help="also write each conversation's reference and hypothesis RTTM here")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    root = Path(args.data)
    digits = fsdd_speakers(root)
    if not digits:
        sys.exit(f"{root}/fsdd has no recordings: this benchmark needs real speech (see the docstring)")
    english = english_pieces(root)
    rng, cache = np.random.default_rng(args.seed), {}
    convs = [build_conversation(rng, digits, english, cache) for _ in range(args.conversations)]
    hours = sum(len(w) for w, _, _ in convs) / SAMPLE_RATE / 3600
    counts = {k: sum(1 for *_, n in convs if n == k) for k in range(1, 6)}
    print(f"{len(convs)} conversations, {hours * 60:.1f} min, speakers: {counts}")
    embedder = load_embedder("resemblyzer")
    results = {}
    for name, opts in [("asrforge spectral", DiarizeOptions()), ("asrforge agglomerative",
                                                                  DiarizeOptions(method="agglomerative"))]:
        diarizer = Diarizer(embedder, opts)
        t0 = time.perf_counter()
        hyps = [diarizer(w).turns for w, _, _ in convs]
        elapsed = time.perf_counter() - t0
        results[name] = score([(ref, hyp) for (_, ref, _), hyp in zip(convs, hyps)]) | {
            "rtf": elapsed / (hours * 3600)}
        if args.rttm_dir and name == "asrforge spectral":
            out = Path(args.rttm_dir)
            out.mkdir(parents=True, exist_ok=True)
            for i, ((_, ref, _), hyp) in enumerate(zip(convs, hyps)):
                write_rttm(out / f"conv{i:02d}.ref.rttm", f"conv{i:02d}", ref)
                write_rttm(out / f"conv{i:02d}.hyp.rttm", f"conv{i:02d}", hyp)
                assert read_rttm(out / f"conv{i:02d}.hyp.rttm")[f"conv{i:02d}"] == hyp
    t0 = time.perf_counter()
    base = [baseline(w) for w, _, _ in convs]
    results["baseline (pause > 2 s)"] = score([(ref, hyp) for (_, ref, _), hyp in zip(convs, base)]) | {
        "rtf": (time.perf_counter() - t0) / (hours * 3600)}
    if args.resemblyzer_python:
        import soundfile as sf
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, (w, _, _) in enumerate(convs):
                paths.append(str(Path(tmp) / f"conv{i:02d}.wav"))
                sf.write(paths[-1], w, SAMPLE_RATE)
            t0 = time.perf_counter()
            run = subprocess.run([args.resemblyzer_python, "-c", RESEMBLYZER_PEER, *paths], capture_output=True,
                                 text=True)
            elapsed = time.perf_counter() - t0
        if run.returncode:
            print(f"the resemblyzer peer failed:\n{run.stderr[-2000:]}", file=sys.stderr)
        else:
            got = json.loads(run.stdout)
            hyps = [turns_from_centres(got[path], len(w) / SAMPLE_RATE, speech_spans(w, SPEECH))
                    for path, (w, _, _) in zip(paths, convs)]
            results["resemblyzer + spectralcluster"] = score([(ref, hyp) for (_, ref, _), hyp in zip(convs, hyps)]) | {
                "rtf": elapsed / (hours * 3600)}
    print(f"\n{'system':32s} {'DER':>7s} {'median':>7s} {'worst':>7s} {'count right':>12s} {'RTF':>7s}")
    for name, r in results.items():
        print(f"{name:32s} {100 * r['der']:6.2f}% {100 * r['der_median']:6.2f}% {100 * r['worst']:6.1f}% "
              f"{100 * r['right_count']:11.0f}% {r['rtf']:7.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"conversations": len(convs), "minutes": hours * 60,
                                               "speaker_counts": counts, "results": results}, indent=1))


if __name__ == "__main__":
    main()
