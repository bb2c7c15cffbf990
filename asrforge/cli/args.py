"""What several commands parse alike: counts, amounts, booleans, the n-gram LM flags and ``decode.KEY=VALUE``."""

from __future__ import annotations

import argparse

from asrforge.config import parse_value
from asrforge.errors import AsrforgeError, ConfigError


def count(text: str) -> int:
    """argparse type for counts that must be at least 1 (beam sizes, shard sizes, workers, epochs, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive(text: str) -> float:
    """argparse type for amounts that must be above 0 (hours, minutes, learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use True or False")


def add_lm_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("n-gram LM (asrforge models, beam search)")
    g.add_argument("--lm", help="ARPA file (.arpa/.arpa.gz) to fuse into beam search (default: the recipe's lm.*)")
    g.add_argument("--no-lm", action="store_true", help="decode without the recipe's n-gram LM")
    g.add_argument("--lm-weight", type=float, help="LM log-probability scale (default: the recipe's lm.weight)")
    g.add_argument("--word-bonus", type=float, help="score added per word (default: the recipe's lm.word_bonus)")
    g.add_argument("--closed-vocabulary", action="store_true",
                   help="output only the LM's words (digits, commands; default: the recipe's lm.closed_vocabulary)")


def lm_options(args) -> dict:
    """--lm / --no-lm / --lm-weight / --word-bonus / --closed-vocabulary -> ``load_model``'s ``lm_options``."""
    if args.no_lm and args.lm:
        raise AsrforgeError("give --lm PATH or --no-lm, not both")
    options = {"lm": False if args.no_lm else (args.lm or True)}
    if args.lm_weight is not None:
        options["lm_weight"] = args.lm_weight
    if args.word_bonus is not None:
        options["word_bonus"] = args.word_bonus
    if args.closed_vocabulary:
        options["closed_vocabulary"] = True
    return options


DECODE_OVERRIDE_HELP = ("decode.KEY=VALUE changes one of the recipe's search settings for this run (asrforge models), "
                        "e.g. decode.token_beam=4 decode.prune_logprob=-10; the keys are the recipe's decode section's")


def is_decode_override(word: str) -> bool:
    return word.startswith("decode.") and "=" in word


def decode_overrides(words: list[str]) -> dict:
    """``["decode.token_beam=4", ...]`` -> ``{"token_beam": 4}`` (values read as YAML reads them)."""
    from dataclasses import fields

    from asrforge_runtime.search.config import DecodeConfig

    known = sorted(f.name for f in fields(DecodeConfig))
    out = {}
    for word in words:
        key, _, value = word.partition("=")
        out[key[len("decode."):]] = parse_value(value)
    unknown = sorted(set(out) - set(known))
    if unknown:
        raise ConfigError(f"unknown decode option(s) {unknown}; known: {known}")
    return out


def add_diarize_arguments(p) -> None:
    """The speaker options of ``diarize`` and ``transcribe --diarize``."""
    g = p.add_argument_group("speakers (extra diarize)")
    n = g.add_mutually_exclusive_group()
    n.add_argument("--num-speakers", type=count, help="the number of speakers, when known (default: found)")
    n.add_argument("--min-speakers", type=count, help="at least this many speakers (default 1)")
    g.add_argument("--max-speakers", type=count, help="at most this many speakers (default 8)")
    g.add_argument("--clustering", choices=["spectral", "agglomerative"], default="spectral",
                   help="spectral: the count from distinct voices (default); agglomerative: merge under a threshold")
    g.add_argument("--embedding-model", default="resemblyzer",
                   help="speaker embedding model: resemblyzer (default; its weights ship in the resemblyzer package), "
                        "resemblyzer:PATH/pretrained.pt, or torchscript:PATH (a module taking (B, N) 16-kHz "
                        "waveforms to (B, D) embeddings)")


def diarize_options(args):
    """The command line's speaker options -> :class:`DiarizeOptions` (checked: min <= max)."""
    from asrforge.inference.diarization import DiarizeOptions

    if args.num_speakers and args.max_speakers:
        raise AsrforgeError("--num-speakers fixes the count; leave out --max-speakers (or use --min-speakers)")
    try:
        return DiarizeOptions(num_speakers=args.num_speakers, min_speakers=args.min_speakers or 1,
                              max_speakers=args.max_speakers, method=args.clustering).check()
    except ConfigError as e:
        raise AsrforgeError(str(e).replace("min_speakers", "--min-speakers").replace("max_speakers", "--max-speakers")
                            ) from None
