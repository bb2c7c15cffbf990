"""FSDD held-out-speaker WER: for each speaker, train on the other three and evaluate on the held-out one.
Reads ../shared/data/fsdd by default (not part of a user's clone: pass --fsdd).

    python benchmarks/fsdd_heldout.py [--fsdd PATH] [--speakers george jackson] [--epochs 60] [--out DIR] [--adapt]
        [--pauses 0.5] [-- overrides ...]
    python benchmarks/fsdd_heldout.py --eval-only --stats-utts 1 5 20 [--out DIR]   # score trained models again
    python benchmarks/fsdd_heldout.py --whisper PATH/TO/whisper [--train-utts 300] [--dev-utts 60] [--epochs 2]

The first trains the fsdd_ctc recipe from scratch and scores best.pt and last.pt, with the recipe's word
n-gram LM and without it (`_nolm`), and with --adapt also best.pt adapted to the held-out speaker's untranscribed
test recordings by self-training (`_adapted`, asrforge adapt: transductive, it sees the test audio but no text);
--eval-only builds that LM for models trained before the recipe had one. Its speaker CMVN pools the held-out speaker's statistics
over all 500 of their (unlabeled) test recordings; --stats-utts K also scores each recording with statistics
from only K recordings of the speaker (itself and K-1 others at random), as a user with a few recordings of a
new voice would have. FSDD's recordings are cut to the word; --pauses S also scores best.pt on the
held-out speaker's recordings with S seconds of noise 40 dB under the speech before and after each
(`_paused`), as people's recordings have. The second fine-tunes a local Whisper checkpoint with
the fsdd_whisper recipe on a random subset of the three speakers' recordings and also scores the
checkpoint as it was, before fine-tuning. Prints one JSON line with each speaker's WER/CER and the mean.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from asrforge_runtime.audio import SAMPLE_RATE, write_audio  # noqa: E402
from asrforge.data.importers import prepare  # noqa: E402
from asrforge.data.manifest import Utterance, load_utterance, read_manifest, write_manifest  # noqa: E402
from asrforge.features.cmvn import CMVNAccumulator  # noqa: E402
from asrforge.decoding.kneser_ney import write_lm  # noqa: E402
from asrforge.inference import load_model  # noqa: E402
from asrforge.inference.transcriber import Transcriber, recipe_lm_file  # noqa: E402
from asrforge.metrics import ErrorReport  # noqa: E402
from asrforge.recipe import load_recipe  # noqa: E402
from asrforge.text import Normalizer  # noqa: E402
from asrforge.train.adapt import ADAPTED, AdaptConfig, adapt  # noqa: E402
from asrforge.train.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    ap.add_argument("--speakers", nargs="+", default=["george", "jackson", "lucas", "nicolas"])
    ap.add_argument("--epochs", type=int, help="default: the recipe's (60 from scratch, 2 for --whisper)")
    ap.add_argument("--out", default="exp/fsdd-heldout")
    ap.add_argument("--extra-train", nargs="*", default=[], help="more training manifests (e.g. synthetic digits)")
    ap.add_argument("--eval-only", action="store_true", help="score the models already trained in --out")
    ap.add_argument("--stats-utts", nargs="*", type=int, default=[],
                    help="speaker CMVN: also score with statistics pooled over only this many of the speaker's recordings")
    ap.add_argument("--adapt", action="store_true",
                    help="also adapt best.pt to each held-out speaker's untranscribed test audio (asrforge adapt) and score it")
    ap.add_argument("--pauses", type=float, default=0.0,
                    help="also score best.pt on the test recordings with this many seconds of quiet noise around each")
    ap.add_argument("--whisper", help="fine-tune this Whisper checkpoint (the fsdd_whisper recipe) instead")
    ap.add_argument("--train-utts", type=int, default=0, help="with --whisper: train on this many random recordings (0: all)")
    ap.add_argument("--dev-utts", type=int, default=0, help="with --whisper: pick the best epoch on this many (0: all)")
    ap.add_argument("--skip-before", action="store_true", help="with --whisper: do not score the checkpoint before fine-tuning")
    ap.add_argument("overrides", nargs="*", help="recipe overrides, e.g. augment.speed_factors=[0.8,1.0,1.2]")
    args = ap.parse_args()
    swallowed = [x for x in args.speakers + args.extra_train if "=" in x]
    if swallowed:   # nargs lists take every following word: an override there would be read as a speaker or file
        sys.exit(f"{swallowed[0]} looks like a recipe override: put overrides after `--`, e.g. "
                 "--speakers george -- augment.vtlp=[0.9,1.1]")
    if not Path(args.fsdd).is_dir():
        sys.exit(f"FSDD not found at {args.fsdd}; pass --fsdd PATH (the folder holding recordings/)")
    results = {}
    for speaker in args.speakers:
        data, exp = Path(args.out) / f"data-{speaker}", Path(args.out) / f"exp-{speaker}"
        prepare("fsdd", args.fsdd, data, holdout_speakers=(speaker,), progress=False)
        if args.whisper:
            results[speaker] = finetune_whisper(args, data, exp)
            continue
        recipe = load_recipe("fsdd_ctc",
                             [f"data.train=[{','.join([str(data / 'train.jsonl'), *args.extra_train])}]", f"data.dev={data / 'dev.jsonl'}",
                              "train.max_minutes=null", *([f"train.epochs={args.epochs}"] if args.epochs else []), *args.overrides])
        minutes = None if args.eval_only else Trainer(recipe, exp).fit()["train_minutes"]
        lm = recipe_lm_file(recipe, exp / "best.pt")
        if args.eval_only and lm is not None and not lm.is_file():
            # models trained before the recipe had an LM: build it from the same transcripts training would use
            normalizer = Normalizer(recipe.text)
            write_lm([normalizer(u.text) for m in recipe.data.train for u in read_manifest(m)[0]], recipe.lm.order, lm)
        scores = {}
        # best.pt is picked on dev recordings of the training speakers; last.pt is the final epoch's model
        for name, checkpoint in (("", exp / "best.pt"), ("_last", exp / "last.pt")):
            for suffix, use_lm in (("", lm or False), ("_nolm", False)) if lm else (("", False),):
                t = Transcriber.from_checkpoint(checkpoint, lm=use_lm, closed_vocabulary=bool(use_lm) and recipe.lm.closed_vocabulary)
                scores[name + suffix] = t.evaluate(data / "test.jsonl", progress=False).summary()
        if args.pauses:
            t = Transcriber.from_checkpoint(exp / "best.pt", lm=lm or False,
                                            closed_vocabulary=bool(lm) and recipe.lm.closed_vocabulary)
            paused = with_pauses(data / "test.jsonl", args.pauses, data / "paused")
            scores["_paused"] = t.evaluate(paused, progress=False).summary()
        s = scores[""]
        results[speaker] = {"wer": s["wer"], "cer": s["cer"], "utts": s["utts"], "epochs": recipe.train.epochs, "train_minutes": minutes,
                            **{f"wer{k}": v["wer"] for k, v in scores.items() if k}}
        if args.adapt:
            # self-training on the held-out speaker's test audio, transcripts unseen (asrforge adapt)
            lm_options = {"lm": lm or False, "closed_vocabulary": bool(lm) and recipe.lm.closed_vocabulary}
            adapted = adapt(Transcriber.from_checkpoint(exp / "best.pt", **lm_options), data / "test.jsonl", exp / "adapted",
                            AdaptConfig(), progress=False)
            t = Transcriber.from_checkpoint(exp / "adapted" / ADAPTED, **lm_options)
            scores["_adapted"] = t.evaluate(data / "test.jsonl", progress=False).summary()
            results[speaker]["wer_adapted"] = scores["_adapted"]["wer"]
            results[speaker]["adapt_minutes"] = adapted["minutes"]
        print(f"held out {speaker}: " + "  ".join(f"WER{k} {100 * v['wer']:.2f}%" for k, v in scores.items()), file=sys.stderr)
        transcriber = Transcriber.from_checkpoint(exp, lm=lm or False)
        for k in args.stats_utts:
            wer = wer_with_few_recordings(transcriber, data / "test.jsonl", k, recipe.decode.beam_size)
            results[speaker][f"wer_stats_from_{k}"] = wer
            print(f"held out {speaker}, speaker statistics from {k} recording(s): WER {100 * wer:.2f}%", file=sys.stderr)
    mean = sum(r["wer"] for r in results.values()) / len(results)
    means = {f"mean_wer_stats_from_{k}": sum(r[f"wer_stats_from_{k}"] for r in results.values()) / len(results)
             for k in args.stats_utts}
    for key in ("wer_last", "wer_nolm", "wer_last_nolm", "wer_adapted", "wer_paused"):
        if all(key in r for r in results.values()):
            means[f"mean_{key}"] = sum(r[key] for r in results.values()) / len(results)
    print(json.dumps({"name": "fsdd_heldout", "whisper": args.whisper, "train_utts": args.train_utts,
                      "epochs": args.epochs, "extra_train": args.extra_train, "pauses_s": args.pauses,
                      "overrides": args.overrides, "speakers": results,
                      "mean_wer": mean, **means, "machine": machine()}))


def wer_with_few_recordings(transcriber: Transcriber, manifest: Path, k: int, beam_size: int, seed: int = 0) -> float:
    """WER when each recording is normalized with statistics pooled over itself and k-1 other recordings of its
    speaker, drawn at random (k=1: the recording alone, i.e. per-utterance CMVN)."""
    utts, _ = read_manifest(manifest)
    waves = [load_utterance(u) for u in utts]
    raw = [transcriber.features.unnormalized(w) for w in waves]
    raw_stats = [transcriber.features.statistics_frames(w) for w in waves]
    by_speaker: dict[str | None, list[int]] = {}
    for i, u in enumerate(utts):
        by_speaker.setdefault(u.speaker, []).append(i)
    rng, report = random.Random(seed), ErrorReport()
    for i, u in enumerate(utts):
        others = [j for j in by_speaker[u.speaker] if j != i]
        acc = CMVNAccumulator()
        for j in [i, *rng.sample(others, min(k - 1, len(others)))]:
            acc.add(raw_stats[j])
        feats = acc.stats().apply(raw[i])[None]
        hyp = transcriber.decode_text(feats, torch.tensor([feats.shape[1]]), transcriber.decode_config(beam_size))[0]
        report.add(u.id, transcriber.normalizer(u.text), hyp, u.speaker)
    return report.summary()["wer"]


def with_pauses(manifest: Path, seconds: float, out: Path, below_db: float = 40.0, seed: int = 0) -> Path:
    """A copy of ``manifest`` whose recordings have ``seconds`` of white noise ``below_db`` dB under their RMS
    before and after them (WAV files in ``out``); the transcripts are the same."""
    rng, rows = np.random.default_rng(seed), []
    out.mkdir(parents=True, exist_ok=True)
    for u in read_manifest(manifest)[0]:
        wave = load_utterance(u)
        level = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) * 10 ** (-below_db / 20)
        pause = lambda: (level * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        padded = np.concatenate([pause(), wave, pause()])
        write_audio(out / f"{u.id}.wav", padded)
        rows.append(Utterance(str(out / f"{u.id}.wav"), padded.size / SAMPLE_RATE, u.text, speaker=u.speaker, id=u.id))
    write_manifest(out / "test.jsonl", rows)
    return out / "test.jsonl"


def subset(manifest: Path, n: int, out: Path) -> Path:
    """``n`` random lines of ``manifest`` (all of them if n is 0), seeded, so every run sees the same ones."""
    lines = manifest.read_text().splitlines()
    if n:
        lines = random.Random(0).sample(lines, min(n, len(lines)))
    out.write_text("\n".join(lines) + "\n")
    return out


def finetune_whisper(args, data: Path, exp: Path) -> dict:
    from asrforge.train.trainer import Trainer

    before = {"wer": None} if args.skip_before else load_model(args.whisper).evaluate(data / "test.jsonl", beam_size=1).summary()
    recipe = load_recipe("fsdd_whisper",
                         [f"model.init={args.whisper}", *([f"train.epochs={args.epochs}"] if args.epochs else []),
                          f"data.train={subset(data / 'train.jsonl', args.train_utts, data / 'train-subset.jsonl')}",
                          f"data.dev={subset(data / 'dev.jsonl', args.dev_utts, data / 'dev-subset.jsonl')}", *args.overrides])
    trained = Trainer(recipe, exp, progress=False).fit()
    after = load_model(exp / "whisper.pt").evaluate(data / "test.jsonl", beam_size=recipe.decode.beam_size).summary()
    was = "" if before["wer"] is None else f"{100 * before['wer']:.2f}% before fine-tuning, "
    print(f"held out {data.name}: WER {was}{100 * after['wer']:.2f}% after", file=sys.stderr)
    return {"wer": after["wer"], "cer": after["cer"], "utts": after["utts"], "wer_before": before["wer"],
            "train_minutes": trained["train_minutes"]}


if __name__ == "__main__":
    main()
