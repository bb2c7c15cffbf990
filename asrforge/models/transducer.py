"""RNN-Transducer: any encoder + a prediction network (LSTM or stateless) + a joint network.

The blank (id 0) also starts the prediction network (there is no separate ``<sos>``). With
``model.streaming: true`` the encoder must see no future context, which is checked when the recipe loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from asrforge.config import fill_registry_defaults
from asrforge.models.encoders import build_encoder, check_streaming, encoder_field
from asrforge.nn.linear import Linear
from asrforge.registry import MODELS
from asrforge.text.special import BLANK_ID


@dataclass
class TransducerModelConfig:
    family: str = "rnnt"
    encoder: object = encoder_field("rnn")
    predictor: Literal["lstm", "stateless"] = "lstm"
    pred_hidden: int = 256
    pred_layers: int = 1
    context_size: int = 2        # tokens a stateless predictor sees
    joint_dim: int = 256
    dropout: float = 0.1
    streaming: bool = False      # requires a unidirectional encoder
    # > 0: an auxiliary CTC loss on the encoder, L = (1 - w) L_rnnt + w L_ctc (training only; decoding is the
    # transducer's). It gives the encoder a direct signal: a unidirectional encoder trained on the transducer loss
    # alone stayed on the label prior for a whole 10-minute demo run.
    ctc_weight: float = 0.0

    def __post_init__(self):
        fill_registry_defaults(self)
        if self.pred_hidden < 1 or self.pred_layers < 1 or self.joint_dim < 1 or self.context_size < 1:
            raise ValueError("model.pred_hidden, pred_layers, joint_dim and context_size must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError(f"model.ctc_weight must be in [0, 1) (0: no auxiliary CTC loss), got {self.ctc_weight}")
        check_streaming(self)


class LSTMPredictor(nn.Module):
    """``tokens (N, U) -> (N, U, H)``; one step: ``tokens (N,), state -> (N, H), state``."""

    def __init__(self, vocab_size: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden)
        self.rnn = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.drop(self.rnn(self.embed(tokens))[0])

    def initial_state(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        zeros = torch.zeros(n, self.rnn.num_layers, self.rnn.hidden_size, device=device)
        return {"h": zeros, "c": zeros}

    def step(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        out, (h, c) = self.rnn(self.embed(tokens)[:, None], (state["h"].transpose(0, 1).contiguous(),
                                                              state["c"].transpose(0, 1).contiguous()))
        return out[:, 0], {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}


class StatelessPredictor(nn.Module):
    """Ghodsi et al. (2020): the prediction is a function of the last ``context_size`` tokens only
    (embeddings concatenated, then a linear layer); no recurrence, so search states are tiny."""

    def __init__(self, vocab_size: int, hidden: int, context_size: int, dropout: float):
        super().__init__()
        self.context_size = context_size
        self.embed = nn.Embedding(vocab_size, hidden)
        self.mix = Linear(context_size * hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def _mix(self, context: torch.Tensor) -> torch.Tensor:
        """``(..., context_size)`` token ids -> ``(..., H)``."""
        e = self.embed(context)
        return self.drop(torch.relu(self.mix(e.flatten(-2))))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(tokens, (self.context_size - 1, 0), value=BLANK_ID)
        return self._mix(padded.unfold(1, self.context_size, 1))

    def initial_state(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"context": torch.full((n, self.context_size), BLANK_ID, dtype=torch.long, device=device)}

    def step(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        context = torch.cat([state["context"][:, 1:], tokens[:, None]], dim=1)
        return self._mix(context), {"context": context}


class TransducerOutput(NamedTuple):
    logits: torch.Tensor                    # (B, T', U+1, V)
    enc_lens: torch.Tensor                  # (B,)
    ctc_log_probs: torch.Tensor | None      # (B, T', V) with model.ctc_weight > 0


@MODELS.register("rnnt", TransducerModelConfig)
class TransducerModel(nn.Module):
    """``forward(x, x_lens, tokens (B, U), token_lens) -> TransducerOutput``."""

    objective = "transducer"

    def __init__(self, config: TransducerModelConfig, input_dim: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, input_dim)
        if config.predictor == "lstm":
            self.predictor = LSTMPredictor(vocab_size, config.pred_hidden, config.pred_layers, config.dropout)
        else:
            self.predictor = StatelessPredictor(vocab_size, config.pred_hidden, config.context_size, config.dropout)
        self.enc_proj = Linear(self.encoder.out_dim, config.joint_dim)
        self.pred_proj = Linear(config.pred_hidden, config.joint_dim)
        self.joint_out = Linear(config.joint_dim, vocab_size)
        self.aux_ctc = Linear(self.encoder.out_dim, vocab_size) if config.ctc_weight > 0 else None   # training only

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D) -> (B, T', joint_dim)`` already projected for the joint network."""
        h, h_lens = self.encoder(x, x_lens)
        return self.enc_proj(h), h_lens

    def initial_stream(self, x: torch.Tensor):
        """A new stream's encoder state (``model.streaming``), for feature frames like ``x (T, D)``."""
        return self.encoder.initial_state(x)

    def forward_chunks(self, chunks: list[torch.Tensor], states: list, finals: list[bool]) -> list[torch.Tensor]:
        """The next feature frames of several streams ``(T_i, D)`` -> the projected encoder frames ``(T_i', J)``
        they complete (see the encoder's ``forward_chunks``)."""
        return [self.enc_proj(h) for h in self.encoder.forward_chunks(chunks, states, finals)]

    def joint(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Projected encoder and predictor outputs (broadcastable) -> unnormalized logits over the vocabulary."""
        return self.joint_out(torch.tanh(enc + pred))

    def predict_step(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One prediction-network step for ``N`` hypotheses: ``(N,) -> (N, joint_dim)``."""
        g, state = self.predictor.step(tokens, state)
        return self.pred_proj(g), state

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, tokens: torch.Tensor,
                token_lens: torch.Tensor) -> TransducerOutput:
        h, h_lens = self.encoder(x, x_lens)
        enc = self.enc_proj(h)
        pred = self.pred_proj(self.predictor(nn.functional.pad(tokens, (1, 0), value=BLANK_ID)))
        ctc = torch.log_softmax(self.aux_ctc(h).float(), dim=-1) if self.aux_ctc is not None else None
        return TransducerOutput(self.joint(enc[:, :, None], pred[:, None]), h_lens, ctc)
