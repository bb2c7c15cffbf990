"""``python -m asrforge_runtime`` (also ``asrforge-runtime``): an exported model without PyTorch.

``transcribe --model DIR FILES...``: transcripts printed or written as txt, json, srt, vtt or tsv files; a file that
cannot be read is reported and skipped, the others are still transcribed. ``stream --model DIR FILE|-``: a streaming
model's partial and final events as audio arrives (a file replayed, or raw PCM on standard input). Errors print one
line, never a traceback."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from asrforge_runtime.errors import AsrforgeError
from asrforge_runtime.writers import FORMATS, WRITERS, write_result


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asrforge_runtime",
                                description="Run a model exported by `asrforge export --format onnx`, without PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="transcribe audio files with an exported model")
    t.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3, ...)")
    t.add_argument("--model", required=True, help="a folder `asrforge export --format onnx` wrote")
    t.add_argument("--output-format", choices=[*FORMATS, "all"], default="txt")
    t.add_argument("--output-dir", help="write <audio stem>.<format> files here instead of printing")
    t.add_argument("--beam-size", type=_positive_int, help="default: the training recipe's decode.beam_size; 1: greedy")
    t.add_argument("--max-segment-s", type=float, help="a longer file is cut into pieces of at most this many seconds "
                   "at its quietest moments (default: 20)")
    t.add_argument("--threads", type=_positive_int, help="onnxruntime threads (default: every core)")
    lm = t.add_mutually_exclusive_group()
    lm.add_argument("--lm", help="an ARPA word n-gram to fuse into beam search (default: the folder's lm.arpa, if any)")
    lm.add_argument("--no-lm", action="store_true", help="decode without an n-gram LM")
    t.add_argument("--lm-weight", type=float)
    t.add_argument("--word-bonus", type=float)
    t.set_defaults(func=transcribe)
    s = sub.add_parser("stream", help="stream audio through an exported streaming model: partial and final events")
    s.add_argument("source", help="an audio file (replayed as fast as it decodes), or - for raw PCM on standard input")
    s.add_argument("--model", required=True, help="a folder exported from a model trained with model.streaming")
    s.add_argument("--format", dest="encoding", default="s16le", choices=["s16le", "f32le"],
                   help="with -: the samples' encoding (mono)")
    s.add_argument("--rate", type=_positive_int, default=16000, help="with -: samples per second (default 16000)")
    s.add_argument("--chunk-ms", type=float, default=320.0, help="audio decoded at a time (default 320 ms)")
    s.add_argument("--beam-size", type=_positive_int, help="default: the training recipe's decode.beam_size")
    s.add_argument("--endpoint-silence", type=float, help="seconds of silence after text that end an utterance "
                   "(default 0.6)")
    s.add_argument("--max-utterance", type=float, default=20.0, help="seconds an utterance lasts at most (default 20)")
    s.add_argument("--output-format", default="text", choices=["text", "jsonl"],
                   help="text: each final on a line; jsonl: every event as a JSON line")
    s.add_argument("--threads", type=_positive_int, help="onnxruntime threads (default: every core)")
    s.set_defaults(func=stream)
    return p


def _pieces(args, samples_per_piece: int):
    """The source's audio, a piece at a time: ``(samples, rate)``."""
    if args.source == "-":
        width = 2 if args.encoding == "s16le" else 4
        dtype, scale = (np.int16, 1 / 32768) if args.encoding == "s16le" else (np.float32, 1.0)
        size = max(1, int(args.rate * args.chunk_ms / 1000)) * width
        leftover = b""
        while True:
            data = sys.stdin.buffer.read(size)
            if not data:
                return
            data, leftover = leftover + data, b""
            whole = len(data) - len(data) % width
            data, leftover = data[:whole], data[whole:]
            yield np.frombuffer(data, dtype=dtype).astype(np.float32) * scale, args.rate
    else:
        from asrforge_runtime.audio import SAMPLE_RATE, load_audio

        wave = load_audio(args.source)
        for start in range(0, len(wave), samples_per_piece):
            yield wave[start: start + samples_per_piece], SAMPLE_RATE


def stream(args) -> int:
    import json
    from dataclasses import replace

    from asrforge_runtime.native_streaming import NATIVE_RULES, NativeStreamingRecognizer
    from asrforge_runtime.recognizer import OnnxRecognizer

    recognizer = OnnxRecognizer.load(args.model, args.threads, lm=False)
    if not recognizer.streaming:
        raise AsrforgeError(f"{args.model} holds no streaming step (encoder_step.onnx): export a model trained with "
                            "model.streaming, or transcribe the file with `transcribe`")
    rules = replace(NATIVE_RULES, max_utterance_s=args.max_utterance,
                    silence_after_text_s=args.endpoint_silence or NATIVE_RULES.silence_after_text_s)
    options = {"beam_size": args.beam_size} if args.beam_size else {}
    engine = NativeStreamingRecognizer(recognizer, rules, chunk_ms=args.chunk_ms, **options)
    s = engine.create_stream()

    def show(events) -> None:
        for e in events:
            if args.output_format == "jsonl":
                print(json.dumps(e.to_dict(), ensure_ascii=False), flush=True)
            elif e.type == "final":
                print(e.text, flush=True)

    try:
        for samples, rate in _pieces(args, int(16000 * args.chunk_ms / 1000)):
            s.accept_waveform(samples, rate)
            engine.decode_streams([s])
            show(s.pop_events())
    except KeyboardInterrupt:
        pass
    s.finish()
    engine.decode_streams([s])
    show(s.pop_events())
    return 0


def transcribe(args) -> int:
    from asrforge_runtime.recognizer import OnnxRecognizer

    if args.output_format == "all" and not args.output_dir:
        raise AsrforgeError("--output-format all writes files: give --output-dir")
    lm = False if args.no_lm else (args.lm or True)
    recognizer = OnnxRecognizer.load(args.model, args.threads, lm, args.lm_weight, args.word_bonus)
    options = {"beam_size": args.beam_size, "max_segment_s": args.max_segment_s}
    recognizer.check_options(**options)
    failed = 0
    for n, path in enumerate(args.audio, 1):
        started = time.perf_counter()
        try:
            result = recognizer.transcribe(path, **options)
        except AsrforgeError as e:
            failed += 1
            print(f"skipped {path}: {e}", file=sys.stderr)
            continue
        if args.output_dir:
            written = write_result(result, Path(path).stem, args.output_dir, args.output_format)
            print(f"[{n}/{len(args.audio)}] {path} -> {', '.join(map(str, written))} "
                  f"({result.duration:.1f} s of audio in {time.perf_counter() - started:.2f} s)", file=sys.stderr)
        else:
            text = WRITERS[args.output_format](result)
            sys.stdout.write((f"==> {path} <==\n" if len(args.audio) > 1 and args.output_format == "txt" else "")
                             + text + ("" if text.endswith("\n") else "\n"))
    if failed:
        print(f"{failed} of {len(args.audio)} file(s) could not be transcribed (see above)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AsrforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
