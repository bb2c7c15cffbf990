"""``python -m asrforge_runtime transcribe --model DIR FILES...`` (also ``asrforge-runtime``): an exported model's
transcripts without PyTorch, printed or written as txt, json, srt, vtt or tsv files. A file that cannot be read is
reported and skipped; the others are still transcribed. Errors print one line, never a traceback."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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
    return p


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
        return transcribe(args)
    except AsrforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
