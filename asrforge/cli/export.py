"""``export``: a Whisper checkpoint or fine-tuning run written for faster-whisper, transformers or openai-whisper;
an asrforge CTC or transducer model written as ONNX graphs, for asrforge's runtime or for sherpa-onnx."""

from __future__ import annotations

import sys


def add_parsers(sub) -> None:
    e = sub.add_parser("export", help="write a model for another runtime: an asrforge CTC or transducer model as "
                                      "ONNX graphs; a Whisper checkpoint or fine-tuning run for CTranslate2/"
                                      "faster-whisper, Hugging Face transformers or openai-whisper")
    e.add_argument("source", help="an asrforge checkpoint or experiment folder (--format onnx, sherpa-onnx); a "
                                  "Whisper checkpoint (OpenAI .pt, Hugging Face or CTranslate2 folder) or a Whisper "
                                  "fine-tuning run's folder")
    e.add_argument("--format", required=True, choices=["onnx", "sherpa-onnx", "ctranslate2", "huggingface", "openai"],
                   help="onnx: for asrforge-runtime and asrforge itself; sherpa-onnx: the layout sherpa-onnx loads "
                        "(models trained with features.kind: kaldi_fbank)")
    e.add_argument("--quantization", default="float32", choices=["float32", "float16", "int8"],
                   help="weights: float32 (default); float16 (Whisper formats); int8 (onnx, sherpa-onnx: "
                        "onnxruntime's dynamic quantization; ctranslate2)")
    e.add_argument("--out", required=True, help="a new (or empty) folder to write")
    e.add_argument("--tokenizer", help="folder holding tokenizer.json, if not beside the checkpoint")
    e.set_defaults(func=export)


def export(args) -> None:
    if args.format in ("onnx", "sherpa-onnx"):
        from asrforge.extras import require_extra

        require_extra("onnx", f"asrforge export --format {args.format}", "onnx", "onnxruntime")
        if args.format == "onnx":
            from asrforge.export.onnx import export_onnx as write
            use = f"python -m asrforge_runtime transcribe --model {args.out} FILES (or asrforge --model {args.out})"
        else:
            from asrforge.export.sherpa import export_sherpa_onnx as write
            use = "sherpa-onnx's OfflineRecognizer (docs/deploy.md)"
        for path in write(args.source, args.out, args.quantization):
            print(f"wrote {path}", file=sys.stderr)
        print(f"exported {args.source} as {args.format} ({args.quantization}) into {args.out}; run it with {use}",
              file=sys.stderr)
        return
    from asrforge.export.whisper import export_whisper

    written = export_whisper(args.source, args.format, args.out, args.quantization, args.tokenizer)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    model = written[0] if args.format == "openai" else args.out
    print(f"exported {args.source} as {args.format} ({args.quantization}); asrforge reads it too: --model {model}",
          file=sys.stderr)
