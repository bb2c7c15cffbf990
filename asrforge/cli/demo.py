"""``demo``: synthesize a corpus, train a recognizer (BiLSTM-CTC unless --config names another recipe),
evaluate on voices never heard, transcribe a file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from asrforge.cli.args import positive

DEMO_HOURS = 1.5              # of synthetic digits for training (dev and test are added)
DEFAULT_RECIPE = "demo_ctc"


def add_parsers(sub) -> None:
    d = sub.add_parser("demo", help="synthesize a corpus, train, evaluate on unseen voices, transcribe (about 10 min on 2 cores)")
    d.add_argument("--out", default="asrforge-demo", help="working folder (corpus, experiment, reports)")
    d.add_argument("--minutes", type=positive, default=None, help="training budget (default: the recipe's train.max_minutes)")
    d.add_argument("--hours", type=positive, default=None, help="synthetic training hours (default: the demo's)")
    d.add_argument("--config", default=DEFAULT_RECIPE, help="a recipe file or shipped recipe's name (default: demo_ctc)")
    d.add_argument("--json", help="write wer, cer, utts, train_minutes here")
    d.set_defaults(func=lambda args: run_demo(args.out, args.minutes, args.hours, args.json, args.config))


def run_demo(out: str | Path, minutes: float | None = None, hours: float | None = None,
             json_path: str | None = None, config: str | None = None) -> dict:
    from asrforge.cli.evaluate import print_evaluation
    from asrforge.data.manifest import read_manifest
    from asrforge.data.synth import SynthConfig, synthesize_corpus
    from asrforge.inference.transcriber import Transcriber
    from asrforge.recipe import load_recipe, recipe_source
    from asrforge.train.trainer import Trainer

    out = Path(out)
    config = config or DEFAULT_RECIPE
    _, recipe_name = recipe_source(config)       # a recipe that is not there fails before minutes of synthesis
    corpus_cfg = SynthConfig(domain="digits", hours=hours or DEMO_HOURS, seed=0)

    print(f"[1/4] synthesizing {corpus_cfg.hours:g} h of {corpus_cfg.domain} speech with eSpeak NG -> {out / 'corpus'}")
    t0 = time.time()
    summary = synthesize_corpus(out / "corpus", corpus_cfg)
    print(f"      train {summary['train']['utts']} utts / {summary['train']['speakers']} voices, "
          f"test {summary['test']['utts']} utts / {summary['test']['speakers']} held-out voices ({time.time() - t0:.0f}s)")

    overrides = [f"data.train={out / 'corpus' / 'train.jsonl'}", f"data.dev={out / 'corpus' / 'dev.jsonl'}"]
    if minutes is not None:
        overrides.append(f"train.max_minutes={minutes}")
    recipe = load_recipe(config, overrides)
    exp = out / "exp"
    if exp.exists():
        for stale in ("train_log.jsonl", "best.pt", "last.pt"):
            (exp / stale).unlink(missing_ok=True)   # a demo run always trains afresh
    print(f"[2/4] training family {recipe.model.family!r} ({recipe_name}, budget {recipe.train.max_minutes} min) -> {exp}")
    trained = Trainer(recipe, exp).fit()

    print(f"[3/4] evaluating on {summary['test']['speakers']} voices never heard in training")
    transcriber = Transcriber.from_checkpoint(exp / "best.pt")
    test = out / "corpus" / "test.jsonl"
    results = {}
    for beam in (1, recipe.decode.beam_size):
        ev = transcriber.evaluate(test, beam_size=beam)
        print_evaluation(ev, f"held-out voices, {ev.search}")
        results[beam] = ev
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    final = results[recipe.decode.beam_size]
    final.report.write_utterances(report_dir / "utterances.txt")

    print("[4/4] transcribing one held-out file")
    utt = read_manifest(test)[0][0]
    result = transcriber.transcribe(utt.audio_filepath)
    print(f"      {utt.audio_filepath}\n      reference:  {utt.text}\n      hypothesis: {result.text}")
    print("      words: " + (" ".join(f"{w.word}[{w.start:.2f}-{w.end:.2f}s]" for w in result.words)
                             or ("(none recognized)" if transcriber.word_timestamps else
                                 "(none: an attention decoder without a CTC head has no alignment)")))

    s = final.summary()
    figures = {"wer": s["wer"], "cer": s["cer"], "utts": s["utts"], "train_minutes": trained["train_minutes"],
               "greedy_wer": results[1].summary()["wer"], "beam_size": recipe.decode.beam_size,
               "epochs": trained["epochs"], "rtf": s["rtf"]}
    print(f"\nheld-out-voice WER {100 * s['wer']:.2f}%  CER {100 * s['cer']:.2f}%  "
          f"({s['utts']} utterances, {trained['train_minutes']:.1f} min of training); per-utterance results in {report_dir}")
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=1))
    return figures
