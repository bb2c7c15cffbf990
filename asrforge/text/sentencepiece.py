"""SentencePiece BPE/unigram tokenizer. Id 0 is the CTC blank; SentencePiece's ids are shifted by one.

The trained model's bytes live inside the tokenizer's state, so a checkpoint needs no separate file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Literal

import sentencepiece as spm

from asrforge.errors import AsrforgeError, CheckpointError, TextError
from asrforge.text.special import BLANK_ID

WORD_START = "\u2581"   # SentencePiece's word-boundary mark


class SentencePieceTokenizer:
    kind = "sentencepiece"
    blank_id = BLANK_ID

    def __init__(self, model: bytes):
        self.model = bytes(model)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.model)
        except Exception as e:
            raise CheckpointError(f"not a valid SentencePiece model ({e})") from None
        self.unk_id = self.sp.unk_id() + 1

    @classmethod
    def from_file(cls, path: str | Path) -> "SentencePieceTokenizer":
        path = Path(path)
        if not path.is_file():
            raise AsrforgeError(f"SentencePiece model {path} does not exist; train one with `asrforge tokenizer train`")
        return cls(path.read_bytes())

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: Literal["bpe", "unigram"] = "bpe") -> "SentencePieceTokenizer":
        """Train on normalized ``texts``. SentencePiece's own normalization is off: ours already ran."""
        buffer = io.BytesIO()
        texts = [t for t in texts if t]
        if not texts:
            raise TextError("no non-empty transcript to train a SentencePiece model on")
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=buffer, vocab_size=vocab_size, model_type=model_type,
                character_coverage=1.0, normalization_rule_name="identity", unk_id=0, bos_id=-1, eos_id=-1,
                pad_id=-1, hard_vocab_limit=True, minloglevel=2, num_threads=1)
        except RuntimeError as e:
            raise TextError(f"SentencePiece could not train a {vocab_size}-token {model_type} model: {e}; "
                            "lower the vocabulary size or give it more text") from None
        return cls(buffer.getvalue())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + 1

    def encode(self, text: str) -> list[int]:
        ids = [i + 1 for i in self.sp.encode(text)]
        if self.unk_id in ids:
            raise TextError(f"{text!r} holds characters the SentencePiece model has never seen; "
                            "normalize them away (text.* options) or retrain the tokenizer")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i - 1 for i in ids if i != self.blank_id])

    def piece(self, token: int) -> str:
        """The token's text, a leading space marking a word start (as for the character tokenizer's space)."""
        return self.sp.id_to_piece(token - 1).replace(WORD_START, " ")

    def state_dict(self) -> dict:
        return {"kind": self.kind, "model": self.model}

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(self.model)
