"""CTC loss that skips, and counts, utterances too short for their transcript."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class CTCLossOutput:
    loss: torch.Tensor | None   # mean over usable utterances of (sum over tokens) / tokens; None if none usable
    usable: torch.Tensor        # (B,) bool
    skipped: int


def min_ctc_frames(tokens: torch.Tensor, token_lens: torch.Tensor) -> torch.Tensor:
    """Frames CTC needs for each target: its length plus one blank between each repeated pair."""
    repeats = (tokens[:, 1:] == tokens[:, :-1]) & (torch.arange(1, tokens.shape[1], device=tokens.device)[None] < token_lens[:, None])
    return token_lens + repeats.sum(1)


def ctc_loss(log_probs: torch.Tensor, out_lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor,
             blank: int = 0) -> CTCLossOutput:
    """``log_probs (B, T, V)`` float32, ``tokens (B, L)``.

    Infeasible utterances (fewer output frames than :func:`min_ctc_frames`) are left out of the
    loss and reported in ``skipped``; they are never turned into a silent zero.
    """
    usable = (out_lens >= min_ctc_frames(tokens, token_lens)) & (token_lens > 0)
    skipped = int((~usable).sum())
    if not bool(usable.any()):
        return CTCLossOutput(None, usable, skipped)
    lp, ol, tk, tl = log_probs[usable], out_lens[usable], tokens[usable], token_lens[usable]
    per_utt = F.ctc_loss(lp.transpose(0, 1), tk, ol, tl, blank=blank, reduction="none", zero_infinity=True)
    # Normalize per token, so long and short utterances weigh alike per symbol.
    return CTCLossOutput((per_utt / tl.clamp(min=1)).mean(), usable, skipped)
