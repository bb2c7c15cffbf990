"""Attention decoders, chosen by ``model.decoder.kind``: LAS's LSTM speller and a Transformer decoder.

Both answer the same calls, which is all the training objective and the beam searches use:

- ``prepare(memory (B, T, D), lens (B,)) -> DecoderMemory`` once per batch;
- ``forward(memory, tokens_in (B, L), sampling_prob) -> logits (B, L, V)``: teacher forcing over
  ``<sos> y1 .. yL-1`` (with scheduled sampling where the decoder supports it);
- ``initial_state(memory) -> dict`` and ``step(memory, state, history (N, i)) -> (logits (N, V), state)``: one
  step of search; every state tensor has the hypotheses on dim 0 so a search reorders it with ``index_select``;
- ``alignment(memory, tokens_in (B, L)) -> (B, P, L, T)``: where the decoder looks in the memory for each of the
  tokens it predicts after ``tokens_in`` (teacher forcing), in ``P`` panels named by ``alignment_panels`` — for
  people to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from asrforge.nn.attention import LocationAwareAttention
from asrforge.nn.linear import Linear
from asrforge.nn.masks import valid_mask
from asrforge.nn.transformer import DecoderLayer, sinusoidal_positions
from asrforge.registry import DECODERS


@dataclass
class DecoderMemory:
    """Encoder output as a decoder reads it: ``memory (N, T, D)``, ``lens (N,)``, ``mask (N, T)`` and any
    per-utterance precomputation (``extra``) — all with utterances (or hypotheses) on dim 0."""

    memory: torch.Tensor
    lens: torch.Tensor
    mask: torch.Tensor
    extra: dict = field(default_factory=dict)


@dataclass
class LSTMDecoderConfig:
    kind: str = "lstm"
    hidden: int = 256
    layers: int = 1
    embed: int = 128
    attn_dim: int = 128
    location_channels: int = 10
    location_kernel: int = 31
    dropout: float = 0.1

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1:
            raise ValueError("model.decoder.hidden and model.decoder.layers must be positive")


@DECODERS.register("lstm", LSTMDecoderConfig)
class LSTMDecoder(nn.Module):
    """LAS's speller: ``[embed(y_i-1); context_i-1] -> LSTM -> s_i``; location-aware attention with query ``s_i``
    gives ``context_i``; ``logits_i = W [s_i; context_i]``."""

    supports_sampling = True

    def __init__(self, config: LSTMDecoderConfig, memory_dim: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.embed)
        self.cells = nn.ModuleList(nn.LSTMCell(config.embed + memory_dim if i == 0 else config.hidden, config.hidden)
                                   for i in range(config.layers))
        self.attention = LocationAwareAttention(config.hidden, memory_dim, config.attn_dim, config.location_channels,
                                                config.location_kernel)
        self.output = nn.Sequential(Linear(config.hidden + memory_dim, config.hidden), nn.Tanh(),
                                    nn.Dropout(config.dropout), Linear(config.hidden, vocab_size))
        self.drop = nn.Dropout(config.dropout)

    def prepare(self, memory: torch.Tensor, lens: torch.Tensor) -> DecoderMemory:
        return DecoderMemory(memory, lens, valid_mask(lens, memory.shape[1]),
                             {"proj": self.attention.project_memory(memory)})

    def initial_state(self, mem: DecoderMemory) -> dict[str, torch.Tensor]:
        N, T, D = mem.memory.shape
        zeros = mem.memory.new_zeros(N, self.config.hidden)
        state = {"context": mem.memory.new_zeros(N, D), "weights": mem.memory.new_zeros(N, T)}
        for i in range(self.config.layers):
            state[f"h{i}"], state[f"c{i}"] = zeros, zeros
        return state

    def _step(self, mem: DecoderMemory, state: dict, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x = torch.cat([self.embed(tokens), state["context"]], dim=-1)
        new = {}
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (state[f"h{i}"], state[f"c{i}"]))
            new[f"h{i}"], new[f"c{i}"] = h, c
            x = self.drop(h)
        context, weights = self.attention(x, mem.memory, mem.extra["proj"], mem.mask, state["weights"])
        new["context"], new["weights"] = context, weights
        return self.output(torch.cat([x, context], dim=-1)), new

    def step(self, mem: DecoderMemory, state: dict, history: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self._step(mem, state, history[:, -1])

    alignment_panels = ["location-aware attention"]

    def alignment(self, mem: DecoderMemory, tokens_in: torch.Tensor) -> torch.Tensor:
        """The location-aware attention's weights at each step: ``(B, 1, L, T)``."""
        state, weights = self.initial_state(mem), []
        for i in range(tokens_in.shape[1]):
            _, state = self._step(mem, state, tokens_in[:, i])
            weights.append(state["weights"])
        return torch.stack(weights, dim=1)[:, None]

    def forward(self, mem: DecoderMemory, tokens_in: torch.Tensor, sampling_prob: float = 0.0) -> torch.Tensor:
        state, outputs = self.initial_state(mem), []
        for i in range(tokens_in.shape[1]):
            tokens = tokens_in[:, i]
            if i > 0 and sampling_prob > 0.0:
                # scheduled sampling: feed the model's own previous guess instead of the truth, at random
                own = outputs[-1].detach().argmax(-1)
                pick = torch.rand(tokens.shape, device=tokens.device) < sampling_prob
                tokens = torch.where(pick, own, tokens)
            logits, state = self._step(mem, state, tokens)
            outputs.append(logits)
        return torch.stack(outputs, dim=1)


@dataclass
class TransformerDecoderConfig:
    kind: str = "transformer"
    d_model: int = 144
    heads: int = 4
    layers: int = 3
    ff: int = 576
    dropout: float = 0.1

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"model.decoder.d_model={self.d_model} must be divisible by model.decoder.heads={self.heads}")


@DECODERS.register("transformer", TransformerDecoderConfig)
class TransformerDecoder(nn.Module):
    """Causal pre-norm Transformer decoder with cross-attention to the encoder output."""

    supports_sampling = False

    def __init__(self, config: TransformerDecoderConfig, memory_dim: int, vocab_size: int):
        super().__init__()
        self.d_model = config.d_model
        self.embed = nn.Embedding(vocab_size, config.d_model)
        self.memory_proj = Linear(memory_dim, config.d_model) if memory_dim != config.d_model else nn.Identity()
        self.layers = nn.ModuleList(DecoderLayer(config.d_model, config.heads, config.ff, config.dropout)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.out = Linear(config.d_model, vocab_size)
        self.drop = nn.Dropout(config.dropout)

    def prepare(self, memory: torch.Tensor, lens: torch.Tensor) -> DecoderMemory:
        memory = self.memory_proj(memory)
        extra = {}
        for i, layer in enumerate(self.layers):   # cross-attention keys/values, projected once per utterance
            extra[f"k{i}"], extra[f"v{i}"] = layer.cross_attn.project_kv(memory)
        return DecoderMemory(memory, lens, valid_mask(lens, memory.shape[1]), extra)

    def _embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        # no sqrt(d_model) scaling: nn.Embedding starts at unit variance already, and scaling it would let the
        # token embedding drown the cross-attention in the residual stream (the decoder then learns only a
        # language model: measured, dev WER stuck above 100 % on the demo corpus)
        L = tokens.shape[1]
        return self.embed(tokens) + sinusoidal_positions(start + L, self.d_model, tokens.device)[start:]

    def forward(self, mem: DecoderMemory, tokens_in: torch.Tensor, sampling_prob: float = 0.0) -> torch.Tensor:
        L = tokens_in.shape[1]
        y = self.drop(self._embed(tokens_in))
        causal = torch.ones(L, L, dtype=torch.bool, device=y.device).tril()[None]
        memory_mask = mem.mask[:, None, :]
        for layer in self.layers:
            y = layer(y, mem.memory, causal, memory_mask)
        return self.out(self.norm(y))

    @property
    def alignment_panels(self) -> list[str]:
        return [f"decoder layer {i + 1}, heads averaged" for i in range(len(self.layers))]

    def alignment(self, mem: DecoderMemory, tokens_in: torch.Tensor) -> torch.Tensor:
        """Each layer's cross-attention weights, averaged over its heads: ``(B, layers, L, T)``."""
        L = tokens_in.shape[1]
        y = self._embed(tokens_in)
        causal = torch.ones(L, L, dtype=torch.bool, device=y.device).tril()[None]
        memory_mask = mem.mask[:, None, :]
        panels = []
        for layer in self.layers:
            panels.append(layer.cross_weights(y, mem.memory, causal, memory_mask).mean(1))
            y = layer(y, mem.memory, causal, memory_mask)
        return torch.stack(panels, dim=1)

    def initial_state(self, mem: DecoderMemory) -> dict[str, torch.Tensor]:
        """Empty self-attention key/value caches, one pair per layer: ``(N, H, 0, Dh)``."""
        N = mem.memory.shape[0]
        state = {}
        for i, layer in enumerate(self.layers):
            empty = mem.memory.new_zeros(N, layer.self_attn.heads, 0, layer.self_attn.head_dim)
            state[f"k{i}"], state[f"v{i}"] = empty, empty
        return state

    def step(self, mem: DecoderMemory, state: dict, history: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Only the newest token is run; earlier positions live in the key/value caches."""
        y = self._embed(history[:, -1:], start=history.shape[1] - 1)
        memory_mask = mem.mask[:, None, :]
        new = {}
        for i, layer in enumerate(self.layers):
            y, (new[f"k{i}"], new[f"v{i}"]) = layer.step(y, (state[f"k{i}"], state[f"v{i}"]),
                                                         (mem.extra[f"k{i}"], mem.extra[f"v{i}"]), memory_mask)
        return self.out(self.norm(y))[:, 0], new


def decoder_field(default: str):
    return field(default=None, metadata={"registry": DECODERS, "key": "kind", "default": default})


def build_decoder(config, memory_dim: int, vocab_size: int) -> nn.Module:
    return DECODERS.get(config.kind).cls(config, memory_dim, vocab_size)
