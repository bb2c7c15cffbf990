"""Searches for attention encoder-decoders over any network: greedy, batched beam search (optionally joint with CTC
prefix scores), and attention rescoring of a CTC n-best list.

The searches ask an :class:`AttentionNetwork` for decoder steps and keep its memory and states in objects they never
look inside: a PyTorch model's tensors on its device (``asrforge.decoding.attention``) or the exported decoder step's
numpy arrays (``asrforge_runtime.onnx_model``) are searched by this one code.

Every search bounds its output by the input: at most ``max(min_len, ceil(max_len_ratio * encoder frames))``
tokens, after which ``<eos>`` is the only choice, so no search can run forever. Beam scores are ranked
per token (total log-probability / tokens incl. ``<eos>``), so short hypotheses are not favoured.

The beam search does not stop once it holds ``beam`` finished hypotheses: with label smoothing, ``<eos>``
after a few tokens is often among the top candidates, and such early endings would fill the quota before
the real transcript ends (measured: LAS beam 8 at 7.9 % WER against 1.4 % greedy). It stops an utterance
when no live hypothesis can still reach a better per-token score than its best finished one.

A word n-gram LM (``lm``) fuses into the beam search and the rescoring. The beam search adds
``weight * ln p(word | history)`` as each word completes, but no word bonus: its ranking by score per token
already removes the pull toward short outputs that the bonus offsets in CTC search, and a bonus, by raising
every word's score, would loosen the stopping rule above to near uselessness. (An ARPA file whose backoff weights
exceed 1 can still raise a score when an unknown word completes; the rule allows for that much.) Rescoring an n-best list
is not length-normalized, so there the LM score includes the bonus, as in CTC search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from asrforge_runtime.search.config import DecodeConfig, ctc_beam_options
from asrforge_runtime.search.ctc import CTCBeamOptions, ctc_prefix_beam_search
from asrforge_runtime.search.ctc_prefix_score import CTCPrefixScorer, pad_with_certain_blank
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.word_lm import WordLMScorer, WordLMState, fuse_best_first

SOS = EOS = 0           # every asrforge model's start and end symbol (asrforge.text.special)
NEG_INF = float("-inf")

Memory = Any            # a network's encoder output as its decoder reads it, one row per utterance or hypothesis
State = Any             # a network's decoder state, one row per hypothesis


class AttentionNetwork(Protocol):
    """What the searches ask of an encoder-decoder. Rows are utterances or hypotheses, on the first axis."""

    def select_memory(self, memory: Memory, rows: np.ndarray) -> Memory:
        """The memory of ``rows`` (in that order; a row may repeat)."""

    def initial_state(self, memory: Memory) -> State:
        """The decoder state before the first step, one row per memory row."""

    def step(self, memory: Memory, state: State, history: np.ndarray) -> tuple[np.ndarray, State]:
        """``history (N, L)`` int64 (the tokens so far, ``<sos>`` first) -> the next token's log-probabilities
        ``(N, V)`` float32 and the next state."""

    def select_state(self, state: State, rows: np.ndarray) -> State:
        """The state of ``rows`` (in that order; a row may repeat)."""

    def sequence_log_probs(self, memory: Memory, sequences: list[list[int]]) -> np.ndarray:
        """Log-probability ``(n,)`` of each token list followed by ``<eos>``, memory row ``i`` for sequence ``i``
        (:func:`stepwise_sequence_log_probs` computes it from steps; a network may have a faster way)."""


@dataclass(frozen=True)
class AttentionBeamOptions:
    beam_size: int = 8
    ctc_weight: float = 0.0           # joint search: weight of CTC prefix scores (needs a CTC head)
    candidates: int | None = None     # tokens per hypothesis scored by CTC and the LM; None means 1.5 x beam_size
    max_len_ratio: float = 2.0        # output tokens allowed per encoder frame
    min_len: int = 5
    nbest: int = 1


def max_lengths(lens, options: AttentionBeamOptions) -> np.ndarray:
    """``(B,)`` encoder frames -> the most tokens (with ``<eos>``) each utterance's hypotheses may hold."""
    return np.maximum(np.ceil(np.asarray(lens, dtype=np.float64) * options.max_len_ratio).astype(np.int64),
                      options.min_len)


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries of each row of ``x (N, M)``, largest first."""
    if k >= x.shape[-1]:
        return np.argsort(-x, axis=-1, kind="stable")
    part = np.argpartition(-x, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(x, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


def attention_greedy(network: AttentionNetwork, memory: Memory, lens,
                     options: AttentionBeamOptions = AttentionBeamOptions()) -> list[Hypothesis]:
    """Batched argmax decoding from ``<sos>`` until ``<eos>`` or the length bound (decoder only); ``lens (B,)``
    are the utterances' encoder frames."""
    B = len(lens)
    state = network.initial_state(memory)
    history = np.full((B, 1), SOS, dtype=np.int64)
    limit = max_lengths(lens, options)
    scores = np.zeros(B, dtype=np.float32)
    ended = np.zeros(B, dtype=bool)
    out: list[list[int]] = [[] for _ in range(B)]
    for i in range(int(limit.max())):
        logp, state = network.step(memory, state, history)
        best = np.where(i + 1 >= limit, EOS, logp.argmax(-1))       # the bound forces <eos>
        scores += np.where(ended, 0.0, logp[np.arange(B), best]).astype(np.float32)
        for b in np.flatnonzero(~ended & (best != EOS)).tolist():
            out[b].append(int(best[b]))
        ended |= best == EOS
        if ended.all():
            break
        history = np.concatenate([history, best[:, None].astype(np.int64)], axis=1)
    return [Hypothesis(toks, float(s)) for toks, s in zip(out, scores.tolist())]


def _fuse_word_lm(step: np.ndarray, scores: np.ndarray, lm: WordLMScorer, states: list[WordLMState], beam: int,
                  width: int) -> tuple[np.ndarray, dict[tuple[int, int], WordLMState]]:
    """``step (N, V)`` token scores of ``N = B x beam`` hypotheses with totals ``scores (N,)`` -> the step scores
    with the LM's change of score added, and the LM state each scored token leads to, by ``(hypothesis, token)``.

    Candidates are each hypothesis's ``width`` best tokens and ``<eos>``, scored best first per utterance
    (:func:`fuse_best_first`); those left unscored (-inf) could not enter the beam.
    """
    N, V = step.shape
    body = step.copy()
    body[:, EOS] = NEG_INF
    tokens = top_k(body, width)
    values = np.take_along_axis(body, tokens, axis=-1)
    tokens = np.concatenate([tokens, np.full((N, 1), EOS, dtype=tokens.dtype)], axis=1)
    totals = (scores[:, None] + np.concatenate([values, step[:, EOS:EOS + 1]], axis=1)).reshape(N // beam, -1)
    tokens = tokens.reshape(N // beam, -1).tolist()
    score_list = scores.tolist()
    entries: list[tuple[int, int, float]] = []          # (hypothesis, token, fused step score)
    following: dict[tuple[int, int], WordLMState] = {}
    for b, row_totals in enumerate(totals.tolist()):
        def change(j: int) -> float:
            n, token = b * beam + j // (width + 1), tokens[b][j]
            if token == EOS:
                return lm.finish(states[n]) - states[n].score
            following[n, token] = nxt = lm.extend(states[n], token)
            return nxt.score - states[n].score

        for j, fused in fuse_best_first(row_totals, change, beam, lm.max_gain):
            n = b * beam + j // (width + 1)
            entries.append((n, tokens[b][j], fused - score_list[n]))
    out = np.full_like(step, NEG_INF)
    if entries:
        rows, cols, fused_steps = zip(*entries)
        out[list(rows), list(cols)] = fused_steps
    return out, following


def _increase(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """``new - old`` of CTC prefix scores, -inf where ``new`` is (an extension of a CTC-impossible prefix is
    impossible too: -inf, not the NaN of -inf minus -inf)."""
    with np.errstate(invalid="ignore"):
        return np.where(new == NEG_INF, NEG_INF, new - old)


def _best_reachable(score: np.ndarray, length: int, limit: np.ndarray, gain: float) -> np.ndarray:
    """The best score per token a live hypothesis with total ``score`` after ``length`` tokens (with ``<sos>``)
    can still end with, by ``limit`` tokens (with ``<eos>``) at most. Each further token adds a log-probability
    (at most 0) and an LM change of at most ``gain`` (0 but for an ARPA file whose backoff weights exceed 1:
    see :attr:`WordLMScorer.max_gain`), so ending after ``m`` tokens gives at most ``(score + gain (m - length)) /
    m``. That is monotone in ``m``: the best is at the soonest end or the latest."""
    latest = (score + gain * (limit - length)) / limit
    if gain == 0.0:
        return latest
    return np.maximum((score + gain) / (length + 1), latest)


def attention_beam_search(network: AttentionNetwork, memory: Memory, lens,
                          options: AttentionBeamOptions = AttentionBeamOptions(), ctc: np.ndarray | None = None,
                          lm: WordLMScorer | None = None) -> list[list[Hypothesis]]:
    """Beam search over ``B`` utterances at once (``B x beam`` hypotheses per decoder call); ``lens (B,)`` encoder
    frames, ``ctc (B, T, V)`` the CTC head's log-probabilities where the model has one.

    Returns up to ``nbest`` hypotheses per utterance, best first, ranked by score per token. With
    ``ctc_weight > 0`` each step scores ``(1 - w) log P_att + w (log P_ctc(g c ...) - log P_ctc(g ...))``;
    with ``lm``, the word LM's fused score (without its word bonus: see the module's docstring) is added.
    """
    lens = np.asarray(lens, dtype=np.int64)
    B, K = len(lens), options.beam_size
    N = B * K
    owners = np.repeat(np.arange(B), K)
    memory = network.select_memory(memory, owners)
    state = network.initial_state(memory)
    history = np.full((N, 1), SOS, dtype=np.int64)
    scores = np.full((B, K), NEG_INF, dtype=np.float32)
    scores[:, 0] = 0.0                                      # one live hypothesis to start from
    limit = max_lengths(lens, options)[owners]
    w = options.ctc_weight
    scorer = None
    if w > 0:
        if ctc is None:
            raise ValueError("decode.ctc_weight > 0 needs a model with a CTC head (family joint, or model.ctc_weight > 0)")
        scorer = CTCPrefixScorer(pad_with_certain_blank(ctc, lens)[owners])
    gain = 0.0                                              # the most one more token can raise a score
    if lm is not None:
        lm = lm.with_word_bonus(0.0)
        lm_states = [lm.initial()] * N
        gain = lm.max_gain
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    best_finished = np.full(B, NEG_INF)                     # best per-token score among finished hypotheses
    limit_per_utt = limit[::K].astype(np.float64)
    done = np.zeros(B, dtype=bool)
    for i in range(int(limit.max())):
        logp, state = network.step(memory, state, history)  # (N, V)
        V = logp.shape[1]
        C = min(V - 1, options.candidates or math.ceil(1.5 * K))
        if scorer is not None:
            att = logp.copy()
            att[:, EOS] = NEG_INF                           # <eos> is scored separately below
            cand = top_k(att, C)                            # (N, C)
            psi, r, ctc_eos = scorer.score(cand)
            step = np.full_like(logp, NEG_INF)
            np.put_along_axis(step, cand, (1 - w) * np.take_along_axis(logp, cand, axis=1)
                              + w * _increase(psi, scorer.psi[:, None]), axis=1)
            step[:, EOS] = (1 - w) * logp[:, EOS] + w * _increase(ctc_eos, scorer.psi)
        else:
            step = logp.copy()
        at_limit = i + 1 >= limit
        step[at_limit] = np.where(np.arange(V) == EOS, step[at_limit], NEG_INF)
        if lm is not None:
            step, lm_following = _fuse_word_lm(step, scores.reshape(N), lm, lm_states, K, C)
        total = (scores.reshape(N, 1) + step).reshape(B, K * V)
        index = top_k(total, K)                             # (B, K)
        top = np.take_along_axis(total, index, axis=1).reshape(N)
        source = (index // V + np.arange(B)[:, None] * K).reshape(N)
        tokens = (index % V).reshape(N)
        lengths = history.shape[1]                          # tokens so far incl. <sos>; + <eos> = this many
        for n in np.flatnonzero((tokens == EOS) & (top > NEG_INF)).tolist():
            b = n // K
            if not done[b]:
                per_token = float(top[n]) / lengths
                finished[b].append(Hypothesis(history[source[n], 1:].tolist(), per_token))
                best_finished[b] = max(best_finished[b], per_token)
        top = np.where(tokens == EOS, NEG_INF, top).astype(np.float32)
        # An utterance is done when no live hypothesis can still beat its best finished one.
        live_best = top.reshape(B, K).max(axis=-1).astype(np.float64)
        with np.errstate(invalid="ignore"):             # -inf compared with -inf: done either way
            done |= (live_best == NEG_INF) | (best_finished >= _best_reachable(live_best, lengths, limit_per_utt, gain))
        if done.all():
            break
        scores = np.where(done[:, None], NEG_INF, top.reshape(B, K)).astype(np.float32)
        state = network.select_state(state, source)
        history = np.concatenate([history[source], tokens[:, None]], axis=1)
        if lm is not None:
            lm_states = [lm_following.get((s, t), lm_states[s]) for s, t in zip(source.tolist(), tokens.tolist())]
        if scorer is not None:
            safe = np.where(tokens == EOS, cand[source, 0], tokens)
            column = (cand[source] == safe[:, None]).argmax(-1)
            scorer.advance(source, safe, psi, r, column)
    return [sorted(f, key=lambda hyp: -hyp.score)[: options.nbest] or [Hypothesis([], NEG_INF)] for f in finished]


def stepwise_sequence_log_probs(network: AttentionNetwork, memory: Memory, sequences: list[list[int]]) -> np.ndarray:
    """Log-probability ``(n,)`` of each token list + ``<eos>`` (memory row ``i`` for sequence ``i``), by decoder
    steps over the batch of them."""
    n = len(sequences)
    lens = np.array([len(s) for s in sequences], dtype=np.int64)
    targets = np.zeros((n, int(lens.max()) + 1), dtype=np.int64)
    for i, s in enumerate(sequences):
        targets[i, : len(s)] = s
        targets[i, len(s)] = EOS
    state = network.initial_state(memory)
    history = np.full((n, 1), SOS, dtype=np.int64)
    total = np.zeros(n, dtype=np.float64)
    for i in range(targets.shape[1]):
        logp, state = network.step(memory, state, history)
        total += np.where(i <= lens, logp[np.arange(n), targets[:, i]], 0.0)
        history = np.concatenate([history, targets[:, i: i + 1]], axis=1)
    return total


def attention_rescore(network: AttentionNetwork, memory: Memory, lens, ctc: np.ndarray | None,
                      options: AttentionBeamOptions = AttentionBeamOptions(), lm: WordLMScorer | None = None,
                      ctc_options: CTCBeamOptions | None = None) -> list[list[Hypothesis]]:
    """CTC prefix beam search (``ctc_options``' pruning; its beam and list size are ``options.beam_size``) gives an
    n-best list; the decoder rescores it in one batch.
    Final score: ``w log P_ctc + (1 - w) log P_att (+ the LM's fused score)`` (``w = ctc_weight``), the LM
    also guiding the CTC search. Cheaper than the one-pass joint search: the decoder runs once per hypothesis
    instead of once per output step."""
    if ctc is None:
        raise ValueError("attention rescoring needs a model with a CTC head (family joint, or model.ctc_weight > 0)")
    search = replace(ctc_options or CTCBeamOptions(), beam_size=options.beam_size, nbest=options.beam_size)
    nbests = [ctc_prefix_beam_search(ctc[b], int(n), search, lm=lm) for b, n in enumerate(np.asarray(lens).tolist())]
    flat = [(b, hyp) for b, hyps in enumerate(nbests) for hyp in hyps]
    rows = network.select_memory(memory, np.array([b for b, _ in flat], dtype=np.int64))
    att = np.asarray(network.sequence_log_probs(rows, [hyp.tokens for _, hyp in flat])).tolist()
    w = options.ctc_weight
    out: list[list[Hypothesis]] = [[] for _ in nbests]
    for (b, hyp), a in zip(flat, att):
        fused = lm.score_tokens(hyp.tokens) if lm is not None else 0.0   # part of a CTC score searched with the LM
        out[b].append(Hypothesis(hyp.tokens, w * (hyp.score - fused) + (1 - w) * a + fused))
    return [sorted(hyps, key=lambda x: -x.score)[: options.nbest] for hyps in out]


def rescores(has_ctc_head: bool, config: DecodeConfig) -> bool:
    """Whether an attention model's beam search rescores a CTC n-best list instead of searching in one pass."""
    return has_ctc_head and config.ctc_weight > 0 and config.joint_search == "rescore"


def uses_word_bonus(objective: str, has_ctc_head: bool, config: DecodeConfig) -> bool:
    """Whether a model's beam search adds the LM's word bonus: every family's does but the one-pass attention
    search's, which ranks by score per token instead (see the module's docstring)."""
    return objective != "attention" or rescores(has_ctc_head, config)


def attention_search(network: AttentionNetwork, memory: Memory, lens, ctc: np.ndarray | None, config: DecodeConfig,
                     lm: WordLMScorer | None = None, nbest: int = 1) -> list[list[Hypothesis]]:
    """Up to ``nbest`` hypotheses of each utterance, best first, by the search ``config`` names: greedy at beam 1,
    else the one-pass beam search (joint with the CTC head's prefix scores where the model has one) or the
    rescoring of a CTC n-best list (``joint_search: rescore``)."""
    # CTC scores join the search only when the model has a CTC head
    w = config.ctc_weight if ctc is not None else 0.0
    options = AttentionBeamOptions(beam_size=config.beam_size, ctc_weight=w, candidates=config.candidates,
                                   max_len_ratio=config.max_len_ratio, min_len=config.min_len, nbest=nbest)
    if config.beam_size <= 1:
        return [[h] for h in attention_greedy(network, memory, lens, options)]
    if rescores(ctc is not None, config):
        return attention_rescore(network, memory, lens, ctc, options, lm=lm, ctc_options=ctc_beam_options(config))
    return attention_beam_search(network, memory, lens, options, ctc, lm)
