"""The scoring normalizers (``--normalizer``): Whisper's English one makes "Five." and "5" the same word, as the
field scores; ``asrforge normalize`` prints each line of standard input normalized."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asrforge.errors import ConfigError
from asrforge.text.scoring import scoring_normalizer
from conftest import REPO


@pytest.mark.parametrize("text,expected", [
    ("Five.", "5"),                                             # spelled numbers become digits
    ("twenty-one dollars", "$21"),
    ("It costs three point five percent", "it costs 3.5%"),
    ("I colour the centre", "i color the center"),              # British to American spelling
    ("Um, I'm here [laughs] (inaudible) uh", "i am here"),     # fillers and bracketed spans go, contractions spelled out
    ("Mr. Smith won't go", "mister smith will not go"),
])
def test_whisper_english_scores_as_whisper_does(text, expected):
    assert scoring_normalizer("whisper_english")(text) == expected


def test_basic_and_whisper_basic():
    assert scoring_normalizer("basic")("Five, SIX!") == "five six"
    assert scoring_normalizer("whisper_basic")("Café [music] Crème, brûlée!") == "café crème brûlée"   # diacritics kept
    with pytest.raises(ConfigError, match="unknown normalizer 'fancy'; choose one of: basic, whisper_english"):
        scoring_normalizer("fancy")


def test_the_normalize_command_reads_standard_input():
    done = subprocess.run([sys.executable, "-m", "asrforge.cli", "normalize", "--normalizer", "whisper_english"],
                          input="Five.\nI colour it\n", capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines() == ["5", "i color it"]
    wrong = subprocess.run([sys.executable, "-m", "asrforge.cli", "normalize", "--normalizer", "fancy"],
                           input="x\n", capture_output=True, text=True, cwd=REPO, timeout=120)
    assert wrong.returncode == 2 and "invalid choice: 'fancy'" in wrong.stderr and "Traceback" not in wrong.stderr
