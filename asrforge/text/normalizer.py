"""Transcript normalization: Unicode NFKC, lowercase, punctuation removal, whitespace collapse."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal


@dataclass
class TextConfig:
    tokenizer: Literal["char", "sentencepiece"] = "char"
    sentencepiece_model: str | None = None     # a trained .model file; None trains one on data.train
    vocab_size: int = 256                      # for a SentencePiece model trained at the start of training
    sentencepiece_type: Literal["bpe", "unigram"] = "bpe"
    lowercase: bool = True
    remove_punctuation: bool = True
    keep_chars: str = "'"      # punctuation that is part of words (don't, o'clock)
    remove_markers: bool = True   # corpus annotations: <unk>, [noise], {breath}


_SPACES = re.compile(r"\s+")
_MARKERS = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}")


class _PunctuationToSpace(dict):
    """A ``str.translate`` table, filled as characters are first seen: punctuation and symbols (Unicode
    categories P*, S*) map to a space, except the kept ones; everything else to itself. Looking up each
    character's category on every call made normalization the slowest step of reading a large manifest."""

    def __init__(self, keep: str):
        super().__init__()
        self.keep = keep

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        self[code] = ch if ch in self.keep or unicodedata.category(ch)[0] not in "PS" else " "
        return self[code]


class Normalizer:
    def __init__(self, config: TextConfig | None = None):
        self.config = config or TextConfig()
        self._punctuation = _PunctuationToSpace(self.config.keep_chars)
        edge = re.escape(self.config.keep_chars)
        self._quotes = re.compile(rf"(^|\s)[{edge}]+|[{edge}]+(?=\s|$)") if self.config.keep_chars else None

    def __call__(self, text: str) -> str:
        c = self.config
        text = unicodedata.normalize("NFKC", text)
        if c.remove_markers:
            text = _MARKERS.sub(" ", text)
        if c.lowercase:
            text = text.lower()
        if c.remove_punctuation:
            # Punctuation and symbols become spaces ("well-known" -> "well known"); kept chars survive
            # inside words but are stripped where they only quote ('hello' -> hello).
            text = text.translate(self._punctuation)
            if self._quotes is not None:
                text = self._quotes.sub(r"\1", text)
        return _SPACES.sub(" ", text).strip()
