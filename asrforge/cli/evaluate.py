"""``evaluate``: WER/CER of any model on a manifest, with an sclite-style table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asrforge.cli.args import DECODE_OVERRIDE_HELP, add_lm_arguments, count, decode_overrides, lm_options


def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="WER/CER of a model on a manifest")
    e.add_argument("overrides", nargs="*", metavar="decode.KEY=VALUE", help=DECODE_OVERRIDE_HELP)
    e.add_argument("--model", required=True, help="checkpoint file or experiment folder, or a Whisper checkpoint")
    e.add_argument("--manifest", required=True)
    e.add_argument("--beam-size", type=count, default=None,
                   help="default: the recipe's decode.beam_size (with its LM); Whisper: greedy. 1 = greedy")
    e.add_argument("--json", help="write wer, cer, utts, sub, del, ins, rtf here")
    e.add_argument("--report-dir", help="write per-utterance results (utterances.txt, utterances.jsonl) here")
    e.add_argument("--device", default="cpu")
    e.add_argument("--language", help="Whisper: language of the manifest (default: English for .en models, "
                   "detected per utterance otherwise)")
    e.add_argument("--tokenizer", help="Whisper: folder holding tokenizer.json, if not beside the weights")
    add_lm_arguments(e)
    e.set_defaults(func=evaluate, parser=e, trailing="overrides")


def evaluate(args) -> dict:
    from asrforge.inference import load_model

    model = load_model(args.model, args.device, tokenizer=args.tokenizer, lm_options=lm_options(args))
    options = {"beam_size": args.beam_size, "language": args.language, **decode_overrides(args.overrides)}
    ev = model.evaluate(args.manifest, **{k: v for k, v in options.items() if v is not None})
    ev.require_scored(args.manifest)
    for note in ev.notes:
        print(f"asrforge: {note}", file=sys.stderr)
    print_evaluation(ev, f"{args.manifest} ({ev.search})")
    summary = {**ev.summary(), "model": str(args.model), "manifest": str(args.manifest)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.report_dir:
        d = Path(args.report_dir)
        d.mkdir(parents=True, exist_ok=True)
        ev.report.write_utterances(d / "utterances.txt")
        ev.report.write_jsonl(d / "utterances.jsonl")
        (d / "summary.txt").write_text(ev.report.table() + "\n")
        print(f"per-utterance results in {d}/utterances.txt")
    return summary


def print_evaluation(ev, title: str) -> None:
    from asrforge.inference.evaluate import RECORDING_S

    s = ev.summary()
    print(f"\n{title}")
    print(ev.report.table())
    print(f"WER {100 * s['wer']:.2f}%  (S={s['sub']} D={s['del']} I={s['ins']} over {s['words']} words)   "
          f"CER {100 * s['cer']:.2f}%   utterances {s['utts']}   RTF {s['rtf']:.4f}")
    if ev.long_form:
        print(f"  {ev.long_form} recording(s) longer than {RECORDING_S:g} s were decoded as `asrforge transcribe` "
              "decodes them: cut at their pauses, the pieces' texts joined")
    conf = ev.report.confusions(5)
    for kind in ("substitutions", "deletions", "insertions"):
        if conf[kind]:
            print(f"  top {kind}: " + ", ".join(f"{k} ({n})" for k, n in conf[kind]))
    if ev.bad:
        print(f"  skipped {len(ev.bad)} unusable item(s), not scored:")
        for b in ev.bad[:5]:
            print(f"    {b.id}: {b.reason}")
