"""``lm train`` (a Kneser-Ney n-gram from transcripts) and ``lm tune`` (its weight and bonus on dev)."""

from __future__ import annotations

import json
from pathlib import Path

from asrforge.cli.args import DECODE_OVERRIDE_HELP, count, decode_overrides
from asrforge.errors import AsrforgeError


def add_parsers(sub) -> None:
    lm = sub.add_parser("lm", help="word n-gram language models for beam search")
    lm_sub = lm.add_subparsers(dest="action", required=True)
    lt = lm_sub.add_parser("train", help="train a Kneser-Ney n-gram on manifests' normalized text, written as ARPA")
    lt.add_argument("--manifest", required=True, nargs="+", help="one or more JSONL manifests")
    lt.add_argument("--order", type=count, default=3)
    lt.add_argument("--config", help="recipe whose text.* normalization to apply: a file, or a shipped recipe's name "
                    "(default: lowercase, no punctuation)")
    lt.add_argument("--out", required=True, help="where to write the .arpa (or .arpa.gz) file")
    lt.set_defaults(func=train)

    lu = lm_sub.add_parser("tune", help="choose the LM weight and word bonus that give the lowest WER on a dev manifest")
    lu.add_argument("overrides", nargs="*", metavar="decode.KEY=VALUE", help=DECODE_OVERRIDE_HELP)
    lu.add_argument("--model", required=True, help="asrforge checkpoint file or experiment folder")
    lu.add_argument("--manifest", required=True, help="a dev manifest (never the test set you report)")
    lu.add_argument("--lm", help="ARPA file (default: the checkpoint's own, lm.path or lm.arpa beside it)")
    lu.add_argument("--beam-size", type=count, help="default: the recipe's decode.beam_size")
    lu.add_argument("--weights", type=float, nargs="+", help="LM weights to try (default: 0.2 0.35 0.5 0.75 1)")
    lu.add_argument("--bonuses", type=float, nargs="+", help="word bonuses to try (default: 0 1 2 3 4)")
    lu.add_argument("--closed-vocabulary", action="store_true", help="default: the recipe's lm.closed_vocabulary")
    lu.add_argument("--json", help="write every grid point's WER/CER here")
    lu.add_argument("--save", action="store_true",
                    help="store the best weight and bonus in the checkpoint's recipe (and --lm as lm.path)")
    lu.add_argument("--device", default="cpu")
    lu.set_defaults(func=tune, parser=lu, trailing="overrides")


def train(args) -> None:
    from asrforge.data.manifest import read_manifest
    from asrforge.decoding.kneser_ney import write_lm
    from asrforge.recipe import load_recipe
    from asrforge.text import Normalizer

    normalizer = Normalizer(load_recipe(args.config).text if args.config else None)
    texts, bad = [], 0
    for manifest in args.manifest:
        utts, skipped = read_manifest(manifest)
        texts += [normalizer(u.text) for u in utts]
        bad += len(skipped)
    lm = write_lm(texts, args.order, args.out)
    counts = ", ".join(f"{sum(1 for k in lm.probs if len(k) == n)} {n}-grams" for n in range(1, lm.order + 1))
    print(f"Kneser-Ney {args.order}-gram from {len(texts)} transcripts ({len(lm.vocab)} words; {counts}) -> {args.out}"
          + (f"  ({bad} bad manifest lines skipped)" if bad else "")
          + f"\ndecode with it: asrforge evaluate --lm {args.out} --beam-size 8 ..., or lm.path={args.out} in a recipe")


def asrforge_model(path: str, device: str, lm_options: dict, why: str):
    """The :class:`Transcriber` of an asrforge checkpoint; a Whisper checkpoint is refused with ``why``."""
    from asrforge.inference import load_model
    from asrforge.inference.transcriber import Transcriber

    recognizer = load_model(path, device, lm_options=lm_options)
    if not isinstance(recognizer, Transcriber):
        raise AsrforgeError(f"{path} is a Whisper checkpoint; {why}")
    return recognizer


def tune(args) -> None:
    from asrforge.data.dataset import SpeechDataset
    from asrforge_runtime.search.ngram import NGramLM
    from asrforge.inference.evaluate import read_scored_manifest
    from asrforge.inference.lm_tuning import DEFAULT_BONUSES, DEFAULT_WEIGHTS, save_lm_settings, tune_lm
    from asrforge.inference.transcriber import recipe_lm_file

    transcriber = asrforge_model(args.model, args.device, {"lm": False},
                                 "n-gram LM fusion is for asrforge models")
    checkpoint = Path(transcriber.source)
    lm_file = Path(args.lm) if args.lm else recipe_lm_file(transcriber.recipe, checkpoint)
    if lm_file is None:
        raise AsrforgeError(f"{checkpoint} was trained without an n-gram LM: give one with --lm PATH "
                            "(e.g. from `asrforge lm train --manifest train.jsonl --out lm.arpa`)")
    lm = NGramLM.load(lm_file)
    config = transcriber.decode_config(args.beam_size, **decode_overrides(args.overrides))
    if config.beam_size <= 1:
        raise AsrforgeError("the LM is fused into beam search only: give --beam-size 2 or more "
                            "(this checkpoint's recipe decodes greedily)")
    closed = args.closed_vocabulary or transcriber.recipe.lm.closed_vocabulary
    utts, _ = read_scored_manifest(args.manifest)
    dataset = SpeechDataset(utts, transcriber.features, None, transcriber.normalizer, cache_features=True)
    result = tune_lm(transcriber, dataset, lm, config, args.weights or DEFAULT_WEIGHTS, args.bonuses or DEFAULT_BONUSES,
                     closed, source=args.manifest)
    best = result.best
    print(f"\n{args.manifest}: WER (%) of beam {config.beam_size} with {lm_file} ({lm.order}-gram"
          + (", closed vocabulary" if closed else "") + ")")
    print(result.table())
    if not result.tunes_bonus:
        print("(attention beam search adds no word bonus: only the weight is tuned)")
    print(f"without the LM: {100 * result.without_lm.wer:.2f}%")
    flags = f"--lm-weight {best.weight:g}" + (f" --word-bonus {best.word_bonus:g}" if result.tunes_bonus else "")
    print(f"best: {flags}  (WER {100 * best.wer:.2f}%, CER {100 * best.cer:.2f}%)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "manifest": args.manifest, "lm": str(lm_file), "beam_size": config.beam_size, "closed_vocabulary": closed,
            "without_lm": vars(result.without_lm), "best": vars(best), "grid": [vars(p) for p in result.grid]}, indent=1))
    if args.save:
        bonus = best.word_bonus if result.tunes_bonus else transcriber.recipe.lm.word_bonus
        path = save_lm_settings(checkpoint, best.weight, bonus, closed, config.beam_size, lm_file if args.lm else None)
        print(f"saved into {path}: evaluate and transcribe now decode at beam {config.beam_size} with these settings by default")
