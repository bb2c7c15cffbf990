"""``normalize``: each line of standard input as a scoring normalizer makes it, for people who score with other tools."""

from __future__ import annotations

import sys

from asrforge.text.scoring import NORMALIZERS


def add_parsers(sub) -> None:
    n = sub.add_parser("normalize", help="print each line of standard input normalized as scoring normalizes it")
    n.add_argument("--normalizer", choices=NORMALIZERS, default="basic",
                   help="basic: asrforge's (lowercase, no punctuation); whisper_english / whisper_basic: Whisper's")
    n.set_defaults(func=normalize, parser=n)


def normalize(args) -> int:
    from asrforge.text.scoring import scoring_normalizer

    apply = scoring_normalizer(args.normalizer)
    for line in sys.stdin:
        print(apply(line.rstrip("\n")), flush=True)
    return 0
