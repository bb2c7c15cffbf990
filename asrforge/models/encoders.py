"""Encoders, chosen by ``model.encoder.kind``. Every one keeps the contract
``forward(x (B, T, D), x_lens (B,)) -> (h (B, T', out_dim), h_lens (B,))`` and never lets padding change a
real frame's output, so any head (CTC, attention decoder, transducer) can sit on any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from asrforge.nn.conformer import ConformerLayer
from asrforge.nn.masks import chunk_mask, valid_mask
from asrforge.nn.rnn import RNNStack
from asrforge.nn.subsampling import Conv2dSubsampling
from asrforge.nn.transformer import EncoderLayer, sinusoidal_positions
from asrforge.registry import ENCODERS


def _check_dropout(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError("model.encoder.dropout must be in [0, 1)")


def _check_front_end(config) -> None:
    if config.conv_freq_pool < 1 or config.conv_freq_pool % 2 == 0:
        raise ValueError(f"model.encoder.conv_freq_pool must be an odd number >= 1 (1: off), got {config.conv_freq_pool}")


def _check_chunks(config) -> None:
    if config.chunk_frames < 0:
        raise ValueError(f"model.encoder.chunk_frames must be >= 0 (0: attention over the whole input), "
                         f"got {config.chunk_frames}")
    if config.left_chunks < -1:
        raise ValueError(f"model.encoder.left_chunks must be >= 0, or -1 for every chunk before, got {config.left_chunks}")


@dataclass
class RNNEncoderConfig:
    kind: str = "rnn"
    rnn_type: Literal["lstm", "gru"] = "lstm"
    hidden: int = 256
    layers: int = 3
    bidirectional: bool = True
    dropout: float = 0.1
    conv_channels: int = 32
    conv_freq_pool: int = 1           # odd; > 1 max-pools the front end across bands (tolerance to formant shifts)

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1:
            raise ValueError("model.encoder.hidden and model.encoder.layers must be positive")
        _check_dropout(self.dropout)
        _check_front_end(self)

    @property
    def causal(self) -> bool:
        return not self.bidirectional


@ENCODERS.register("rnn", RNNEncoderConfig)
class RNNEncoder(nn.Module):
    """Conv front end (x4 subsampling) + stacked (Bi)LSTM/GRU."""

    def __init__(self, config: RNNEncoderConfig, input_dim: int):
        super().__init__()
        self.frontend = Conv2dSubsampling(input_dim, config.hidden, config.conv_channels, config.conv_freq_pool)
        self.rnn = RNNStack(config.hidden, config.hidden, config.layers, config.bidirectional, config.dropout, config.rnn_type)
        self.out_dim = self.rnn.out_dim

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rnn(*self.frontend(x, x_lens))

    # ---- streaming (unidirectional only) ----------------------------------------------------------------------
    def initial_state(self, x: torch.Tensor) -> "EncoderStream":
        """A new stream's state, for input frames like ``x (T, D)``."""
        return EncoderStream(self.frontend.initial_state(x))

    def forward_chunks(self, chunks: list[torch.Tensor], states: list["EncoderStream"],
                       finals: list[bool]) -> list[torch.Tensor]:
        """The next input frames of several streams ``(T_i, D)`` -> the output frames they complete ``(T_i', H)``,
        the recurrent layers run on all of them at once; ``finals[i]``: stream ``i``'s input ends here. A stream's
        outputs over its whole input equal :meth:`forward`'s on it, however the input is cut."""
        front = [self.frontend.forward_chunk(x, s.frontend, final) for x, s, final in zip(chunks, states, finals)]
        busy = [i for i, h in enumerate(front) if h.shape[0]]
        if not busy:
            return front
        lens = torch.tensor([front[i].shape[0] for i in busy])
        padded = nn.utils.rnn.pad_sequence([front[i] for i in busy], batch_first=True)
        previous = [states[i].rnn for i in busy]
        if all(p is None for p in previous):
            start = None
        else:
            zero = self.rnn.zero_state(1, padded)
            filled = [zero if p is None else p for p in previous]
            start = (tuple(torch.cat(parts, dim=1) for parts in zip(*filled)) if isinstance(zero, tuple)
                     else torch.cat(filled, dim=1))
        out, _, end = self.rnn.forward_state(padded, lens, start)
        for j, i in enumerate(busy):
            states[i].rnn = (tuple(part[:, j: j + 1] for part in end) if isinstance(end, tuple)
                             else end[:, j: j + 1])
            front[i] = out[j, : lens[j]]
        return front


@dataclass
class EncoderStream:
    """A stream's place in a recurrent encoder: its front end's, and the recurrent layers' state after the last
    output frame (None before the first)."""

    frontend: object
    rnn: object = None


@dataclass
class PyramidEncoderConfig:
    kind: str = "pyramid"
    rnn_type: Literal["lstm", "gru"] = "lstm"
    hidden: int = 256          # per direction
    layers: int = 1            # full-rate BiLSTM layers before the pyramid
    pyramid_layers: int = 3    # each halves time: 3 -> x8
    dropout: float = 0.1

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1 or self.pyramid_layers < 0:
            raise ValueError("model.encoder.hidden and layers must be positive, pyramid_layers non-negative")
        _check_dropout(self.dropout)

    @property
    def causal(self) -> bool:
        return False


@ENCODERS.register("pyramid", PyramidEncoderConfig)
class PyramidEncoder(nn.Module):
    """LAS's listener: BiLSTM layers, then pyramid layers that each concatenate pairs of frames (halving time)
    before a BiLSTM. An odd frame count is padded with one zero frame, exactly as batch padding would be,
    so an utterance's output is the same alone or in a batch; ``h_lens = ceil(x_lens / 2)`` per layer."""

    def __init__(self, config: PyramidEncoderConfig, input_dim: int):
        super().__init__()
        self.bottom = RNNStack(input_dim, config.hidden, config.layers, True, config.dropout, config.rnn_type)
        dim = self.bottom.out_dim
        self.pyramid = nn.ModuleList(RNNStack(2 * dim, config.hidden, 1, True, 0.0, config.rnn_type)
                                     for _ in range(config.pyramid_layers))
        self.drop = nn.Dropout(config.dropout)
        self.out_dim = dim

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, lens = self.bottom(x, x_lens)
        for layer in self.pyramid:
            h = h * valid_mask(lens, h.shape[1])[..., None]
            h = nn.functional.pad(h, (0, 0, 0, h.shape[1] % 2))     # an odd length gets a zero frame (no branch:
            B, T, D = h.shape                                       # a traced graph keeps the rule for any length)
            h = self.drop(h).reshape(B, T // 2, 2 * D)
            lens = torch.div(lens + 1, 2, rounding_mode="floor")
            h, lens = layer(h, lens)
        return h, lens


@dataclass
class TransformerEncoderConfig:
    kind: str = "transformer"
    d_model: int = 144
    heads: int = 4
    layers: int = 6
    ff: int = 576
    dropout: float = 0.1
    conv_channels: int = 32
    conv_freq_pool: int = 1           # odd; > 1 max-pools the front end across bands (tolerance to formant shifts)
    chunk_frames: int = 0             # > 0: attention within chunks of this many output frames (40 ms each) ...
    left_chunks: int = -1             # ... and this many chunks before (-1: all); what lets the encoder stream

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"model.encoder.d_model={self.d_model} must be divisible by model.encoder.heads={self.heads}")
        _check_dropout(self.dropout)
        _check_front_end(self)
        _check_chunks(self)

    @property
    def causal(self) -> bool:
        return self.chunk_frames > 0


@dataclass
class ChunkedStream:
    """A stream's place in a chunked-attention encoder: its front end's state, the front end's output frames not
    yet a whole chunk ``(n, D)``, how many frames it has passed through the layers, and each layer's cache."""

    frontend: object
    pending: torch.Tensor
    offset: int = 0
    caches: list = None


class ChunkedAttentionEncoder(nn.Module):
    """What the Transformer and Conformer encoders share: conv subsampling, then layers whose attention may be
    limited to chunks (``chunk_frames``) and some chunks before (``left_chunks``), and, when it is, streaming:
    the front end's frames are held until a chunk is whole, and each layer keeps the keys and values of the
    frames later chunks still attend (and a causal convolution's last inputs), so a stream's output over its
    whole input equals :meth:`forward`'s however the input is cut.

    Subclasses set ``frontend``, ``layers``, ``out_dim`` and define ``_embed(h (B, c, D), offsets)`` (what goes
    into the first layer for frames starting at those positions) and ``_finish(h)`` (after the last)."""

    def _setup_chunks(self, config) -> None:
        self.chunk_frames = config.chunk_frames
        self.keep = -1 if config.left_chunks < 0 else config.left_chunks * config.chunk_frames
        self.left_chunks = config.left_chunks

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, lens = self.frontend(x, x_lens)
        T = h.shape[1]
        h = self._embed(h, [0] * h.shape[0])
        valid = valid_mask(lens, T)
        mask = chunk_mask(T, self.chunk_frames, self.left_chunks, h.device)[None] if self.chunk_frames else None
        for layer in self.layers:
            h = layer(h, valid, mask)
        return self._finish(h), lens

    # ---- streaming (chunk_frames > 0) -------------------------------------------------------------------------
    def initial_state(self, x: torch.Tensor) -> ChunkedStream:
        """A new stream's state, for input frames like ``x (T, D)``."""
        if not self.chunk_frames:
            raise ValueError("this encoder attends over the whole input and cannot stream; "
                             "train it with model.encoder.chunk_frames > 0")
        like = x.new_zeros(0, self.out_dim)
        return ChunkedStream(self.frontend.initial_state(x), like, 0, [layer.empty_cache(like) for layer in self.layers])

    def forward_chunks(self, chunks: list[torch.Tensor], states: list[ChunkedStream],
                       finals: list[bool]) -> list[torch.Tensor]:
        """The next input frames of several streams ``(T_i, D)`` -> the output frames they complete
        ``(T_i', out_dim)``: every stream with a whole chunk (or the rest of its input, when ``finals[i]``) goes
        through the layers in one batch, chunk after chunk."""
        outs = [[] for _ in chunks]
        for x, s, final in zip(chunks, states, finals):
            s.pending = torch.cat([s.pending, self.frontend.forward_chunk(x, s.frontend, final)])
        C = self.chunk_frames
        while True:
            due = [i for i, s in enumerate(states) if s.pending.shape[0] >= C or (finals[i] and s.pending.shape[0])]
            if not due:
                break
            parts = [states[i].pending[:C] for i in due]
            lengths = [p.shape[0] for p in parts]
            h = self._embed(nn.utils.rnn.pad_sequence(parts, batch_first=True), [states[i].offset for i in due])
            for k, layer in enumerate(self.layers):
                h, caches = layer.forward_chunk(h, lengths, [states[i].caches[k] for i in due], self.keep)
                for i, cache in zip(due, caches):
                    states[i].caches[k] = cache
            h = self._finish(h)
            for j, i in enumerate(due):
                outs[i].append(h[j, : lengths[j]])
                states[i].pending = states[i].pending[lengths[j]:]
                states[i].offset += lengths[j]
        return [torch.cat(o) if o else s.pending.new_zeros(0, self.out_dim) for o, s in zip(outs, states)]


@ENCODERS.register("transformer", TransformerEncoderConfig)
class TransformerEncoder(ChunkedAttentionEncoder):
    """Conv subsampling x4, sinusoidal positions, pre-norm self-attention blocks, final LayerNorm."""

    def __init__(self, config: TransformerEncoderConfig, input_dim: int):
        super().__init__()
        self.frontend = Conv2dSubsampling(input_dim, config.d_model, config.conv_channels, config.conv_freq_pool)
        self.layers = nn.ModuleList(EncoderLayer(config.d_model, config.heads, config.ff, config.dropout)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.out_dim = config.d_model
        self._setup_chunks(config)

    def _embed(self, h: torch.Tensor, offsets: list[int]) -> torch.Tensor:
        B, c, D = h.shape
        if not any(offsets):    # every utterance from its start (the whole-input forward; no index table to trace)
            return self.drop(h + sinusoidal_positions(c, D, h.device)[None])
        table = sinusoidal_positions(max(offsets) + c, D, h.device)
        positions = torch.tensor(offsets, device=h.device)[:, None] + torch.arange(c, device=h.device)[None]
        return self.drop(h + table[positions])

    def _finish(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h)


@dataclass
class ConformerEncoderConfig:
    kind: str = "conformer"
    d_model: int = 144
    heads: int = 4
    layers: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1
    conv_channels: int = 32
    conv_freq_pool: int = 1           # odd; > 1 max-pools the front end across bands (tolerance to formant shifts)
    chunk_frames: int = 0             # > 0: attention within chunks of this many output frames (40 ms each) and a
    left_chunks: int = -1             # causal convolution; this many chunks before (-1: all); lets the encoder stream

    def __post_init__(self):
        if self.d_model % self.heads or (self.d_model // self.heads) % 2:
            raise ValueError(f"model.encoder.d_model={self.d_model} must split into model.encoder.heads={self.heads} "
                             "heads of even size (rotary positions rotate pairs)")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"model.encoder.conv_kernel must be odd, got {self.conv_kernel}")
        _check_dropout(self.dropout)
        _check_front_end(self)
        _check_chunks(self)

    @property
    def causal(self) -> bool:
        return self.chunk_frames > 0


@ENCODERS.register("conformer", ConformerEncoderConfig)
class ConformerEncoder(ChunkedAttentionEncoder):
    """Conv subsampling x4 + Conformer blocks (rotary self-attention: positions are relative, no table to outgrow);
    with ``chunk_frames`` the blocks' convolutions are causal."""

    def __init__(self, config: ConformerEncoderConfig, input_dim: int):
        super().__init__()
        self.frontend = Conv2dSubsampling(input_dim, config.d_model, config.conv_channels, config.conv_freq_pool)
        self.layers = nn.ModuleList(ConformerLayer(config.d_model, config.heads, config.ff_mult, config.conv_kernel,
                                                   config.dropout, causal=config.chunk_frames > 0)
                                    for _ in range(config.layers))
        self.drop = nn.Dropout(config.dropout)
        self.out_dim = config.d_model
        self._setup_chunks(config)

    def _embed(self, h: torch.Tensor, offsets: list[int]) -> torch.Tensor:
        return self.drop(h)       # rotary attention needs no positions added

    def _finish(self, h: torch.Tensor) -> torch.Tensor:
        return h


def check_streaming(config) -> None:
    """A model with ``streaming: true`` needs an encoder that sees no frames past its chunk and decodes chunk by
    chunk: a unidirectional recurrent one, or chunked attention."""
    if not config.streaming or config.encoder.causal:
        return
    fields = ENCODERS.get(config.encoder.kind).config.__dataclass_fields__
    fix = ("model.encoder.bidirectional: false" if "bidirectional" in fields
           else "model.encoder.chunk_frames > 0 (attention within chunks)" if "chunk_frames" in fields
           else "model.encoder.kind rnn with bidirectional: false, or conformer/transformer with chunk_frames > 0")
    raise ValueError(f"model.streaming needs an encoder that sees no frames past the chunk it is decoding; "
                     f"encoder {config.encoder.kind!r} here sees the whole input. Set {fix}")


def encoder_field(default: str):
    """A recipe field holding an encoder config chosen by ``kind`` (``default`` when the recipe names none)."""
    from dataclasses import field

    return field(default=None, metadata={"registry": ENCODERS, "key": "kind", "default": default})


def build_encoder(config, input_dim: int) -> nn.Module:
    return ENCODERS.get(config.kind).cls(config, input_dim)
