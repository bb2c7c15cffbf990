"""Tokenizer protocol and the character tokenizer. A tokenizer round-trips through
``state_dict()`` / :func:`tokenizer_from_state`, which is how checkpoints carry it."""

from __future__ import annotations

from typing import Iterable, Protocol

from asrforge.errors import CheckpointError, TextError
from asrforge.text.special import BLANK_ID

BLANK = "<blank>"
UNK = "<unk>"


class Tokenizer(Protocol):
    blank_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def piece(self, token: int) -> str: ...

    def state_dict(self) -> dict: ...


class CharTokenizer:
    """Characters of normalized text. Index 0 is the CTC blank, then space, apostrophe, ``<unk>``."""

    kind = "char"
    blank_id = BLANK_ID

    def __init__(self, symbols: list[str]):
        if symbols[:4] != [BLANK, " ", "'", UNK]:
            raise ValueError("a character vocabulary starts with <blank>, space, apostrophe, <unk>")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.unk_id = self.index[UNK]

    @classmethod
    def build(cls, texts: Iterable[str]) -> "CharTokenizer":
        """Vocabulary = every character seen in ``texts`` (already normalized), sorted for stability."""
        chars = sorted({ch for t in texts for ch in t} - {" ", "'"})
        return cls([BLANK, " ", "'", UNK] + chars)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """Normalized text -> ids; characters outside the vocabulary raise :class:`TextError`."""
        missing = sorted({ch for ch in text if ch not in self.index})
        if missing:
            raise TextError(f"characters {''.join(missing)!r} are not in the model's vocabulary; "
                            "normalize them away (text.* options) or rebuild the vocabulary")
        return [self.index[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.blank_id)

    def piece(self, token: int) -> str:
        """The token's text (" " is the word separator)."""
        return self.symbols[token]

    def state_dict(self) -> dict:
        return {"kind": self.kind, "symbols": self.symbols}


def tokenizer_from_state(state: dict) -> Tokenizer:
    from asrforge.text.sentencepiece import SentencePieceTokenizer

    loaders = {CharTokenizer.kind: lambda s: CharTokenizer(s["symbols"]),
               SentencePieceTokenizer.kind: lambda s: SentencePieceTokenizer(s["model"])}
    kind = state.get("kind")
    if kind not in loaders:
        raise CheckpointError(f"checkpoint holds an unknown tokenizer kind {kind!r}; known: {', '.join(loaders)}")
    return loaders[kind](state)
