"""Tiny random Whisper checkpoints for tests: a byte-level BPE tokenizer with Whisper's special tokens,
and a 2-layer model whose vocabulary ends with the 1501 timestamp tokens, as a real one does."""

from __future__ import annotations

from pathlib import Path

import torch

from asrforge.models.whisper import Whisper, WhisperDims
from asrforge.text.whisper import WhisperTokenizer

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|fr|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
TEXTS = ["the quick brown fox jumps over the lazy dog", "ask not what your country can do for you",
         "seven eight nine zero one two three", "she had your dark suit in greasy wash water all year",
         "music (laughs) [applause] - 'quoted' \"words\" ♪ #hash @at *star*"] * 4


def write_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    tk.add_special_tokens(SPECIALS)
    folder.mkdir(parents=True, exist_ok=True)
    tk.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def tiny_whisper(folder: Path, seed: int = 0, n_mels: int = 80) -> tuple[Whisper, WhisperTokenizer]:
    """A random model + multilingual-style tokenizer (en/de/fr) saved as tokenizer.json in ``folder``."""
    write_tokenizer(folder)
    tok = WhisperTokenizer.from_folder(folder, multilingual=True)
    n_vocab = tok.tk.get_vocab_size() + 1501
    dims = WhisperDims(n_mels=n_mels, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=2, n_vocab=n_vocab,
                       n_text_ctx=64, n_text_state=32, n_text_head=2, n_text_layer=2)
    torch.manual_seed(seed)
    model = Whisper(dims, alignment_heads=[(1, 0), (1, 1)])
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0, 0.02)
        for name, p in model.named_parameters():
            if p.dim() == 1 and "ln" not in name:
                p.normal_(0, 0.02)   # non-zero biases, so a lost bias cannot go unnoticed
    return model.eval(), tok


def trainable_init(root: Path, seed: int = 3) -> Whisper:
    """The tiny model made to hear its input (at its small random init the sinusoidal positions drown the audio:
    its front end is made louder), saved in Hugging Face layout as ``root/init`` with its tokenizer in
    ``root/tok``: the starting point of the fine-tuning tests."""
    from asrforge.models.whisper import save_huggingface

    model, _ = tiny_whisper(root / "tok", seed=seed)
    with torch.no_grad():
        model.encoder.conv1.weight.mul_(10)
        model.encoder.conv2.weight.mul_(3)
    save_huggingface(model, root / "init", [root / "tok" / "tokenizer.json"])
    return model
