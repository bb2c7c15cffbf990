"""``train`` (a recipe, from scratch or fine-tuning Whisper) and ``adapt`` (self-training on untranscribed audio)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from asrforge.cli.args import add_lm_arguments, count, lm_options, positive
from asrforge.errors import AsrforgeError


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a model from a YAML recipe")
    t.add_argument("config", help="a recipe: a YAML file, or the name of a shipped one (asrforge recipes), e.g. demo_ctc")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. data.train=train.jsonl train.max_minutes=5")
    t.add_argument("--out", required=True, help="experiment folder (best.pt, last.pt, train_log.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    t.add_argument("--overwrite", action="store_true", help="train afresh into an OUT that already holds a model")
    t.set_defaults(func=train, parser=t, trailing="overrides")

    a = sub.add_parser("adapt", help="adapt a model to untranscribed audio (a new voice or microphone) by self-training")
    a.add_argument("--model", required=True, help="asrforge checkpoint file or experiment folder (any family; "
                   "Whisper: fine-tune with asrforge train on transcribed audio instead)")
    a.add_argument("--manifest", required=True, help="the new audio; its text fields are ignored (may be empty)")
    a.add_argument("--out", required=True, help="folder for adapted.pt and pseudo_labels.jsonl")
    a.add_argument("--keep", type=float, default=0.7, help="fraction of utterances trained on, most confident first")
    a.add_argument("--epochs", type=count, default=3)
    a.add_argument("--lr", type=positive, default=1e-4)
    a.add_argument("--batch-size", type=count, default=16)
    a.add_argument("--beam-size", type=count, default=8, help="n-best size the confidence is computed over")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--overwrite", action="store_true", help="replace an adapted.pt already in --out")
    add_lm_arguments(a)
    a.set_defaults(func=adapt)


def train(args) -> None:
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    recipe = load_recipe(args.config, args.overrides)
    trained = [n for n in ("best.pt", "last.pt", "whisper.pt", "adapters.json") if (Path(args.out) / n).is_file()]
    if trained and not (args.resume or args.overwrite):
        raise AsrforgeError(f"{args.out} already holds a trained model ({', '.join(trained)}); continue it with --resume, "
                            "start it again with --overwrite, or give another --out")
    if args.overwrite and int(os.environ.get("RANK", 0)) == 0:
        for name in ("train_log.jsonl", "results.json"):   # a fresh run's log and figures are its own
            (Path(args.out) / name).unlink(missing_ok=True)
    summary = Trainer(recipe, args.out, resume=args.resume).fit()
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary))


def adapt(args) -> None:
    from asrforge.cli.lm import asrforge_model
    from asrforge.inference.transcriber import LONG_FORM_S
    from asrforge.train.adapt import ADAPTED, AdaptConfig, adapt as self_train

    config = AdaptConfig(keep=args.keep, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         beam_size=args.beam_size, seed=args.seed)
    if (Path(args.out) / ADAPTED).is_file() and not args.overwrite:
        raise AsrforgeError(f"{Path(args.out) / ADAPTED} already exists; adapt again over it with --overwrite, "
                            "or give another --out")
    transcriber = asrforge_model(args.model, "cpu", lm_options(args),
                                 "asrforge adapt self-trains asrforge models. Fine-tune Whisper on transcribed audio "
                                 "with the whisper_finetune recipe instead")
    summary = self_train(transcriber, args.manifest, args.out, config)
    out = Path(args.out)
    cut = (f" ({summary['long_recordings_cut']} recording(s) longer than {LONG_FORM_S:g} s cut at their pauses)"
           if summary["long_recordings_cut"] else "")
    print(f"pseudo-labelled {summary['utterances']} utterances{cut}, trained on the {summary['kept']} most confident "
          f"(confidence >= {summary['min_kept_confidence']:.3f}); loss per epoch "
          + " ".join(f"{x:.3f}" for x in summary["loss_per_epoch"]))
    for item in summary["bad"][:10]:
        print(f"  skipped {item['id']}: {item['reason']}", file=sys.stderr)
    if len(summary["bad"]) > 10:
        print(f"  ... and {len(summary['bad']) - 10} more skipped", file=sys.stderr)
    print(f"adapted checkpoint: {out / ADAPTED}  (labels and confidences: {out / 'pseudo_labels.jsonl'})\n"
          f"evaluate it: asrforge evaluate --model {out / ADAPTED} --manifest LABELLED.jsonl --beam-size 8")
