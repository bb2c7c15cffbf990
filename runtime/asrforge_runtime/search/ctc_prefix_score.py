"""CTC prefix scores for joint CTC/attention search (Watanabe et al. 2017), batched over hypotheses, in numpy.

For a hypothesis ``g`` and a candidate token ``c`` the scorer gives ``log P_ctc(g c ... | x)``, the
probability of every CTC labeling that starts with ``g c``; the search adds its increment over
``log P_ctc(g ...)`` to the attention score. ``<eos>`` scores ``log P_ctc(g | x)``, the whole labeling.

Frames past an utterance's end are made "certain blank" (log-prob 0 for blank, -inf for the rest),
which carries every probability through unchanged: padding changes nothing.
"""

from __future__ import annotations

import numpy as np

NEG_INF = float("-inf")


def pad_with_certain_blank(log_probs, lens, blank: int = 0) -> np.ndarray:
    """``(B, T, V)`` CTC log-probs (anything ``numpy.asarray`` reads) with frames ``>= lens`` set to blank with
    probability one; float32."""
    out = np.array(np.asarray(log_probs), dtype=np.float32)
    pad = np.arange(out.shape[1])[None, :] >= np.asarray(lens).reshape(-1, 1)     # (B, T)
    out[pad] = NEG_INF
    out[..., blank][pad] = 0.0
    return out


class CTCPrefixScorer:
    """State for ``N`` hypotheses of ``length`` tokens each: ``r (T, 2, N)`` — log-probs of the prefix's alignments
    over frames ``0..t`` ending in a non-blank (0) or a blank (1) — plus the prefix score ``psi (N,)`` and last token
    ``last (N,)``."""

    def __init__(self, log_probs: np.ndarray, blank: int = 0):
        """``log_probs (N, T, V)``, already padded with :func:`pad_with_certain_blank`."""
        self.x = np.ascontiguousarray(np.asarray(log_probs, dtype=np.float32).transpose(1, 0, 2))   # (T, N, V)
        self.blank = blank
        T, N, _ = self.x.shape
        self.r = np.full((T, 2, N), NEG_INF, dtype=np.float32)
        self.r[:, 1] = np.cumsum(self.x[:, :, blank], axis=0)      # the empty prefix: blanks only
        self.psi = np.zeros(N, dtype=np.float32)
        self.last = np.full(N, -1, dtype=np.int64)
        self.empty = np.ones(N, dtype=bool)
        self.length = 0

    def score(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``candidates (N, C)`` token ids -> ``(psi (N, C), r (T, 2, N, C), eos (N,))``: prefix scores of
        ``g c``, their alignment tables (to keep the chosen ones) and ``log P_ctc(g)`` for ``<eos>``."""
        T, N, _ = self.x.shape
        xs = np.take_along_axis(self.x, np.broadcast_to(candidates[None], (T,) + candidates.shape), axis=2)  # (T, N, C)
        xb = self.x[:, :, self.blank][..., None]                                                  # (T, N, 1)
        # phi: alignments of g that may be followed by c (a repeat of g's last token needs a blank between)
        same = (candidates == self.last[:, None])[None]                                           # (1, N, C)
        phi = np.where(same, self.r[:, 1, :, None], np.logaddexp(self.r[:, 0], self.r[:, 1])[..., None])
        r = np.full((T, 2) + candidates.shape, NEG_INF, dtype=np.float32)
        r[0, 0] = np.where(self.empty[:, None], xs[0], NEG_INF)
        psi = r[0, 0].copy()
        # g c holds length + 1 tokens: no alignment of it ends before frame `length`, so r stays -inf there
        with np.errstate(invalid="ignore"):     # -inf - -inf inside logaddexp of two impossible paths: stays -inf
            for t in range(max(1, self.length), T):
                r[t, 0] = np.logaddexp(r[t - 1, 0], phi[t - 1]) + xs[t]
                r[t, 1] = np.logaddexp(r[t - 1, 0], r[t - 1, 1]) + xb[t]
                psi = np.logaddexp(psi, phi[t - 1] + xs[t])
        eos = np.logaddexp(self.r[-1, 0], self.r[-1, 1])
        return psi, r, eos

    def advance(self, source: np.ndarray, tokens: np.ndarray, psi: np.ndarray, r: np.ndarray,
                column: np.ndarray) -> None:
        """Keep hypothesis ``source[i]`` extended by ``tokens[i]`` (candidate ``column[i]``) as the new hypothesis ``i``."""
        self.r = r[:, :, source, column]
        self.psi = psi[source, column]
        self.last = np.asarray(tokens, dtype=np.int64)
        self.empty = np.zeros_like(self.empty)
        self.length += 1
