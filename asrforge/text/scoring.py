"""Normalizers that scoring applies to references and hypotheses, so WERs compare with the field's.

- ``basic``: asrforge's own (lowercase, punctuation removed: :class:`~asrforge.text.normalizer.Normalizer`);
- ``whisper_english``: Whisper's English text normalizer, as Whisper's paper, the Open ASR Leaderboard and most Whisper
  fine-tuning reports score English: spelled numbers to digits, British to American spelling, fillers (um, uh) and
  bracketed or parenthesized spans removed, contractions and titles spelled out;
- ``whisper_basic``: Whisper's language-independent normalizer (lowercase, punctuation and symbols dropped, bracketed
  spans removed), for other languages.

The Whisper ones are the ``whisper-normalizer`` package's ports of openai/whisper's normalizers; each result has its
runs of spaces collapsed, since scoring splits on them anyway.
"""

from __future__ import annotations

from typing import Callable

from asrforge.errors import ConfigError

NORMALIZERS = ("basic", "whisper_english", "whisper_basic")


def scoring_normalizer(name: str) -> Callable[[str], str]:
    """The normalizer ``name`` names (one of :data:`NORMALIZERS`), as a ``text -> text`` function."""
    if name == "basic":
        from asrforge.text.normalizer import Normalizer

        return Normalizer()
    if name == "whisper_english":
        from whisper_normalizer.english import EnglishTextNormalizer

        whisper = EnglishTextNormalizer()
    elif name == "whisper_basic":
        from whisper_normalizer.basic import BasicTextNormalizer

        whisper = BasicTextNormalizer()
    else:
        raise ConfigError(f"unknown normalizer {name!r}; choose one of: {', '.join(NORMALIZERS)}")
    return lambda text: " ".join(whisper(text).split())
