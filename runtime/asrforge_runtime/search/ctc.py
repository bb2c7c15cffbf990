"""CTC searches: greedy (best path) and prefix beam search (best labeling, alignments summed).

They read log-probabilities as arrays ``(T, V)``: numpy arrays, or anything ``numpy.asarray`` reads (a CPU torch tensor
without gradient, as the PyTorch path gives them), so the runtime and the PyTorch recognizer search with the same code.
"""

from __future__ import annotations

import math
from operator import itemgetter
from dataclasses import dataclass

import numpy as np

from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.word_lm import WordLMScorer

NEG_INF = float("-inf")


def logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for two Python floats (math is faster than numpy on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def ctc_greedy(log_probs, lengths, blank: int = 0) -> list[list[int]]:
    """``(B, T, V), (B,) -> B`` token lists: argmax per frame, repeats merged, blanks removed."""
    out = []
    for b, n in enumerate(np.asarray(lengths).tolist()):
        search = CTCGreedy(blank)
        search.advance(log_probs[b, :n])
        out.append(search.tokens)
    return out


@dataclass(frozen=True)
class CTCBeamOptions:
    beam_size: int = 8
    token_beam: int | None = None     # tokens tried per frame; None means beam_size
    prune_logprob: float = -8.0       # tokens below this frame log-probability are not tried (pyctcdecode uses -5)
    score_margin: float = 10.0        # prefixes this far (nats) below the best are dropped; inf keeps the search exact
    nbest: int = 1


class CTCGreedy:
    """:func:`ctc_greedy` of one utterance as its frames arrive: ``advance`` with each chunk's ``(T, V)``."""

    def __init__(self, blank: int = 0):
        self.blank = blank
        self.tokens: list[int] = []
        self.previous = blank        # the last frame's symbol: a repeat across chunks is merged too

    def advance(self, log_probs) -> None:
        for symbol in np.asarray(log_probs).argmax(-1).tolist():
            if symbol != self.previous and symbol != self.blank:
                self.tokens.append(symbol)
            self.previous = symbol

    def best(self) -> Hypothesis:
        return Hypothesis(list(self.tokens), 0.0)

    def result(self) -> list[Hypothesis]:
        return [self.best()]


def ctc_prefix_beam_search(log_probs, length: int, options: CTCBeamOptions = CTCBeamOptions(),
                           blank: int = 0, lm: WordLMScorer | None = None) -> list[Hypothesis]:
    """Prefix beam search over one utterance ``(T, V)``; returns up to ``options.nbest`` hypotheses, best first
    (:class:`CTCPrefixSearch` over all its frames at once)."""
    if length <= 0:
        return [Hypothesis([], 0.0)]
    search = CTCPrefixSearch(options, blank, lm)
    search.advance(log_probs[:length])
    return search.result()


class CTCPrefixSearch:
    """Prefix beam search that takes an utterance's frames as they arrive (``advance`` with each chunk's
    ``(T, V)``); :meth:`result` ranks what it found at the end, :meth:`best` the best prefix so far.

    Each prefix keeps two log probabilities: of all alignments ending in blank (``pb``) and in its
    last token (``pnb``). A token equal to the prefix's last one extends the prefix only from
    ``pb`` (a blank separates them); from ``pnb`` it is a repeat and the prefix is unchanged.
    With a beam wide enough to keep every prefix this is exact: it finds the labeling whose
    alignments have the largest total probability. The search's state is the beam alone, so frames given in
    chunks give exactly what the same frames give at once.

    With ``lm``, prefixes are ranked by that probability plus the word LM's fused score (shallow
    fusion); ``pb``/``pnb`` stay purely acoustic, and the LM scores a prefix once, when it is created.
    """

    def __init__(self, options: CTCBeamOptions = CTCBeamOptions(), blank: int = 0, lm: WordLMScorer | None = None):
        self.options, self.blank, self.lm = options, blank, lm
        self.beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
        self.lm_states = {(): lm.initial()} if lm is not None else None

    def advance(self, log_probs) -> None:
        options, blank, lm = self.options, self.blank, self.lm
        lp = np.asarray(log_probs, dtype=np.float32)
        if lp.shape[0] == 0:
            return
        k = min(options.token_beam or options.beam_size, lp.shape[1] - 1)
        # the k+1 most likely symbols of every frame, chosen in one vectorized call (blank may be among them)
        top = np.argpartition(-lp, k, axis=1)[:, : k + 1] if k + 1 < lp.shape[1] else np.tile(np.arange(lp.shape[1]), (lp.shape[0], 1))
        # plain Python lists: the loop below then touches no numpy scalars (much faster per element)
        top_ids, top_lps = top.tolist(), np.take_along_axis(lp, top, axis=1).tolist()
        blank_lps = lp[:, blank].tolist()
        beams, lm_states = self.beams, self.lm_states
        for t in range(lp.shape[0]):
            candidates = [(c, p) for c, p in zip(top_ids[t], top_lps[t]) if c != blank and p >= options.prune_logprob]
            p_blank = blank_lps[t]
            if not candidates:
                # only blank is plausible (most frames of a peaky CTC model): every prefix just absorbs
                # the frame, the ranking cannot change, and nothing needs re-sorting
                beams = {k_: (logaddexp(pb, pnb) + p_blank, NEG_INF) for k_, (pb, pnb) in beams.items()}
                continue
            nxt: dict[tuple[int, ...], list[float]] = {}
            for prefix, (pb, pnb) in beams.items():
                total = logaddexp(pb, pnb)
                entry = nxt.get(prefix)
                if entry is None:
                    entry = nxt[prefix] = [total + p_blank, NEG_INF]
                else:
                    entry[0] = logaddexp(entry[0], total + p_blank)
                last = prefix[-1] if prefix else -1
                for c, p in candidates:
                    if c == last:
                        entry[1] = logaddexp(entry[1], pnb + p)   # a repeat collapses into the same prefix
                        extended = pb + p                          # a new token needs a blank in between
                    else:
                        extended = total + p
                    if extended == NEG_INF:
                        continue                                   # impossible prefix (probability 0)
                    longer = prefix + (c,)
                    other = nxt.get(longer)
                    if other is None:
                        nxt[longer] = [NEG_INF, extended]
                        if lm_states is not None and longer not in lm_states:
                            lm_states[longer] = lm.extend(lm_states[prefix], c)
                    else:
                        other[1] = logaddexp(other[1], extended)
            if lm_states is None:
                scored = [(logaddexp(v[0], v[1]), k_, v) for k_, v in nxt.items()]
            else:
                scored = [(logaddexp(v[0], v[1]) + lm_states[k_].score, k_, v) for k_, v in nxt.items()]
            scored = sorted(scored, key=itemgetter(0), reverse=True)[: options.beam_size]
            floor = scored[0][0] - options.score_margin if scored else NEG_INF
            beams = {k_: (v[0], v[1]) for score, k_, v in scored if score > NEG_INF and score >= floor}
        self.beams = beams
        if lm_states is not None:       # the states of prefixes that left the beam are not needed again
            self.lm_states = {k_: lm_states[k_] for k_ in beams}

    def best(self) -> Hypothesis:
        """The best prefix so far (ranked as during the search: without the LM's end of sentence)."""
        if self.lm_states is None:
            score, k_ = max((logaddexp(*v), k_) for k_, v in self.beams.items())
        else:
            score, k_ = max((logaddexp(*v) + self.lm_states[k_].score, k_) for k_, v in self.beams.items())
        return Hypothesis(list(k_), score)

    def result(self) -> list[Hypothesis]:
        """Up to ``options.nbest`` hypotheses, best first, as if the utterance ended here."""
        beams, lm_states, lm, options = self.beams, self.lm_states, self.lm, self.options
        if lm_states is None:
            final = [(logaddexp(*v), k_) for k_, v in beams.items()]
        else:
            final = [(logaddexp(*v) + lm.finish(lm_states[k_]), k_) for k_, v in beams.items()]
            # a closed vocabulary rules out hypotheses ending in a part-word ("eig"); if none is left, nothing
            # the vocabulary knows was heard, and the result is empty rather than a non-word
            final = [f for f in final if f[0] > NEG_INF] or [(NEG_INF, ())]
        final.sort(key=itemgetter(0), reverse=True)
        return [Hypothesis(list(k_), score) for score, k_ in final[: options.nbest]]
