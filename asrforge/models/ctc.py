"""The core recognizer: conv front end (x4 subsampling) + stacked BiLSTM/GRU + linear + log-softmax, trained with CTC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from asrforge.nn.subsampling import Conv2dSubsampling
from asrforge.nn.rnn import RNNStack
from asrforge.registry import MODELS


@dataclass
class CTCModelConfig:
    family: str = "ctc"
    rnn_type: Literal["lstm", "gru"] = "lstm"
    hidden: int = 256
    layers: int = 3
    bidirectional: bool = True
    dropout: float = 0.1
    conv_channels: int = 32

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1:
            raise ValueError("model.hidden and model.layers must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")


@MODELS.register("ctc", CTCModelConfig)
class CTCModel(nn.Module):
    """``forward(x (B, T, D), x_lens (B,)) -> (log_probs (B, T', V), out_lens (B,))`` with ``T' = ceil(T / 4)``."""

    def __init__(self, config: CTCModelConfig, input_dim: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.frontend = Conv2dSubsampling(input_dim, config.hidden, config.conv_channels)
        self.encoder = RNNStack(config.hidden, config.hidden, config.layers, config.bidirectional,
                                config.dropout, config.rnn_type)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.out_dim, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.frontend.output_lengths(lengths)

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder contract: ``(B, T, D), (B,) -> (B, T', H), (B,)``."""
        h, h_lens = self.frontend(x, x_lens)
        return self.encoder(h, h_lens)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, h_lens = self.encode(x, x_lens)
        # log-softmax in float32 even under autocast: CTC needs the precision
        return torch.log_softmax(self.head(self.dropout(h)).float(), dim=-1), h_lens


def build_model(config, input_dim: int, vocab_size: int) -> nn.Module:
    """Instantiate the family named by ``config.family`` from the registry."""
    return MODELS.get(config.family).cls(config, input_dim, vocab_size)
