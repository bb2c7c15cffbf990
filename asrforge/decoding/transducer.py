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

from dataclasses import dataclass

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


@torch.inference_mode()
def transducer_greedy(model, enc: torch.Tensor, lens: torch.Tensor,
                      options: TransducerOptions = TransducerOptions()) -> list[Hypothesis]:
    """``enc (B, T, J)`` projected encoder output -> best-path tokens, with the frame each token was emitted on."""
    B = enc.shape[0]
    dev = enc.device
    state = model.predictor.initial_state(B, dev)
    pred, state = model.predict_step(torch.full((B,), BLANK_ID, dtype=torch.long, device=dev), state)
    tokens: list[list[int]] = [[] for _ in range(B)]
    frames: list[list[int]] = [[] for _ in range(B)]
    scores = torch.zeros(B, device=dev)
    for t in range(int(lens.max())):
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
                frames[b].append(t)
            new_pred, new_state = model.predict_step(best, state)
            pred = torch.where(emit[:, None], new_pred, pred)
            state = _assign(state, new_state, emit)
            active = emit            # only utterances that just emitted may emit again on this frame
    return [Hypothesis(tok, float(s), fr) for tok, s, fr in zip(tokens, scores.tolist(), frames)]


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


@torch.inference_mode()
def transducer_beam_search(model, enc: torch.Tensor, lens: torch.Tensor, options: TransducerOptions = TransducerOptions(),
                           lm: WordLMScorer | None = None) -> list[list[Hypothesis]]:
    """Modified beam search over ``B`` utterances at once; up to ``nbest`` hypotheses each, best first."""
    B, K = enc.shape[0], options.beam_size
    dev = enc.device
    state = model.predictor.initial_state(1, dev)
    pred, state = model.predict_step(torch.full((1,), BLANK_ID, dtype=torch.long, device=dev), state)
    pred, state = pred.expand(B, -1), {k: v.expand(B, *v.shape[1:]) for k, v in state.items()}
    beams = [[_Hyp((), 0.0, (), b, lm.initial() if lm is not None else None)] for b in range(B)]
    for t in range(int(lens.max())):
        rows = [h.row for b in range(B) if t < lens[b] for h in beams[b]]
        if not rows:
            break
        index = torch.tensor(rows, device=dev)
        owner = torch.tensor([b for b in range(B) if t < lens[b] for _ in beams[b]], device=dev)
        logp = torch.log_softmax(model.joint(enc[owner, t], pred.index_select(0, index)).float(), dim=-1).cpu()
        V = logp.shape[1]
        new_beams, extend = [], []          # extend: (position in rows, token) needing a predictor step
        offset = 0
        for b in range(B):
            if not t < lens[b]:
                new_beams.append(beams[b])
                continue
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
                    cand = _Hyp(h.tokens + (tok,), a, h.frames + (t,), -1 - len(extend), following.get((f // V, tok)))
                    extend.append((offset + f // V, tok))
                old = merged.get(cand.tokens)
                if old is None:
                    merged[cand.tokens] = cand
                else:       # two alignments of one labeling: add probabilities
                    old.acoustic = float(torch.logaddexp(torch.tensor(old.acoustic), torch.tensor(a)))
            new_beams.append(list(merged.values()))
            offset += len(hyps)
        # one predictor step for every hypothesis that emitted a token; rows past the old table hold them
        table_pred, table_state = pred.index_select(0, index), _select(state, index)
        if extend:
            src = torch.tensor([p for p, _ in extend], device=dev)
            toks = torch.tensor([tok for _, tok in extend], device=dev)
            ext_pred, ext_state = model.predict_step(toks, _select(table_state, src))
            table_pred = torch.cat([table_pred, ext_pred])
            table_state = {k: torch.cat([v, ext_state[k]]) for k, v in table_state.items()}
        position = {r: i for i, r in enumerate(rows)}
        for b, hyps in enumerate(new_beams):
            if t < lens[b]:
                for h in hyps:
                    h.row = position[h.row] if h.row >= 0 else len(rows) + (-1 - h.row)
            else:
                for h in hyps:
                    h.row = -10**9       # finished utterances no longer need predictor rows
        pred, state = table_pred, table_state
        beams = new_beams
    out = []
    for b, hyps in enumerate(beams):
        scored = [(h, (h.acoustic + (lm.finish(h.lm) if lm is not None else 0.0)) / (int(lens[b]) + len(h.tokens)))
                  for h in hyps]
        # a closed vocabulary rules out hypotheses ending in a part-word; if none is left, the result is empty
        final = sorted((pair for pair in scored if pair[1] > NEG_INF), key=lambda pair: -pair[1])
        out.append([Hypothesis(list(h.tokens), score, list(h.frames)) for h, score in final[: options.nbest]]
                   or [Hypothesis([], NEG_INF, [])])
    return out
