"""Transducer searches: batched greedy (bounded symbols per frame) and modified beam search.

Modified beam search (as in icefall) lets each hypothesis emit at most one symbol per frame, which
bounds the work per frame and lets one joint-network call serve every hypothesis of every utterance.
Hypotheses with the same tokens are merged (their probabilities added). The final ranking is by score
per emission (frames + tokens), i.e. normalized by length.

A word n-gram LM (``lm``) fuses into the beam search: each hypothesis's score is its acoustic
log-probability plus the LM's fused score of its tokens (word bonus included, as in CTC search). Of each
hypothesis's ``beam_size + 1`` best tokens on a frame, the LM scores them best first, only as many as could
still enter the beam. Merging adds the acoustic probabilities only: hypotheses with the same tokens have the
same LM score.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from asrforge.decoding.hypothesis import Hypothesis
from asrforge.decoding.word_lm import WordLMScorer, WordLMState, fuse_best_first
from asrforge.text.special import BLANK_ID

NEG_INF = float("-inf")


@dataclass(frozen=True)
class TransducerOptions:
    beam_size: int = 4
    max_symbols_per_frame: int = 3   # greedy: tokens emitted on one frame before moving on
    nbest: int = 1


def _select(state: dict, index: torch.Tensor) -> dict:
    return {k: v.index_select(0, index) for k, v in state.items()}


def _assign(state: dict, update: dict, where: torch.Tensor) -> dict:
    return {k: torch.where(where.view(-1, *[1] * (v.dim() - 1)), update[k], v) for k, v in state.items()}


@dataclass
class GreedyState:
    """One utterance's greedy search so far: the predictor's output ``(1, J)`` and state for its last token, the
    tokens with the frame each was emitted on, their log-probability and the frames searched."""

    pred: torch.Tensor
    state: dict
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0
    searched: int = 0

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(list(self.tokens), self.score, list(self.frames))


def _predictor_start(model, device: torch.device) -> tuple[torch.Tensor, dict]:
    """The predictor's output ``(1, J)`` and state after the blank that starts every utterance."""
    state = model.predictor.initial_state(1, device)
    return model.predict_step(torch.full((1,), BLANK_ID, dtype=torch.long, device=device), state)


def greedy_start(model, device: torch.device) -> GreedyState:
    """A new utterance's greedy state."""
    return GreedyState(*_predictor_start(model, device))


@torch.inference_mode()
def transducer_greedy(model, enc: torch.Tensor, lens: torch.Tensor,
                      options: TransducerOptions = TransducerOptions()) -> list[Hypothesis]:
    """``enc (B, T, J)`` projected encoder output -> best-path tokens, with the frame each token was emitted on."""
    start = greedy_start(model, enc.device)
    states = greedy_advance(model, enc, lens, [replace(start) for _ in range(enc.shape[0])], options)
    return [s.hypothesis() for s in states]


@torch.inference_mode()
def greedy_advance(model, enc: torch.Tensor, lens: torch.Tensor, states: list[GreedyState],
                   options: TransducerOptions = TransducerOptions()) -> list[GreedyState]:
    """The next ``lens[b]`` frames of ``enc (B, T, J)`` searched on from each utterance's ``states[b]``, all at
    once -> the new states. Chunks searched one after another give what all their frames give at once."""
    B = enc.shape[0]
    pred = torch.cat([s.pred for s in states])
    state = {k: torch.cat([s.state[k] for s in states]) for k in states[0].state}
    tokens = [list(s.tokens) for s in states]
    frames = [list(s.frames) for s in states]
    scores = torch.tensor([s.score for s in states], device=enc.device)
    offsets = [s.searched for s in states]
    for t in range(int(lens.max()) if B else 0):
        active = t < lens
        for _ in range(options.max_symbols_per_frame):
            logp = torch.log_softmax(model.joint(enc[:, t], pred).float(), dim=-1)
            best = logp.argmax(-1)
            scores += torch.where(active, logp.gather(1, best[:, None])[:, 0], 0.0)
            emit = active & (best != BLANK_ID)
            if not bool(emit.any()):
                break
            for b in emit.nonzero()[:, 0].tolist():
                tokens[b].append(int(best[b]))
                frames[b].append(offsets[b] + t)
            new_pred, new_state = model.predict_step(best, state)
            pred = torch.where(emit[:, None], new_pred, pred)
            state = _assign(state, new_state, emit)
            active = emit            # only utterances that just emitted may emit again on this frame
    return [GreedyState(pred[b: b + 1], {k: v[b: b + 1] for k, v in state.items()}, tokens[b], frames[b],
                        float(scores[b]), offsets[b] + int(lens[b])) for b in range(B)]


@dataclass
class _Hyp:
    tokens: tuple
    acoustic: float              # log-probability of its alignments (summed over merged ones)
    frames: tuple
    row: int                     # its predictor output / state in the current tables
    lm: WordLMState | None = None

    @property
    def score(self) -> float:
        return self.acoustic + (self.lm.score if self.lm is not None else 0.0)


def _fuse_word_lm(block: torch.Tensor, hyps: list[_Hyp], lm: WordLMScorer, beam: int,
                  width: int) -> tuple[torch.Tensor, dict[tuple[int, int], WordLMState]]:
    """``block (H, V)`` acoustic scores of one utterance's ``H`` hypotheses' next emissions -> their fused
    scores, and the LM state each scored token leads to, by ``(hypothesis, token)``.

    Candidates are each hypothesis's blank (which keeps its LM score) and ``width`` best tokens, scored best
    first (:func:`fuse_best_first`); those left unscored (-inf) could not enter a beam of ``beam``.
    """
    H, V = block.shape
    tokens_only = block.clone()
    tokens_only[:, BLANK_ID] = NEG_INF
    tokens = torch.cat([torch.full((H, 1), BLANK_ID), tokens_only.topk(width, dim=-1).indices], dim=1)
    lm_scores = torch.tensor([h.lm.score for h in hyps])
    totals = (block.gather(1, tokens) + lm_scores[:, None]).reshape(-1).tolist()
    tokens = tokens.reshape(-1).tolist()
    following: dict[tuple[int, int], WordLMState] = {}

    def change(j: int) -> float:
        i, token = j // (width + 1), tokens[j]
        if token == BLANK_ID:
            return 0.0
        following[i, token] = nxt = lm.extend(hyps[i].lm, token)
        return nxt.score - hyps[i].lm.score

    fused = torch.full_like(block, NEG_INF)
    for j, total in fuse_best_first(totals, change, beam, lm.max_gain):
        fused[j // (width + 1), tokens[j]] = total
    return fused, following


@dataclass
class BeamState:
    """One utterance's beam so far: its hypotheses, the predictor outputs ``(R, J)`` and states their ``row``
    points into, and the frames searched."""

    hyps: list[_Hyp]
    pred: torch.Tensor
    state: dict
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


def beam_start(model, device: torch.device, lm: WordLMScorer | None = None) -> BeamState:
    """A new utterance's beam: the empty hypothesis, the predictor having seen the starting blank."""
    return BeamState([_Hyp((), 0.0, (), 0, lm.initial() if lm is not None else None)], *_predictor_start(model, device))


@torch.inference_mode()
def transducer_beam_search(model, enc: torch.Tensor, lens: torch.Tensor, options: TransducerOptions = TransducerOptions(),
                           lm: WordLMScorer | None = None) -> list[list[Hypothesis]]:
    """Modified beam search over ``B`` utterances at once; up to ``nbest`` hypotheses each, best first."""
    start = beam_start(model, enc.device, lm)
    states = beam_advance(model, enc, lens, [start] * enc.shape[0], options, lm)
    return [s.ranked(lm, options.nbest) for s in states]


@torch.inference_mode()
def beam_advance(model, enc: torch.Tensor, lens: torch.Tensor, states: list[BeamState],
                 options: TransducerOptions = TransducerOptions(), lm: WordLMScorer | None = None) -> list[BeamState]:
    """The next ``lens[b]`` frames of ``enc (B, T, J)`` searched on from each utterance's ``states[b]``, in one
    joint-network call per frame for every hypothesis of every utterance -> the new states (``states`` are left
    as they were). Chunks searched one after another give what all their frames give at once."""
    B, K = enc.shape[0], options.beam_size
    dev = enc.device
    # one table of predictor rows for every utterance: each utterance's rows follow the previous one's
    bases = [0]
    for s in states[:-1]:
        bases.append(bases[-1] + s.pred.shape[0])
    pred = torch.cat([s.pred for s in states]) if B else None
    state = {k: torch.cat([s.state[k] for s in states]) for k in states[0].state} if B else {}
    beams = [[_Hyp(h.tokens, h.acoustic, h.frames, base + h.row, h.lm) for h in s.hyps]
             for s, base in zip(states, bases)]
    offsets = [s.searched for s in states]
    for t in range(int(lens.max()) if B else 0):
        live = [b for b in range(B) if t < lens[b]]
        rows = [h.row for b in live for h in beams[b]]
        index = torch.tensor(rows, device=dev)
        owner = torch.tensor([b for b in live for _ in beams[b]], device=dev)
        logp = torch.log_softmax(model.joint(enc[owner, t], pred.index_select(0, index)).float(), dim=-1).cpu()
        V = logp.shape[1]
        extend = []             # (row of the hypothesis in the old table, token): a predictor step each
        offset = 0
        for b in live:
            hyps = beams[b]
            acoustic = logp[offset: offset + len(hyps)] + torch.tensor([h.acoustic for h in hyps])[:, None]
            if lm is None:
                ranked, following = acoustic, {}
            else:
                ranked, following = _fuse_word_lm(acoustic, hyps, lm, K, min(K + 1, V - 1))
            top, flat = ranked.reshape(-1).topk(min(K, ranked.numel()))
            merged: dict[tuple, _Hyp] = {}
            for score, f in zip(top.tolist(), flat.tolist()):
                if score == NEG_INF:
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
                    old.acoustic = float(torch.logaddexp(torch.tensor(old.acoustic), torch.tensor(a)))
            beams[b] = list(merged.values())
            offset += len(hyps)
        # the new table: the rows some hypothesis still uses (of every utterance, searched on this frame or not),
        # then one predictor step for every hypothesis that emitted a token
        kept = sorted({h.row for hyps in beams for h in hyps if h.row >= 0})
        position = {r: i for i, r in enumerate(kept)}
        keep = torch.tensor(kept, device=dev, dtype=torch.long)
        table_pred, table_state = pred.index_select(0, keep), _select(state, keep)
        if extend:
            src = torch.tensor([r for r, _ in extend], device=dev)
            toks = torch.tensor([tok for _, tok in extend], device=dev)
            ext_pred, ext_state = model.predict_step(toks, _select(state, src))
            table_pred = torch.cat([table_pred, ext_pred])
            table_state = {k: torch.cat([v, ext_state[k]]) for k, v in table_state.items()}
        for hyps in beams:
            for h in hyps:
                h.row = position[h.row] if h.row >= 0 else len(kept) + (-1 - h.row)
        pred, state = table_pred, table_state
    out = []
    for b in range(B):          # each utterance's own rows, numbered from 0
        rows = [h.row for h in beams[b]]
        index = torch.tensor(rows, device=dev, dtype=torch.long)
        hyps = [_Hyp(h.tokens, h.acoustic, h.frames, i, h.lm) for i, h in enumerate(beams[b])]
        out.append(BeamState(hyps, pred.index_select(0, index), _select(state, index), offsets[b] + int(lens[b])))
    return out
