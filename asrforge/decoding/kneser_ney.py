"""Train a word n-gram model with interpolated Kneser-Ney smoothing (one discount per order).

Counts: the highest order, and n-grams that begin with ``<s>``, use how often they occur; every other
lower-order n-gram uses how many distinct words precede it (its continuation count), which is what makes
Kneser-Ney give a word that only ever follows one context ("francisco") a small unigram probability.
Each order's discount is ``n1 / (n1 + 2 n2)`` from its counts of counts.

``p(w | h) = max(c(h w) - D, 0) / c(h .) + gamma(h) p(w | h')`` with ``gamma(h) = D N(h .) / c(h .)``, where
``h'`` drops the oldest word of ``h`` and the unigram level interpolates with the uniform distribution. That
is exactly an ARPA backoff model: the listed probability is the interpolated one and the backoff weight
is ``gamma``, so the result is written and read as ARPA.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from asrforge_runtime.search.ngram import BOS, EOS, UNK, LMError, NGramLM


def _discount(counts: Iterable[int]) -> float:
    of_counts = Counter(c for c in counts if c <= 2)
    n1, n2 = of_counts[1], of_counts[2]
    if n1 == 0 or n2 == 0:
        return 0.5          # too little data to estimate: the usual default
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def train_kneser_ney(sentences: Iterable[list[str]], order: int) -> NGramLM:
    """Sentences as word lists -> an ``order``-gram model over their words plus ``<unk>`` and ``</s>``."""
    if order < 1:
        raise LMError(f"n-gram order must be at least 1, got {order}")
    raw: Counter[tuple[str, ...]] = Counter()
    n_sentences = 0
    for words in sentences:
        if not words:
            continue
        n_sentences += 1
        tokens = [BOS] + list(words) + [EOS]
        for i in range(1, len(tokens)):
            for n in range(1, order + 1):
                if i - n + 1 < 0:
                    break
                raw[tuple(tokens[i - n + 1:i + 1])] += 1
    if not n_sentences:
        raise LMError("no text to train a language model on (every transcript was empty)")

    # adjusted counts: raw at the highest order and for <s>-initial n-grams, continuation counts otherwise
    left_contexts: Counter[tuple[str, ...]] = Counter()
    for g in raw:
        if len(g) >= 2:
            left_contexts[g[1:]] += 1
    adjusted: dict[int, dict[tuple[str, ...], int]] = defaultdict(dict)
    for g, c in raw.items():
        n = len(g)
        adjusted[n][g] = c if n == order or g[0] == BOS else left_contexts[g]

    vocab = sorted({g[0] for g in adjusted[1]} | {UNK})
    probs: dict[tuple[str, ...], float] = {}
    backoffs: dict[tuple[str, ...], float] = {}
    interpolated: dict[tuple[str, ...], float] = {}      # natural probabilities of listed n-grams
    for n in range(1, order + 1):
        counts = adjusted[n]
        d = _discount(counts.values())
        totals: Counter[tuple[str, ...]] = Counter()
        types: Counter[tuple[str, ...]] = Counter()
        for g, c in counts.items():
            totals[g[:-1]] += c
            types[g[:-1]] += 1
        gamma = {h: d * types[h] / totals[h] for h in totals}
        if n == 1:
            uniform = 1.0 / len(vocab)
            total = totals[()]
            for w in vocab:
                if w == BOS:
                    continue
                interpolated[(w,)] = max(counts.get((w,), 0) - d, 0.0) / total + gamma[()] * uniform
        else:
            for g, c in counts.items():
                lower = interpolated[g[1:]]
                interpolated[g] = (c - d) / totals[g[:-1]] + gamma[g[:-1]] * lower
        for h, gm in gamma.items():
            if h:
                backoffs[h] = math.log10(gm)
    for g, p in interpolated.items():
        probs[g] = math.log10(p)
    probs[(BOS,)] = -99.0           # never predicted; listed because it is a context
    return NGramLM(probs, backoffs)


def write_lm(texts: Iterable[str], order: int, path: str | Path) -> NGramLM:
    """Normalized transcripts -> a Kneser-Ney ``order``-gram saved as ARPA at ``path`` (written atomically)."""
    lm = train_kneser_ney((t.split() for t in texts), order)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + "".join(path.suffixes[-1:]))
    lm.save(tmp)
    os.replace(tmp, path)
    return lm
