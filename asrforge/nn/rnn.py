"""Stacked (Bi)LSTM/GRU over packed sequences."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class RNNStack(nn.Module):
    """``(B, T, in_dim), (B,) -> (B, T, out_dim), (B,)``; packing makes outputs independent of padding."""

    def __init__(self, in_dim: int, hidden: int, layers: int, bidirectional: bool = True, dropout: float = 0.0,
                 rnn_type: Literal["lstm", "gru"] = "lstm"):
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn_type]
        self.rnn = rnn_cls(in_dim, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, x_lens, _ = self.forward_state(x, x_lens)
        return out, x_lens

    def zero_state(self, batch: int, like: torch.Tensor):
        """The state :meth:`forward_state` starts from when given None, for ``batch`` sequences like ``like``."""
        r = self.rnn
        zeros = like.new_zeros(r.num_layers * (2 if r.bidirectional else 1), batch, r.hidden_size)
        return (zeros, zeros) if isinstance(r, nn.LSTM) else zeros

    def forward_state(self, x: torch.Tensor, x_lens: torch.Tensor, state=None):
        """:meth:`forward` from ``state`` (None: zeros), also returning the state after each sequence's last frame:
        ``(layers * directions, B, hidden)``, a pair of them for an LSTM. Lengths must be at least 1."""
        packed = pack_padded_sequence(x, x_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, x_lens, state
