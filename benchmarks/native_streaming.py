"""A streaming asrforge model (``model.streaming: true``) at real-time pace: latency, accuracy, streams held.

    python benchmarks/native_streaming.py --streaming EXP/rnnt_streaming --offline EXP/rnnt \
        --manifest CORPUS/test.jsonl [--utts 60] [--pause 1.0] [--beam 1] [--streams 1 4 8 16]

The demo corpus's held-out voices (``asrforge synth``; the manifest's utterances joined with ``--pause`` seconds
of silence between them, as people pause between sentences) are replayed in 100-ms chunks at the pace they were
spoken through :class:`asrforge_runtime.native_streaming.NativeStreamingRecognizer`, as 1, 4, 8 ... streams at
once in one engine (their chunks batched in one encoder call). Per row it prints one JSON line: the WER of the
finals against the reference; the latency of each final (arrival from the start of the replay minus the end time
of the words it covers, as streaming_latency.py measures it, and minus the end of the utterance's audio) and of
the first partial of each utterance (arrival minus the start of the utterance's audio), median and p90; seconds of decoding per second of audio; how late a chunk was taken in at worst (``max_lag_s``:
real time is held when this stays under a chunk or two). Then the manifest's WER decoded offline by the streaming
model (the same as streamed, utterance by utterance: its contract) and by ``--offline``, the same recipe trained
with a bidirectional encoder and utterance CMVN: the price of streaming.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_latency import SR, quantiles, run_engine, summary  # noqa: E402


def joined(manifest: Path, utts: int, pause: float) -> tuple[np.ndarray, str, list[tuple[float, float]]]:
    """The manifest's first ``utts`` utterances with ``pause`` seconds of silence before, between and after them
    -> the audio, the reference, and where each utterance's audio lies (seconds)."""
    from asrforge.data.manifest import load_utterance, read_manifest

    rows = read_manifest(manifest)[0][:utts]
    gap = np.zeros(int(pause * SR), np.float32)
    parts, spans, at = [], [], 0
    for u in rows:
        audio = load_utterance(u)
        parts += [gap, audio]
        spans.append(((at + len(gap)) / SR, (at + len(gap) + len(audio)) / SR))
        at += len(gap) + len(audio)
    return np.concatenate(parts + [gap]), " ".join(u.text for u in rows), spans


def audio_latencies(events: list[tuple[float, dict]], spans: list[tuple[float, float]]) -> dict:
    """Latencies against the audio itself: each final's arrival minus the end of the utterance audio it overlaps
    most (a file's end: at or after its last word), and each utterance's first partial's arrival minus the start of
    that audio (at or before its first word)."""
    def span_of(start: float, end: float) -> tuple[float, float]:
        return max(spans, key=lambda sp: min(end, sp[1]) - max(start, sp[0]))

    finals, partials, first = [], [], None
    for arrived, e in events:
        if e["type"] == "partial" and first is None and e["text"]:
            first = (arrived, e)
        elif e["type"] == "final":
            start, end = span_of(e["start"], e["end"])
            finals.append(arrived - end)
            if first is not None:
                partials.append(first[0] - start)
            first = None
    return {"final_after_audio_end_s": quantiles(finals), "first_partial_after_audio_start_s": quantiles(partials)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streaming", required=True, help="an experiment folder or checkpoint with model.streaming")
    ap.add_argument("--offline", help="the same recipe trained offline, for the price of streaming")
    ap.add_argument("--manifest", required=True, help="held-out utterances (the demo corpus's test.jsonl)")
    ap.add_argument("--utts", type=int, default=60)
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--chunk-ms", type=float, default=320)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from asrforge_runtime.native_streaming import NativeStreamingRecognizer
    from asrforge.inference.recognizer import load_model

    torch.set_num_threads(args.threads)
    recognizer = load_model(args.streaming)
    engine = NativeStreamingRecognizer(recognizer, chunk_ms=args.chunk_ms, beam_size=args.beam)
    wave, reference, spans = joined(Path(args.manifest), args.utts, args.pause)
    rows = []
    for n in args.streams:
        events, extra = run_engine(engine, wave, n)
        extra.update(audio_latencies(events, spans))
        rows.append(summary(f"asrforge native, beam {args.beam}", events, reference, None, extra))
        print(json.dumps(rows[-1]), flush=True)
    def manifest_wer(model) -> float:
        return round(100 * model.evaluate(args.manifest, progress=False, beam_size=args.beam).summary()["wer"], 2)

    offline = {"streaming_model": manifest_wer(recognizer)}
    if args.offline:
        offline["offline_recipe"] = manifest_wer(load_model(args.offline))
    print(json.dumps({"name": "native_streaming", "streaming": args.streaming, "offline": args.offline,
                      "audio_seconds": round(len(wave) / SR, 1), "utts": args.utts, "beam": args.beam,
                      "chunk_ms": args.chunk_ms, "manifest_wer": offline, "rows": rows}))


if __name__ == "__main__":
    main()
