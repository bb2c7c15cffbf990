"""Whisper's byte-level BPE tokenizer and its special tokens, read from the checkpoint's ``tokenizer.json``.

Special tokens are looked up by their text, so any vocabulary (English-only, 99 or 100 languages,
a tiny test vocabulary) works without tables of ids. Timestamp tokens are the ids after
``<|notimestamps|>``: ``timestamp_begin + k`` means ``k * 0.02`` seconds into the window.
"""

from __future__ import annotations

import string
from functools import cached_property
from pathlib import Path

from asrforge.errors import CheckpointError, ConfigError
from asrforge.text.whisper_languages import LANGUAGE_NAMES, NO_SPACE_LANGUAGES


class WhisperTokenizer:
    def __init__(self, tokenizer, multilingual: bool = True):
        self.tk = tokenizer                        # a ``tokenizers.Tokenizer``
        self.multilingual = multilingual

    @classmethod
    def from_folder(cls, folder: str | Path, multilingual: bool = True, n_vocab: int | None = None) -> "WhisperTokenizer":
        """``folder/tokenizer.json``; failing that (an OpenAI ``.pt`` holds no tokenizer), OpenAI's
        ``multilingual.tiktoken`` / ``gpt2.tiktoken`` beside it or in an installed openai-whisper, which needs
        the checkpoint's ``n_vocab`` to place the special tokens."""
        from tokenizers import Tokenizer

        from asrforge.text.tiktoken_files import find_tiktoken, tokenizer_from_tiktoken

        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), multilingual)
        tiktoken = find_tiktoken(folder, multilingual) if n_vocab else None
        if tiktoken is None:
            wanted = "multilingual.tiktoken" if multilingual else "gpt2.tiktoken"
            raise CheckpointError(f"no tokenizer.json or {wanted} beside the Whisper weights in {folder}, and no "
                                  f"openai-whisper installed to take {wanted} from; copy the tokenizer.json of the "
                                  "same model (or openai-whisper's whisper/assets/" + wanted + ") there, or pass "
                                  "--tokenizer PATH")
        return cls(tokenizer_from_tiktoken(tiktoken, n_vocab), multilingual)

    # ------------------------------------------------------------ special tokens
    def special(self, text: str) -> int:
        token_id = self.tk.token_to_id(text)
        if token_id is None:
            raise CheckpointError(f"the Whisper tokenizer has no {text} token; is tokenizer.json from a Whisper model?")
        return token_id

    @cached_property
    def eot(self) -> int:
        return self.special("<|endoftext|>")

    @cached_property
    def sot(self) -> int:
        return self.special("<|startoftranscript|>")

    @cached_property
    def translate(self) -> int:
        return self.special("<|translate|>")

    @cached_property
    def transcribe(self) -> int:
        return self.special("<|transcribe|>")

    @cached_property
    def sot_prev(self) -> int:
        return self.special("<|startofprev|>")

    @cached_property
    def sot_lm(self) -> int:
        return self.special("<|startoflm|>")

    @cached_property
    def no_speech(self) -> int:
        for name in ("<|nospeech|>", "<|nocaptions|>"):
            if self.tk.token_to_id(name) is not None:
                return self.tk.token_to_id(name)
        raise CheckpointError("the Whisper tokenizer has neither <|nospeech|> nor <|nocaptions|>")

    @cached_property
    def no_timestamps(self) -> int:
        return self.special("<|notimestamps|>")

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    @cached_property
    def language_codes(self) -> list[str]:
        """Language codes in token order (the ids between ``<|startoftranscript|>`` and ``<|translate|>``)."""
        codes = []
        for token_id in range(self.sot + 1, self.translate):
            text = self.tk.id_to_token(token_id) or ""
            if text.startswith("<|") and text.endswith("|>"):
                codes.append(text[2:-2])
        return codes

    @cached_property
    def language_tokens(self) -> list[int]:
        return [self.special(f"<|{c}|>") for c in self.language_codes]

    def language_code(self, language: str) -> str:
        """``"en"``, ``"English"`` or ``"english"`` -> ``"en"``; an unknown one gets the list of known codes."""
        lang = language.lower().strip()
        by_name = {name: code for code, name in LANGUAGE_NAMES.items()}
        code = lang if lang in self.language_codes else by_name.get(lang)
        if code is None or code not in self.language_codes:
            raise ConfigError(f"unknown language {language!r}; this model knows: {', '.join(self.language_codes) or 'English only'}")
        return code

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        """``[<|startoftranscript|>, <|xx|>, <|transcribe|>]``; English-only models take ``[sot]`` alone."""
        if not self.multilingual:
            return [self.sot]
        seq = [self.sot]
        if language is not None:
            seq.append(self.special(f"<|{self.language_code(language)}|>"))
        seq.append(self.translate if task == "translate" else self.transcribe)
        return seq

    # ------------------------------------------------------------ text
    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of the ordinary tokens (specials and timestamps dropped)."""
        return self.tk.decode([i for i in ids if i < self.eot], skip_special_tokens=False)

    @cached_property
    def non_speech_tokens(self) -> list[int]:
        """Tokens for symbols that are not speech (music notes, brackets, speaker marks): suppressed by default,
        as the reference does for ``suppress_tokens="-1"``."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(miscellaneous):
            for ids in (self.encode(symbol), self.encode(" " + symbol)):
                if len(ids) == 1 or symbol in miscellaneous:
                    result.add(ids[0])
        return sorted(result)

    @cached_property
    def control_tokens(self) -> list[int]:
        """The task and start tokens: never sampled, whatever ``suppress_tokens`` says (as the reference does)."""
        return [self.transcribe, self.translate, self.sot, self.sot_prev, self.sot_lm, self.no_speech]

    @cached_property
    def suppressed_tokens(self) -> list[int]:
        """What decoding suppresses by default (``suppress_tokens="-1"``): the non-speech symbols and the control
        tokens; also what CTranslate2's ``suppress_ids`` and transformers' ``suppress_tokens`` list."""
        return sorted(set(self.non_speech_tokens) | set(self.control_tokens))

    @cached_property
    def blank_tokens(self) -> list[int]:
        """Suppressed at a window's first step: a bare space, and the end before anything was said."""
        return self.encode(" ") + [self.eot]

    def split_to_words(self, tokens: list[int], language: str | None) -> tuple[list[str], list[list[int]]]:
        """Group ordinary tokens into words: at spaces, or per character cluster for languages without spaces."""
        if language in NO_SPACE_LANGUAGES:
            return self._split_unicode(tokens)
        words, groups = [], []
        for piece, group in zip(*self._split_unicode(tokens)):
            # a piece with a leading space, or punctuation, starts a word; punctuation is re-attached later
            if not words or piece.startswith(" ") or piece.strip() in string.punctuation:
                words.append(piece)
                groups.append(list(group))
            else:
                words[-1] += piece
                groups[-1].extend(group)
        return words, groups

    def _split_unicode(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Split where the decoded text forms whole characters (a multi-byte character may span tokens)."""
        words, groups, current = [], [], []
        for token in tokens:
            current.append(token)
            text = self.decode(current)
            if "\ufffd" not in text:
                words.append(text)
                groups.append(current)
                current = []
        return words, groups
