"""Transducer searches over any network: batched greedy (bounded symbols per frame) and modified beam search.

The searches ask a :class:`TransducerNetwork` for the joint network's log-probabilities and for prediction-network
steps, and keep its predictor outputs and states in *tables* they never look inside: a PyTorch model's tensors on
its device (``asrforge.decoding.transducer``) or the ONNX graphs' numpy arrays (``asrforge_runtime.onnx_model``)
are searched by this one code.

Modified beam search (as in icefall) lets each hypothesis emit at most one symbol per frame, which bounds the work
per frame and lets one joint-network call serve every hypothesis of every utterance. Hypotheses with the same tokens
are merged (their probabilities added). The final ranking is by score per emission (frames + tokens), i.e.
normalized by length.

A word n-gram LM (``lm``) fuses into the beam search: each hypothesis's score is its acoustic log-probability plus
the LM's fused score of its tokens (word bonus included, as in CTC search). Of each hypothesis's ``beam_size + 1``
best tokens on a frame, the LM scores them best first, only as many as could still enter the beam. Merging adds the
acoustic probabilities only: hypotheses with the same tokens have the same LM score.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from asrforge_runtime.search.ctc import logaddexp
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.word_lm import WordLMScorer, WordLMState, fuse_best_first

BLANK_ID = 0            # every asrforge model's blank (asrforge.text.special.BLANK_ID)
NEG_INF = float("-inf")

Table = Any             # a network's predictor outputs and states, one row per hypothesis


class TransducerNetwork(Protocol):
    """What the searches ask of a transducer. ``enc`` is the network's own encoder output ``(B, T, J)``."""

    def start(self) -> Table:
        """One row: the predictor after the blank that starts every utterance."""

    def joint(self, enc: Any, owners: list[int], t: int, table: Table, rows: list[int]) -> np.ndarray:
        """Log-probabilities ``(H, V)`` float32 of the joint network on frame ``t`` of utterance ``owners[i]`` with
        predictor row ``rows[i]``."""

    def step(self, table: Table, rows: list[int], tokens: list[int]) -> Table:
        """One predictor step from each of ``rows`` with ``tokens[i]`` -> a table of ``len(rows)`` new rows."""

    def select(self, table: Table, rows: list[int]) -> Table:
        """The table of ``rows`` (in that order; a row may repeat)."""

    def concat(self, tables: list[Table]) -> Table:
        """One table holding the rows of each, in order."""

    def pad(self, frames: list) -> Any:
        """Utterances' encoder frames ``(T_i, J)`` -> one ``enc (B, max T_i, J)`` (zeros after each one's end)."""


@dataclass(frozen=True)
class TransducerOptions:
    beam_size: int = 4
    max_symbols_per_frame: int = 3   # greedy: tokens emitted on one frame before moving on
    nbest: int = 1


@dataclass
class GreedyState:
    """One utterance's greedy search so far: the predictor table row for its last token, the tokens with the frame
    each was emitted on, their log-probability and the frames searched."""

    table: Table
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0
    searched: int = 0

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(list(self.tokens), self.score, list(self.frames))


def greedy_start(net: TransducerNetwork) -> GreedyState:
    """A new utterance's greedy state."""
    return GreedyState(net.start())


def transducer_greedy(net: TransducerNetwork, enc: Any, lens: list[int],
                      options: TransducerOptions = TransducerOptions()) -> list[Hypothesis]:
    """``enc (B, T, J)`` -> each utterance's best-path tokens, with the frame each token was emitted on."""
    start = greedy_start(net)
    states = greedy_advance(net, enc, lens, [replace(start) for _ in lens], options)
    return [s.hypothesis() for s in states]


def greedy_advance(net: TransducerNetwork, enc: Any, lens: list[int], states: list[GreedyState],
                   options: TransducerOptions = TransducerOptions()) -> list[GreedyState]:
    """The next ``lens[b]`` frames of ``enc (B, T, J)`` searched on from each utterance's ``states[b]``, all at
    once -> the new states. Chunks searched one after another give what all their frames give at once."""
    lens = [int(n) for n in lens]
    B = len(states)
    if not B:
        return []
    table = net.concat([s.table for s in states])          # row b: utterance b's predictor
    tokens = [list(s.tokens) for s in states]
    frames = [list(s.frames) for s in states]
    scores = [s.score for s in states]
    offsets = [s.searched for s in states]
    for t in range(max(lens)):
        active = [b for b in range(B) if t < lens[b]]
        for _ in range(options.max_symbols_per_frame):
            if not active:
                break
            logp = net.joint(enc, active, t, table, active)
            best = logp.argmax(1).tolist()
            emitted = []
            for i, b in enumerate(active):
                scores[b] += float(logp[i, best[i]])
                if best[i] != BLANK_ID:
                    emitted.append(b)
                    tokens[b].append(best[i])
                    frames[b].append(offsets[b] + t)
            if not emitted:
                break
            new = net.step(table, emitted, [tokens[b][-1] for b in emitted])
            index = list(range(B))
            for k, b in enumerate(emitted):
                index[b] = B + k
            table = net.select(net.concat([table, new]), index)
            active = emitted         # only utterances that just emitted may emit again on this frame
    return [GreedyState(net.select(table, [b]), tokens[b], frames[b], scores[b], offsets[b] + lens[b])
            for b in range(B)]


@dataclass
class _Hyp:
    tokens: tuple
    acoustic: float              # log-probability of its alignments (summed over merged ones)
    frames: tuple
    row: int                     # its predictor row in the current table
    lm: WordLMState | None = None

    @property
    def score(self) -> float:
        return self.acoustic + (self.lm.score if self.lm is not None else 0.0)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest of a flat array, largest first (ties: the lower index first)."""
    k = min(k, scores.size)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return part[np.lexsort((part, -scores[part]))]


def _fuse_word_lm(block: np.ndarray, hyps: list[_Hyp], lm: WordLMScorer, beam: int,
                  width: int) -> tuple[np.ndarray, dict[tuple[int, int], WordLMState]]:
    """``block (H, V)`` acoustic scores of one utterance's ``H`` hypotheses' next emissions -> their fused
    scores, and the LM state each scored token leads to, by ``(hypothesis, token)``.

    Candidates are each hypothesis's blank (which keeps its LM score) and ``width`` best tokens, scored best
    first (:func:`fuse_best_first`); those left unscored (-inf) could not enter a beam of ``beam``.
    """
    H, V = block.shape
    tokens_only = block.copy()
    tokens_only[:, BLANK_ID] = NEG_INF
    best = np.stack([_top(row, width) for row in tokens_only]) if H else np.zeros((0, width), dtype=np.int64)
    tokens = np.concatenate([np.full((H, 1), BLANK_ID), best], axis=1)
    lm_scores = np.array([h.lm.score for h in hyps])
    totals = (np.take_along_axis(block, tokens, 1) + lm_scores[:, None]).reshape(-1).tolist()
    tokens = tokens.reshape(-1).tolist()
    following: dict[tuple[int, int], WordLMState] = {}

    def change(j: int) -> float:
        i, token = j // (width + 1), tokens[j]
        if token == BLANK_ID:
            return 0.0
        following[i, token] = nxt = lm.extend(hyps[i].lm, token)
        return nxt.score - hyps[i].lm.score

    fused = np.full_like(block, NEG_INF)
    for j, total in fuse_best_first(totals, change, beam, lm.max_gain):
        fused[j // (width + 1), tokens[j]] = total
    return fused, following


@dataclass
class BeamState:
    """One utterance's beam so far: its hypotheses, the predictor table their ``row`` points into, and the frames
    searched."""

    hyps: list[_Hyp]
    table: Table
    searched: int = 0

    def ranked(self, lm: WordLMScorer | None = None, nbest: int = 1) -> list[Hypothesis]:
        """The best ``nbest`` hypotheses as if the utterance ended here, ranked by score per emission (frames +
        tokens); with ``lm``, its end of sentence counts."""
        scored = [(h, (h.acoustic + (lm.finish(h.lm) if lm is not None else 0.0)) / (self.searched + len(h.tokens)))
                  for h in self.hyps] if self.searched else [(h, h.score) for h in self.hyps]
        # a closed vocabulary rules out hypotheses ending in a part-word; if none is left, the result is empty
        final = sorted((pair for pair in scored if pair[1] > NEG_INF), key=lambda pair: -pair[1])
        return ([Hypothesis(list(h.tokens), score, list(h.frames)) for h, score in final[:nbest]]
                or [Hypothesis([], NEG_INF, [])])

    def best(self) -> Hypothesis:
        """The best hypothesis so far as the search ranks them (by score, not yet per emission)."""
        h = max(self.hyps, key=lambda h: h.score)
        return Hypothesis(list(h.tokens), h.score, list(h.frames))


def beam_start(net: TransducerNetwork, lm: WordLMScorer | None = None) -> BeamState:
    """A new utterance's beam: the empty hypothesis, the predictor having seen the starting blank."""
    return BeamState([_Hyp((), 0.0, (), 0, lm.initial() if lm is not None else None)], net.start())


def transducer_beam_search(net: TransducerNetwork, enc: Any, lens: list[int],
                           options: TransducerOptions = TransducerOptions(),
                           lm: WordLMScorer | None = None) -> list[list[Hypothesis]]:
    """Modified beam search over ``B`` utterances at once; up to ``nbest`` hypotheses each, best first."""
    start = beam_start(net, lm)
    states = beam_advance(net, enc, lens, [start] * len(lens), options, lm)
    return [s.ranked(lm, options.nbest) for s in states]


def beam_advance(net: TransducerNetwork, enc: Any, lens: list[int], states: list[BeamState],
                 options: TransducerOptions = TransducerOptions(), lm: WordLMScorer | None = None) -> list[BeamState]:
    """The next ``lens[b]`` frames of ``enc (B, T, J)`` searched on from each utterance's ``states[b]``, in one
    joint-network call per frame for every hypothesis of every utterance -> the new states (``states`` are left
    as they were). Chunks searched one after another give what all their frames give at once."""
    lens = [int(n) for n in lens]
    B, K = len(states), options.beam_size
    if not B:
        return []
    # one table of predictor rows for every utterance: each utterance's rows follow the previous one's
    # (a state's table holds one row per hypothesis, hyps[i]'s at row i: see the end of this function)
    bases = [0]
    for s in states[:-1]:
        bases.append(bases[-1] + len(s.hyps))
    table = net.concat([s.table for s in states])
    beams = [[_Hyp(h.tokens, h.acoustic, h.frames, base + h.row, h.lm) for h in s.hyps]
             for s, base in zip(states, bases)]
    offsets = [s.searched for s in states]
    for t in range(max(lens)):
        live = [b for b in range(B) if t < lens[b]]
        rows = [h.row for b in live for h in beams[b]]
        owners = [b for b in live for _ in beams[b]]
        logp = net.joint(enc, owners, t, table, rows)
        V = logp.shape[1]
        extend = []             # (row of the hypothesis in the old table, token): a predictor step each
        offset = 0
        for b in live:
            hyps = beams[b]
            acoustic = logp[offset: offset + len(hyps)] + np.array([h.acoustic for h in hyps])[:, None]
            if lm is None:
                ranked, following = acoustic, {}
            else:
                ranked, following = _fuse_word_lm(acoustic, hyps, lm, K, min(K + 1, V - 1))
            flat = ranked.reshape(-1)
            merged: dict[tuple, _Hyp] = {}
            for f in _top(flat, K).tolist():
                if flat[f] == NEG_INF:
                    continue            # a word the closed vocabulary does not have
                h, tok = hyps[f // V], f % V
                a = float(acoustic[f // V, tok])
                if tok == BLANK_ID:
                    cand = _Hyp(h.tokens, a, h.frames, h.row, h.lm)
                else:
                    cand = _Hyp(h.tokens + (tok,), a, h.frames + (offsets[b] + t,), -1 - len(extend),
                                following.get((f // V, tok)))
                    extend.append((h.row, tok))
                old = merged.get(cand.tokens)
                if old is None:
                    merged[cand.tokens] = cand
                else:       # two alignments of one labeling: add probabilities
                    old.acoustic = logaddexp(old.acoustic, a)
            beams[b] = list(merged.values())
            offset += len(hyps)
        # the new table: the rows some hypothesis still uses (of every utterance, searched on this frame or not),
        # then one predictor step for every hypothesis that emitted a token
        kept = sorted({h.row for hyps in beams for h in hyps if h.row >= 0})
        position = {r: i for i, r in enumerate(kept)}
        parts = [net.select(table, kept)]
        if extend:
            parts.append(net.step(table, [r for r, _ in extend], [tok for _, tok in extend]))
        table = net.concat(parts)
        for hyps in beams:
            for h in hyps:
                h.row = position[h.row] if h.row >= 0 else len(kept) + (-1 - h.row)
    out = []
    for b in range(B):          # each utterance's own rows, numbered from 0
        hyps = [_Hyp(h.tokens, h.acoustic, h.frames, i, h.lm) for i, h in enumerate(beams[b])]
        out.append(BeamState(hyps, net.select(table, [h.row for h in beams[b]]), offsets[b] + lens[b]))
    return out
