"""Word n-gram language model in ARPA backoff form: read, write and score.

ARPA is the plain-text format of SRILM, KenLM and the LibriSpeech LM files: per order, lines of
``log10 p   w1 ... wn   [log10 backoff]``. ``log10 p(w | h)`` is the listed value of the longest listed
n-gram ``h' w`` (``h'`` a suffix of ``h``) plus the backoff weights of the longer histories that were
not listed with ``w``. Words the model does not know are ``<unk>``.
"""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

from asrforge_runtime.errors import AsrforgeError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)
UNKNOWN_LOG10 = -10.0   # a model without an <unk> entry: unknown words score this (log10)


class LMError(AsrforgeError):
    pass


class NGramLM:
    """Probabilities ``probs[ngram] = log10 p`` and backoffs ``backoffs[history] = log10 weight``, ngrams as
    tuples of words."""

    def __init__(self, probs: dict[tuple[str, ...], float], backoffs: dict[tuple[str, ...], float]):
        if not probs:
            raise LMError("an n-gram model needs at least one unigram")
        self.probs = probs
        self.backoffs = backoffs
        self.order = max(len(k) for k in probs)
        self.unk_log10 = probs.get((UNK,), UNKNOWN_LOG10)
        self.vocab = {k[0] for k in probs if len(k) == 1} - {UNK, BOS, EOS}

    def log10_prob(self, history: tuple[str, ...], word: str) -> float:
        """``log10 p(word | history)``; only the last ``order - 1`` words of ``history`` matter. Unknown words,
        predicted or in the history, are ``<unk>`` (as KenLM does)."""
        probs = self.probs
        if (word,) not in probs:
            if (UNK,) not in probs:
                return UNKNOWN_LOG10
            word = UNK
        history = history[len(history) - self.order + 1:] if self.order > 1 else ()
        if any((w,) not in probs for w in history):
            history = tuple(w if (w,) in probs else UNK for w in history)
        backoff = 0.0
        for start in range(len(history) + 1):
            context = history[start:]
            p = self.probs.get(context + (word,))
            if p is not None:
                return p + backoff
            backoff += self.backoffs.get(context, 0.0)
        raise AssertionError("unreachable: the unigram is listed")

    def sentence_log10(self, words: list[str]) -> float:
        """``log10 p`` of a whole sentence, ``</s>`` included, starting after ``<s>``."""
        history, total = (BOS,), 0.0
        for w in words + [EOS]:
            total += self.log10_prob(history, w)
            history = history + (w,)
        return total

    # ---- ARPA files ----

    @classmethod
    def load(cls, path: str | Path) -> "NGramLM":
        """Read an ARPA file (``.arpa``, or gzip-compressed ``.arpa.gz``)."""
        path = Path(path)
        if not path.is_file():
            raise LMError(f"language model {path} not found: give the path of an ARPA file (.arpa or .arpa.gz)")
        opener = gzip.open if path.suffix == ".gz" else open
        probs: dict[tuple[str, ...], float] = {}
        backoffs: dict[tuple[str, ...], float] = {}
        declared: dict[int, int] = {}
        order, seen_data = 0, False
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    line = line.strip()
                    if not line:
                        continue
                    if line == "\\data\\":
                        seen_data = True
                        continue
                    if line == "\\end\\":
                        break
                    m = re.fullmatch(r"\\(\d+)-grams:", line)
                    if m:
                        order = int(m.group(1))
                        continue
                    if order == 0:
                        m = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", line)
                        if m:
                            declared[int(m.group(1))] = int(m.group(2))
                        continue
                    fields = line.split()
                    if len(fields) not in (order + 1, order + 2):
                        raise LMError(f"{path}, line {lineno}: expected log10 probability, {order} word(s) and an "
                                      f"optional backoff, got {line[:80]!r}")
                    try:
                        values = [float(fields[0])] + ([float(fields[-1])] if len(fields) == order + 2 else [])
                    except ValueError:
                        raise LMError(f"{path}, line {lineno}: not a number in {line[:80]!r}") from None
                    ngram = tuple(fields[1:order + 1])
                    probs[ngram] = values[0]
                    if len(values) == 2 and values[1] != 0.0:
                        backoffs[ngram] = values[1]
        except (OSError, UnicodeDecodeError, EOFError) as e:
            raise LMError(f"cannot read language model {path}: {e}; it must be an ARPA text file") from None
        if not seen_data or not probs:
            raise LMError(f"{path} is not an ARPA language model (no \\data\\ header or no n-grams); build one with "
                          "`asrforge lm train` or KenLM's lmplz")
        for n, count in declared.items():
            found = sum(1 for k in probs if len(k) == n)
            if found != count:
                raise LMError(f"{path}: the header declares {count} {n}-grams but the file lists {found}; it is truncated or damaged")
        return cls(probs, backoffs)

    def to_arpa(self) -> str:
        by_order: dict[int, list[tuple[str, ...]]] = {}
        for k in self.probs:
            by_order.setdefault(len(k), []).append(k)
        lines = ["", "\\data\\"] + [f"ngram {n}={len(by_order[n])}" for n in sorted(by_order)]
        for n in sorted(by_order):
            lines += ["", f"\\{n}-grams:"]
            for k in sorted(by_order[n]):
                row = f"{self.probs[k]:.6f}\t{' '.join(k)}"
                if n < self.order and k in self.backoffs:
                    row += f"\t{self.backoffs[k]:.6f}"
                lines.append(row)
        lines += ["", "\\end\\", ""]
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wt", encoding="utf-8") as f:
            f.write(self.to_arpa())
