"""``export``: a Whisper checkpoint or fine-tuning run written for faster-whisper, transformers or openai-whisper."""

from __future__ import annotations

import sys


def add_parsers(sub) -> None:
    e = sub.add_parser("export", help="write a Whisper checkpoint or fine-tuning run for another runtime "
                                      "(CTranslate2/faster-whisper, Hugging Face transformers, openai-whisper)")
    e.add_argument("source", help="a Whisper checkpoint (OpenAI .pt, Hugging Face or CTranslate2 folder) or a "
                                  "Whisper fine-tuning run's folder")
    e.add_argument("--format", required=True, choices=["ctranslate2", "huggingface", "openai"])
    e.add_argument("--quantization", default="float32", choices=["float32", "float16", "int8"],
                   help="weights: float32 (default); float16; int8 (ctranslate2 only)")
    e.add_argument("--out", required=True, help="a new (or empty) folder to write")
    e.add_argument("--tokenizer", help="folder holding tokenizer.json, if not beside the checkpoint")
    e.set_defaults(func=export)


def export(args) -> None:
    from asrforge.export.whisper import export_whisper

    written = export_whisper(args.source, args.format, args.out, args.quantization, args.tokenizer)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    model = written[0] if args.format == "openai" else args.out
    print(f"exported {args.source} as {args.format} ({args.quantization}); asrforge reads it too: --model {model}",
          file=sys.stderr)
