"""Text: normalization and tokenizers (characters now; BPE and Whisper BPE plug into the same protocol)."""

from asrforge.text.normalizer import Normalizer, TextConfig
from asrforge.text.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_state

__all__ = ["Normalizer", "TextConfig", "CharTokenizer", "Tokenizer", "tokenizer_from_state"]
