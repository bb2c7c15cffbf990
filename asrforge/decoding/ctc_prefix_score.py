"""CTC prefix scores for joint CTC/attention search (Watanabe et al. 2017), batched over hypotheses.

For a hypothesis ``g`` and a candidate token ``c`` the scorer gives ``log P_ctc(g c ... | x)``, the
probability of every CTC labeling that starts with ``g c``; the search adds its increment over
``log P_ctc(g ...)`` to the attention score. ``<eos>`` scores ``log P_ctc(g | x)``, the whole labeling.

Frames past an utterance's end are made "certain blank" (log-prob 0 for blank, -inf for the rest),
which carries every probability through unchanged: padding changes nothing.
"""

from __future__ import annotations

import torch

from asrforge.nn.masks import valid_mask

NEG_INF = float("-inf")


def pad_with_certain_blank(log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """``(B, T, V)`` CTC log-probs with frames ``>= lens`` set to blank with probability one."""
    out = log_probs.float().clone()
    pad = ~valid_mask(lens, out.shape[1])
    out[pad] = NEG_INF
    out[..., blank] = out[..., blank].masked_fill(pad, 0.0)
    return out


class CTCPrefixScorer:
    """State for ``N`` hypotheses: ``r (T, 2, N)`` — log-probs of the prefix's alignments over frames ``0..t``
    ending in a non-blank (0) or a blank (1) — plus the prefix score ``psi (N,)`` and last token ``last (N,)``."""

    def __init__(self, log_probs: torch.Tensor, blank: int = 0):
        """``log_probs (N, T, V)``, already padded with :func:`pad_with_certain_blank`."""
        self.x = log_probs.transpose(0, 1)                    # (T, N, V)
        self.blank = blank
        T, N, _ = self.x.shape
        self.r = torch.full((T, 2, N), NEG_INF, device=self.x.device)
        self.r[:, 1] = torch.cumsum(self.x[:, :, blank], dim=0)   # the empty prefix: blanks only
        self.psi = torch.zeros(N, device=self.x.device)
        self.last = torch.full((N,), -1, dtype=torch.long, device=self.x.device)
        self.empty = torch.ones(N, dtype=torch.bool, device=self.x.device)

    def score(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``candidates (N, C)`` token ids -> ``(psi (N, C), r (T, 2, N, C), eos (N,))``: prefix scores of
        ``g c``, their alignment tables (to keep the chosen ones) and ``log P_ctc(g)`` for ``<eos>``."""
        T, N, _ = self.x.shape
        xs = self.x.gather(2, candidates[None].expand(T, -1, -1))          # (T, N, C)
        xb = self.x[:, :, self.blank][..., None]                            # (T, N, 1)
        # phi: alignments of g that may be followed by c (a repeat of g's last token needs a blank between)
        same = (candidates == self.last[:, None])[None]                     # (1, N, C)
        phi = torch.where(same, self.r[:, 1, :, None], torch.logaddexp(self.r[:, 0], self.r[:, 1])[..., None])
        r = torch.full((T, 2) + candidates.shape, NEG_INF, device=xs.device)
        r[0, 0] = torch.where(self.empty[:, None], xs[0], torch.full_like(xs[0], NEG_INF))
        psi = r[0, 0].clone()
        for t in range(1, T):
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + xs[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + xb[t]
            psi = torch.logaddexp(psi, phi[t - 1] + xs[t])
        eos = torch.logaddexp(self.r[-1, 0], self.r[-1, 1])
        return psi, r, eos

    def advance(self, source: torch.Tensor, tokens: torch.Tensor, psi: torch.Tensor, r: torch.Tensor,
                column: torch.Tensor) -> None:
        """Keep hypothesis ``source[i]`` extended by ``tokens[i]`` (candidate ``column[i]``) as the new hypothesis ``i``."""
        self.r = r[:, :, source, column]
        self.psi = psi[source, column]
        self.last = tokens
        self.empty = torch.zeros_like(self.empty)
