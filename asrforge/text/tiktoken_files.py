"""OpenAI's Whisper vocabulary files (``gpt2.tiktoken``, ``multilingual.tiktoken``) as a ``tokenizers.Tokenizer``.

An OpenAI checkpoint (``~/.cache/whisper/base.pt``) holds no tokenizer: the openai-whisper package ships
its vocabulary in ``whisper/assets/*.tiktoken``. Each line there is ``base64(token bytes) rank``; the
encoder repeatedly merges the adjacent pair whose concatenation has the lowest rank. A byte-level BPE whose
merge ``(a, b)`` has priority ``rank(a + b)`` makes the same choices, so the file is turned into one, and
the special tokens are appended in OpenAI's fixed order:

    <|endoftext|> <|startoftranscript|> <|xx|> for each language <|translate|> <|transcribe|>
    <|startoflm|> <|startofprev|> <|nospeech|> <|notimestamps|> <|0.00|> ... <|30.00|>

The number of languages is what the checkpoint's vocabulary size leaves room for (99, or 100 for large-v3).
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

from asrforge.errors import CheckpointError
from asrforge.text.whisper_languages import LANGUAGE_NAMES

N_TIMESTAMPS = 1501
_TASK_TOKENS = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def _byte_to_char() -> dict[int, str]:
    """The byte-level alphabet: printable bytes stand for themselves, the others for the code points from 256 on
    (the mapping GPT-2's BPE and ``tokenizers``' ByteLevel pre-tokenizer use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise CheckpointError(f"{path}, line {number}: expected 'base64-token rank'; is this a .tiktoken file?") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise CheckpointError(f"{path}: the ranks are not 0..{len(ranks) - 1} without gaps")
    return ranks


def special_tokens(n_ranks: int, n_vocab: int) -> list[str]:
    """OpenAI's special tokens for a vocabulary of ``n_vocab`` ids whose first ``n_ranks`` are BPE tokens."""
    n_languages = n_vocab - n_ranks - 2 - len(_TASK_TOKENS) - N_TIMESTAMPS
    if not 0 <= n_languages <= len(LANGUAGE_NAMES):
        raise CheckpointError(f"a checkpoint with {n_vocab} output tokens does not fit a .tiktoken file of {n_ranks} "
                              "tokens; use the file of the same model (gpt2.tiktoken for .en models, "
                              "multilingual.tiktoken for the others)")
    languages = [f"<|{code}|>" for code in list(LANGUAGE_NAMES)[:n_languages]]
    return ["<|endoftext|>", "<|startoftranscript|>", *languages, *_TASK_TOKENS,
            *[f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)]]


def tokenizer_from_tiktoken(path: str | Path, n_vocab: int):
    """``path`` (a .tiktoken file) -> ``tokenizers.Tokenizer`` with ``n_vocab`` ids, special tokens included."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    path = Path(path)
    ranks = read_ranks(path)
    chars = _byte_to_char()
    text = {token: "".join(chars[b] for b in token) for token in ranks}
    merges = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], text[left], text[right]))
    merges.sort()
    tk = Tokenizer(models.BPE(vocab={text[t]: r for t, r in ranks.items()},
                              merges=[(a, b) for _, _, a, b in merges]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    specials = special_tokens(len(ranks), n_vocab)
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if tk.token_to_id(specials[0]) != len(ranks) or tk.get_vocab_size() != n_vocab:
        raise CheckpointError(f"{path}: the special tokens did not land after the {len(ranks)} BPE tokens")
    return tk


def find_tiktoken(folder: Path, multilingual: bool) -> Path | None:
    """The vocabulary file for an OpenAI checkpoint: beside it, or in an installed openai-whisper's assets."""
    name = "multilingual.tiktoken" if multilingual else "gpt2.tiktoken"
    if (folder / name).is_file():
        return folder / name
    spec = importlib.util.find_spec("whisper")   # located, not imported
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "assets" / name
        if candidate.is_file():
            return candidate
    return None
