"""CTC searches: greedy (best path) and prefix beam search (best labeling, alignments summed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from asrforge.decoding.hypothesis import Hypothesis

NEG_INF = float("-inf")


def _logaddexp(*xs: float) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """``(B, T, V), (B,) -> B`` token lists: argmax per frame, repeats merged, blanks removed."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for b, n in enumerate(lengths.tolist()):
        path = best[b, :n]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        out.append([t for t in path[keep].tolist() if t != blank])
    return out


@dataclass(frozen=True)
class CTCBeamOptions:
    beam_size: int = 8
    token_beam: int | None = None     # tokens tried per frame; None means beam_size
    prune_logprob: float = -12.0      # tokens below this frame log-probability are not tried
    nbest: int = 1


def ctc_prefix_beam_search(log_probs: torch.Tensor, length: int, options: CTCBeamOptions = CTCBeamOptions(),
                           blank: int = 0) -> list[Hypothesis]:
    """Prefix beam search over one utterance ``(T, V)``; returns up to ``options.nbest`` hypotheses, best first.

    Each prefix keeps two log probabilities: of all alignments ending in blank (``pb``) and in its
    last token (``pnb``). A token equal to the prefix's last one extends the prefix only from
    ``pb`` (a blank separates them); from ``pnb`` it is a repeat and the prefix is unchanged.
    With a beam wide enough to keep every prefix this is exact: it finds the labeling whose
    alignments have the largest total probability.
    """
    lp = log_probs[:length].detach().float().cpu().numpy()
    token_beam = options.token_beam or options.beam_size
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for t in range(lp.shape[0]):
        frame = lp[t]
        order = np.argsort(-frame)[: token_beam + 1]
        candidates = [int(c) for c in order if c != blank and frame[c] >= options.prune_logprob][:token_beam]
        p_blank = float(frame[blank])
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, pb=NEG_INF, pnb=NEG_INF):
            cur = nxt.get(prefix)
            if cur is None:
                nxt[prefix] = [pb, pnb]
            else:
                cur[0] = _logaddexp(cur[0], pb)
                cur[1] = _logaddexp(cur[1], pnb)

        for prefix, (pb, pnb) in beams.items():
            add(prefix, pb=_logaddexp(pb, pnb) + p_blank)
            last = prefix[-1] if prefix else None
            for c in candidates:
                p = float(frame[c])
                if c == last:
                    add(prefix, pnb=pnb + p)              # repeat collapses into the same prefix
                    add(prefix + (c,), pnb=pb + p)        # blank in between: a new token
                else:
                    add(prefix + (c,), pnb=_logaddexp(pb, pnb) + p)
        scored = [(_logaddexp(*v), k, v) for k, v in nxt.items()]
        # impossible prefixes (probability 0, e.g. a repeat with no frame for the blank between) are dropped
        scored = sorted((s for s in scored if s[0] > NEG_INF), key=lambda s: s[0], reverse=True)
        beams = {k: (v[0], v[1]) for _, k, v in scored[: options.beam_size]}
    ranked = sorted(beams.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)
    return [Hypothesis(list(k), _logaddexp(*v)) for k, v in ranked[: options.nbest]]
