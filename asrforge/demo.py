"""`asrforge demo`: synthesize a corpus, train a recognizer (BiLSTM-CTC unless --config names another recipe),
evaluate on voices never heard, transcribe a file."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from asrforge.data.manifest import read_manifest
from asrforge.data.synth import SynthConfig, synthesize_corpus
from asrforge.errors import ConfigError
from asrforge.inference.commands import evaluate_manifest, print_evaluation, search_description
from asrforge.inference.transcriber import Transcriber
from asrforge.recipe import load_recipe
from asrforge.train.trainer import Trainer

DEMO_CORPUS = SynthConfig(domain="digits", hours=1.5, seed=0)
DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "demo_ctc.yaml"


def run_demo(out: str | Path, minutes: float | None = None, hours: float | None = None,
             json_path: str | None = None, config: str | None = None) -> dict:
    out = Path(out)
    recipe_path = Path(config) if config else DEFAULT_RECIPE
    if not recipe_path.is_file():
        raise ConfigError(f"demo recipe {recipe_path} not found; pass --config PATH/demo_ctc.yaml (it ships in the repository's configs/)")
    corpus_cfg = replace(DEMO_CORPUS, hours=hours) if hours else DEMO_CORPUS

    print(f"[1/4] synthesizing {corpus_cfg.hours:g} h of {corpus_cfg.domain} speech with eSpeak NG -> {out / 'corpus'}")
    t0 = time.time()
    summary = synthesize_corpus(out / "corpus", corpus_cfg)
    print(f"      train {summary['train']['utts']} utts / {summary['train']['speakers']} voices, "
          f"test {summary['test']['utts']} utts / {summary['test']['speakers']} held-out voices ({time.time() - t0:.0f}s)")

    overrides = [f"data.train={out / 'corpus' / 'train.jsonl'}", f"data.dev={out / 'corpus' / 'dev.jsonl'}"]
    if minutes is not None:
        overrides.append(f"train.max_minutes={minutes}")
    recipe = load_recipe(recipe_path, overrides)
    exp = out / "exp"
    if exp.exists():
        for stale in ("train_log.jsonl", "best.pt", "last.pt"):
            (exp / stale).unlink(missing_ok=True)   # a demo run always trains afresh
    print(f"[2/4] training family {recipe.model.family!r} ({recipe_path.name}, budget {recipe.train.max_minutes} min) -> {exp}")
    trained = Trainer(recipe, exp).fit()

    print(f"[3/4] evaluating on {summary['test']['speakers']} voices never heard in training")
    transcriber = Transcriber.from_checkpoint(exp / "best.pt")
    test = out / "corpus" / "test.jsonl"
    results = {}
    for beam in (1, recipe.decode.beam_size):
        ev = evaluate_manifest(transcriber, test, beam)
        print_evaluation(ev, f"held-out voices, {search_description(transcriber, beam)}")
        results[beam] = ev
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    final = results[recipe.decode.beam_size]
    final.report.write_utterances(report_dir / "utterances.txt")

    print("[4/4] transcribing one held-out file")
    utt = read_manifest(test)[0][0]
    result = transcriber.transcribe(utt.audio_filepath)[0]
    print(f"      {utt.audio_filepath}\n      reference:  {utt.text}\n      hypothesis: {result.text}")
    print("      words: " + (" ".join(f"{w.word}[{w.start:.2f}-{w.end:.2f}s]" for w in result.words)
                             or "(none: an attention decoder without a CTC head has no alignment)"))

    s = final.summary()
    figures = {"wer": s["wer"], "cer": s["cer"], "utts": s["utts"], "train_minutes": trained["train_minutes"],
               "greedy_wer": results[1].summary()["wer"], "beam_size": recipe.decode.beam_size,
               "epochs": trained["epochs"], "rtf": s["rtf"]}
    print(f"\nheld-out-voice WER {100 * s['wer']:.2f}%  CER {100 * s['cer']:.2f}%  "
          f"({s['utts']} utterances, {trained['train_minutes']:.1f} min of training); per-utterance results in {report_dir}")
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=1))
    return figures
