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


class Normalizer:
    def __init__(self, config: TextConfig | None = None):
        self.config = config or TextConfig()

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
            text = "".join(
                ch if ch in c.keep_chars or unicodedata.category(ch)[0] not in "PS" else " " for ch in text
            )
            if c.keep_chars:
                edge = re.escape(c.keep_chars)
                text = re.sub(rf"(^|\s)[{edge}]+|[{edge}]+(?=\s|$)", r"\1", text)
        return _SPACES.sub(" ", text).strip()
