"""``evaluate``: WER/CER of any model on a manifest, with an sclite-style table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asrforge.cli.args import DECODE_OVERRIDE_HELP, add_lm_arguments, count, decode_overrides, lm_options
from asrforge.errors import ConfigError
from asrforge.significance import RESAMPLES, report_intervals
from asrforge.text.scoring import NORMALIZERS


def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="WER/CER of a model on a manifest")
    e.add_argument("overrides", nargs="*", metavar="decode.KEY=VALUE", help=DECODE_OVERRIDE_HELP)
    e.add_argument("--model", required=True, help="checkpoint file or experiment folder, or a Whisper checkpoint")
    e.add_argument("--manifest", required=True)
    e.add_argument("--beam-size", type=count, default=None,
                   help="default: the recipe's decode.beam_size (with its LM); Whisper: greedy. 1 = greedy")
    e.add_argument("--json", help="write wer, cer (with wer_ci, cer_ci), utts, sub, del, ins, rtf and every utterance's "
                   "scoring (utterances) here; `asrforge compare` reads two such files")
    e.add_argument("--bootstrap", type=int, default=RESAMPLES, metavar="N",
                   help=f"resamples of the 95%% bootstrap intervals of WER and CER (default {RESAMPLES}; 0: none)")
    e.add_argument("--report", metavar="report.html",
                   help="write one self-contained HTML page: the summary, WER by speaker and duration, the top errors, "
                   "every utterance aligned (sortable), with audio players")
    e.add_argument("--report-dir", help="write per-utterance results (utterances.txt, utterances.jsonl) here")
    e.add_argument("--device", default="cpu")
    e.add_argument("--language", help="Whisper: language of the manifest (default: English for .en models, "
                   "detected per utterance otherwise)")
    e.add_argument("--tokenizer", help="Whisper: folder holding tokenizer.json, if not beside the weights")
    e.add_argument("--normalizer", choices=NORMALIZERS, default=None,
                   help="what references and hypotheses are scored after: basic (the model's own normalization), "
                   "whisper_english (as Whisper's paper scores English), whisper_basic; default whisper_english for "
                   "English with Whisper checkpoints, basic otherwise")
    add_lm_arguments(e)
    e.set_defaults(func=evaluate, parser=e, trailing="overrides")


def evaluate(args) -> dict:
    from asrforge.inference import load_model

    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap takes a number of resamples, 0 or more; got {args.bootstrap}")
    model = load_model(args.model, args.device, tokenizer=args.tokenizer, lm_options=lm_options(args))
    options = {"beam_size": args.beam_size, "language": args.language, "normalizer": args.normalizer,
               **decode_overrides(args.overrides)}
    ev = model.evaluate(args.manifest, **{k: v for k, v in options.items() if v is not None})
    title = f"{args.model} on {args.manifest}"
    if args.report and not ev.report.utts:          # a page that says so, then the error
        _write_page(args, ev, {}, title)
    ev.require_scored(args.manifest)
    for note in ev.notes:
        print(f"asrforge: {note}", file=sys.stderr)
    intervals = report_intervals(ev.report, args.bootstrap)
    print_evaluation(ev, f"{args.manifest} ({ev.search}), scored after the {ev.normalizer} normalizer", intervals)
    summary = {**ev.summary(), **intervals, "bootstrap": args.bootstrap, "model": str(args.model),
               "manifest": str(args.manifest)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**summary, "utterances": ev.report.utterance_rows()}, indent=1))
    if args.report:
        print(f"report: {_write_page(args, ev, summary, title)}")
    if args.report_dir:
        d = Path(args.report_dir)
        d.mkdir(parents=True, exist_ok=True)
        ev.report.write_utterances(d / "utterances.txt")
        ev.report.write_jsonl(d / "utterances.jsonl")
        (d / "summary.txt").write_text(ev.report.table() + "\n")
        print(f"per-utterance results in {d}/utterances.txt")
    return summary


def _write_page(args, ev, summary: dict, title: str) -> Path:
    from asrforge.data.manifest import read_manifest
    from asrforge.html_report import write_html_report

    audio = {}
    for u in read_manifest(args.manifest)[0]:
        audio.setdefault(u.id, (u.audio_filepath, u.duration))
    return write_html_report(args.report, ev.report, summary, audio, title, [(b.id, b.reason) for b in ev.bad])


def _interval(ci) -> str:
    return "" if ci is None else f" [95% CI {100 * ci[0]:.2f}-{100 * ci[1]:.2f}]"


def print_evaluation(ev, title: str, intervals: dict | None = None) -> None:
    from asrforge.inference.evaluate import RECORDING_S

    s = ev.summary()
    intervals = intervals or {}
    print(f"\n{title}")
    print(ev.report.table())
    print(f"WER {100 * s['wer']:.2f}%{_interval(intervals.get('wer_ci'))}  (S={s['sub']} D={s['del']} I={s['ins']} "
          f"over {s['words']} words)   CER {100 * s['cer']:.2f}%{_interval(intervals.get('cer_ci'))}   "
          f"utterances {s['utts']}   RTF {s['rtf']:.4f}")
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
