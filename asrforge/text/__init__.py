"""Text: normalization and tokenizers (characters now; BPE and Whisper BPE plug into the same protocol)."""

from asrforge.text.normalizer import Normalizer, TextConfig
from asrforge.text.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_state



def build_tokenizer(config: TextConfig, texts: list[str]) -> Tokenizer:
    """The tokenizer a recipe asks for; ``texts`` are the normalized training transcripts."""
    if config.tokenizer == "char":
        return CharTokenizer.build(texts)
    from asrforge.text.sentencepiece import SentencePieceTokenizer

    if config.sentencepiece_model:
        return SentencePieceTokenizer.from_file(config.sentencepiece_model)
    return SentencePieceTokenizer.train(texts, config.vocab_size, config.sentencepiece_type)


__all__ = ["Normalizer", "TextConfig", "CharTokenizer", "Tokenizer", "build_tokenizer", "tokenizer_from_state"]
