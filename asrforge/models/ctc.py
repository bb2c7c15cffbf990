"""The core recognizer: an encoder (by default conv x4 + stacked BiLSTM/GRU) + linear + log-softmax, trained with CTC."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asrforge.config import fill_registry_defaults
from asrforge.models.encoders import build_encoder, check_streaming, encoder_field
from asrforge.nn.linear import Linear
from asrforge.registry import MODELS


@dataclass
class CTCModelConfig:
    family: str = "ctc"
    encoder: object = encoder_field("rnn")
    dropout: float = 0.1          # before the output layer
    streaming: bool = False       # decodes audio as it arrives; requires a unidirectional encoder

    def __post_init__(self):
        fill_registry_defaults(self)
        check_streaming(self)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")


@MODELS.register("ctc", CTCModelConfig)
class CTCModel(nn.Module):
    """``forward(x (B, T, D), x_lens (B,)) -> (log_probs (B, T', V), out_lens (B,))``."""

    objective = "ctc"

    def __init__(self, config: CTCModelConfig, input_dim: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, input_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.head = Linear(self.encoder.out_dim, vocab_size)

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder contract: ``(B, T, D), (B,) -> (B, T', H), (B,)``."""
        return self.encoder(x, x_lens)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, tokens: torch.Tensor | None = None,
                token_lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, h_lens = self.encode(x, x_lens)
        return self.log_probs(h), h_lens

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """Encoder frames ``(..., H)`` -> log-probabilities ``(..., V)``."""
        # log-softmax in float32 even under autocast: CTC needs the precision
        return torch.log_softmax(self.head(self.dropout(h)).float(), dim=-1)

    def initial_stream(self, x: torch.Tensor):
        """A new stream's encoder state (``model.streaming``), for feature frames like ``x (T, D)``."""
        return self.encoder.initial_state(x)

    def forward_chunks(self, chunks: list[torch.Tensor], states: list, finals: list[bool]) -> list[torch.Tensor]:
        """The next feature frames of several streams ``(T_i, D)`` -> the log-probabilities ``(T_i', V)`` of the
        encoder frames they complete (see the encoder's ``forward_chunks``)."""
        return [self.log_probs(h) for h in self.encoder.forward_chunks(chunks, states, finals)]
