"""OpenAI's .tiktoken vocabulary files: converted to the same encodings, special tokens where OpenAI puts them,
found beside a .pt or in an installed openai-whisper."""

from __future__ import annotations

import base64
import json

import pytest
import torch
from whisper_fixtures import TEXTS, write_tokenizer

from asrforge.errors import CheckpointError
from asrforge.inference import load_model
from asrforge.models.whisper import Whisper, WhisperDims, save_openai
from asrforge.text import tiktoken_files
from asrforge.text.tiktoken_files import _byte_to_char, tokenizer_from_tiktoken

N_LANGUAGES = 3      # en, zh, de: the first three of OpenAI's language list
UNSEEN = ["hello world, numbers 123 and ünïcödé ♪", "  two  spaces\nand a newline", "country's dog-fox"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A byte-level BPE trained here, and the same vocabulary written as a .tiktoken file (rank = id)."""
    from tokenizers import Tokenizer

    folder = tmp_path_factory.mktemp("tik")
    tk = Tokenizer.from_file(str(write_tokenizer(folder / "hf")))
    char_to_byte = {c: b for b, c in _byte_to_char().items()}
    vocab = {t: i for t, i in tk.get_vocab(with_added_tokens=False).items()}
    lines = [f"{base64.b64encode(bytes(char_to_byte[c] for c in t)).decode()} {i}" for t, i in sorted(vocab.items(), key=lambda kv: kv[1])]
    path = folder / "gpt2.tiktoken"
    path.write_text("\n".join(lines) + "\n")
    return tk, path, len(vocab)


def n_vocab_for(n_ranks: int) -> int:
    return n_ranks + 2 + N_LANGUAGES + 6 + 1501


def test_encodings_and_decoding_match_the_bpe(reference):
    tk, path, n = reference
    converted = tokenizer_from_tiktoken(path, n_vocab_for(n))
    for text in [*TEXTS[:5], *UNSEEN]:
        ids = converted.encode(text, add_special_tokens=False).ids
        assert ids == tk.encode(text, add_special_tokens=False).ids
        assert converted.decode(ids) == text


def rank_merging(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """OpenAI's encoder, brute force: merge the adjacent pair whose concatenation has the lowest rank."""
    parts = [bytes([b]) for b in piece]
    while True:
        merges = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not merges:
            return [ranks[p] for p in parts]
        _, i = min(merges)
        parts[i: i + 2] = [parts[i] + parts[i + 1]]


def test_matches_the_rank_merging_algorithm(reference):
    _, path, n = reference
    ranks = tiktoken_files.read_ranks(path)
    converted = tokenizer_from_tiktoken(path, n_vocab_for(n))
    char_to_byte = {c: b for b, c in _byte_to_char().items()}
    for text in [*TEXTS[:5], *UNSEEN]:
        pieces = [p for p, _ in converted.pre_tokenizer.pre_tokenize_str(text)]
        expected = [i for p in pieces for i in rank_merging(bytes(char_to_byte[c] for c in p), ranks)]
        assert converted.encode(text, add_special_tokens=False).ids == expected


def test_special_tokens_follow_openai_order(reference):
    _, path, n = reference
    tk = tokenizer_from_tiktoken(path, n_vocab_for(n))
    assert tk.get_vocab_size() == n_vocab_for(n)
    assert [tk.token_to_id(t) for t in ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|de|>")] == list(range(n, n + 5))
    notimestamps = tk.token_to_id("<|notimestamps|>")
    assert notimestamps == n + 2 + N_LANGUAGES + 5
    assert tk.token_to_id("<|0.00|>") == notimestamps + 1 and tk.token_to_id("<|30.00|>") == notimestamps + 1501
    assert tk.encode("<|startoftranscript|><|en|>", add_special_tokens=False).ids == [n + 1, n + 2]


def test_wrong_file_or_size_is_named(reference, tmp_path):
    _, path, n = reference
    with pytest.raises(CheckpointError, match="gpt2.tiktoken for .en models"):
        tokenizer_from_tiktoken(path, n + 10)
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not-a-token-line\n")
    with pytest.raises(CheckpointError, match="line 1"):
        tokenizer_from_tiktoken(bad, 100)


@pytest.fixture
def openai_pt(reference, tmp_path):
    """An OpenAI .pt whose vocabulary fits the .tiktoken file, with no tokenizer beside it."""
    _, _, n = reference
    dims = WhisperDims(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
                       n_vocab=n_vocab_for(n), n_text_ctx=32, n_text_state=32, n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    model = Whisper(dims)
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0, 0.02)
    save_openai(model, tmp_path / "ckpt" / "tiny.en.pt")
    return tmp_path / "ckpt" / "tiny.en.pt"


def test_openai_checkpoint_reads_tiktoken_beside_it_or_from_openai_whisper(reference, openai_pt, tmp_path, monkeypatch):
    _, path, n = reference
    monkeypatch.setattr(tiktoken_files.importlib.util, "find_spec", lambda name: None)   # no openai-whisper
    with pytest.raises(CheckpointError, match="gpt2.tiktoken"):
        load_model(openai_pt)

    # an installed openai-whisper: its assets folder is used (the package is located, never imported)
    package = tmp_path / "site" / "whisper"
    (package / "assets").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "assets" / "gpt2.tiktoken").write_bytes(path.read_bytes())
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = load_model(openai_pt)
    assert model.tokenizer.eot == n and model.tokenizer.sot == n + 1
    result = model.transcribe(torch.zeros(16000).numpy() + 0.01, language="en", beam_size=1)
    assert isinstance(result.text, str)
    assert json.dumps(result.to_dict())   # the result is plain data
