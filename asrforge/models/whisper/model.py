"""The Whisper encoder-decoder (Radford et al., 2022) in plain PyTorch.

Parameter names follow OpenAI's checkpoints, so their ``model_state_dict`` loads as is and
the other formats are renamed into it (see ``checkpoints.py``). The decoder keeps an explicit
key/value cache (:class:`DecoderCache`) instead of forward hooks; attention runs through
``scaled_dot_product_attention`` unless the caller asks for the cross-attention weights
(word timestamps), which SDPA does not return.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch import nn

from asrforge.nn.linear import GeluMLP, Linear, linear
from asrforge.preempt import yield_point


@dataclass(frozen=True)
class WhisperDims:
    """Sizes of one Whisper model; the same keys as OpenAI's ``dims`` entry."""
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activation dtype (half-precision statistics drift)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the weights are cast too: a half-precision model holds half-precision LayerNorm weights, and
        # layer_norm refuses a float32 input with them
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type(x.dtype)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Fixed encoder positions ``(length, channels)``: sines in the first half, cosines in the second."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    # on the CPU even inside a meta-device context (a model built to load a checkpoint into): they are not in every
    # file, and arange on the meta device imports sympy (0.7 s)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32, device="cpu"))
    t = torch.arange(length, dtype=torch.float32, device="cpu")[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class MultiHeadAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = Linear(d, d)
        self.key = Linear(d, d, bias=False)   # Whisper's key projection has no bias
        self.value = Linear(d, d)
        self.out = Linear(d, d)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D) -> (B, H, L, D/H)``"""
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.key(x)), self.split(self.value(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               causal: bool, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``q (B, H, L, d), k/v (B, H, S, d)`` -> ``(B, L, D)`` and, if asked, pre-softmax scores ``(B, H, L, S)``."""
        if need_weights:
            scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1])
            if causal:
                scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1 + k.shape[2] - q.shape[2]), -math.inf)
            if mask is not None:
                scores = scores.masked_fill(~mask, -math.inf)
            out = scores.softmax(-1).to(q.dtype) @ v
        else:
            scores = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d), scores

    def project_memory(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, D)`` -> keys transposed ``(B, H, d, T)`` and values ``(B, H, T, d)``, both contiguous: what a
        cached cross-attention reads at every decoding step, laid out as the two matmuls read it."""
        k, v = self.project_kv(x)
        return k.transpose(-1, -2).contiguous(), v.contiguous()

    def attend_memory(self, q: torch.Tensor, keys_t: torch.Tensor, v: torch.Tensor, need_weights: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over :meth:`project_memory`'s output: ``q (B, H, L, d)`` -> ``(B, L, D)`` and, if asked, the
        pre-softmax scores ``(B, H, L, T)``. Two plain matmuls: for a few query rows against 1500 stored
        positions the step is bound by reading the keys and values, and this layout reads them fastest (19 ms
        against SDPA's 25 ms for 8 windows x 5 beams x 6 layers of Whisper base, 2 cores)."""
        scores = (q @ keys_t).float() * (1.0 / math.sqrt(q.shape[-1]))
        out = scores.softmax(-1).to(q.dtype) @ v
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d), scores if need_weights else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Self-attention without a cache (the encoder, and training)."""
        k, v = self.project_kv(x)
        out, _ = self.attend(self.split(self.query(x)), k, v, mask, causal, False)
        return self.out(out)


class ResidualBlock(nn.Module):
    def __init__(self, d: int, heads: int, cross: bool = False):
        super().__init__()
        self.attn = MultiHeadAttention(d, heads)
        self.attn_ln = LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, heads) if cross else None
        self.cross_attn_ln = LayerNorm(d) if cross else None
        self.mlp = GeluMLP(d, 4 * d)
        self.mlp_ln = LayerNorm(d)


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, d: int, heads: int, layers: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, d))
        self.blocks = nn.ModuleList(ResidualBlock(d, heads) for _ in range(layers))
        self.ln_post = LayerNorm(d)
        self.checkpointing = False     # train.grad_checkpointing: recompute each block in the backward pass

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, 2T)`` log-mel -> ``(B, T, D)``; T is at most ``n_audio_ctx`` (1500 for 30 s)."""
        dtype = self.conv1.weight.dtype
        x = F.gelu(self.conv1(mel.to(dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.positional_embedding.shape[0]:
            raise ValueError(f"{mel.shape[-1]} mel frames is more than this encoder's {2 * self.positional_embedding.shape[0]}")
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            yield_point()       # a more urgent computation may run between two layers (asrforge.preempt)
            x = checkpoint(_encoder_block, block, x, use_reentrant=False) if recompute else _encoder_block(block, x)
        return self.ln_post(x)


def _encoder_block(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    x = x + block.attn(block.attn_ln(x))
    return x + block.mlp(block.mlp_ln(x))


class DecoderCache:
    """Keys and values of past decoder positions, kept in buffers per layer that grow as the text does.

    ``self_kv[i]`` is ``(k, v)`` each ``(N, H, capacity, d)``, of which the first ``length`` positions are
    filled; ``cross_kv[i]`` the projected audio features, keys transposed ``(N_audio, H, d, T)`` and values
    ``(N_audio, H, T, d)`` (:meth:`MultiHeadAttention.project_memory`), computed once per audio.
    A buffer starts with room for ``GROWTH`` positions past the first tokens and doubles when full, instead
    of holding the whole text context (448 positions: 440 MB for 8 windows x 5 beams of Whisper base).
    """

    GROWTH = 64

    def __init__(self):
        self.self_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer ``layer``'s keys/values ``(N, H, L, d)`` of the new positions after the ``length`` cached
        ones (at most ``limit`` positions in all) -> the keys/values of every position so far."""
        end = self.length + k.shape[2]
        held = self.self_kv[layer] if layer < len(self.self_kv) else None
        if held is None or held[0].shape[2] < end:
            capacity = min(limit, max(end + self.GROWTH, 2 * (held[0].shape[2] if held else 0)))
            grown = tuple(x.new_empty(x.shape[0], x.shape[1], capacity, x.shape[3]) for x in (k, v))
            if held is None:
                self.self_kv.append(grown)
            else:
                for old, buffer in zip(held, grown):
                    buffer[:, :, : self.length] = old[:, :, : self.length]
                self.self_kv[layer] = grown
        kb, vb = self.self_kv[layer]
        kb[:, :, self.length: end] = k
        vb[:, :, self.length: end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search: each surviving hypothesis takes its parent's past).

        Only the self-attention past moves: a hypothesis's parent is always a beam of the same audio,
        and those rows hold the same audio features."""
        n = self.length
        for kb, vb in self.self_kv:   # only the filled positions move; the buffers stay allocated
            kb[:, :, :n] = kb[:, :, :n].index_select(0, index)
            vb[:, :, :n] = vb[:, :, :n].index_select(0, index)

    def expand(self, n: int) -> None:
        """Each row becomes ``n`` consecutive rows (the beams or samples of one audio after its shared prompt)."""
        for i, pair in enumerate(self.self_kv):
            self.self_kv[i] = tuple(x.repeat_interleave(n, 0) for x in pair)

    def keep(self, rows: torch.Tensor, audio: torch.Tensor) -> None:
        """Go on with decoder rows ``rows`` only, which belong to the audios ``audio`` (indices into the current
        ones): the others are finished, and dropping them makes every later step cheaper."""
        n = self.length
        for i, pair in enumerate(self.self_kv):     # a layer at a time: the old copy goes before the next is made
            kept = tuple(x.new_empty(len(rows), *x.shape[1:]) for x in pair)
            for old, buffer in zip(pair, kept):
                buffer[:, :, :n] = old[:, :, :n].index_select(0, rows)
            self.self_kv[i] = kept
        for i, (ck, cv) in enumerate(self.cross_kv):
            self.cross_kv[i] = (ck.index_select(0, audio), cv.index_select(0, audio))


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, d: int, heads: int, layers: int):
        super().__init__()
        weight = torch.empty(n_vocab, d)
        if weight.device.type != "meta":
            # nn.Embedding's own init, unless built on the meta device to load a checkpoint into: there is nothing
            # to initialize then, and normal_ on the meta device imports sympy (0.7 s of every cold start)
            nn.init.normal_(weight)
        self.token_embedding = nn.Embedding(n_vocab, d, _weight=weight)
        self.positional_embedding = nn.Parameter(torch.empty(n_ctx, d))
        self.blocks = nn.ModuleList(ResidualBlock(d, heads, cross=True) for _ in range(layers))
        self.ln = LayerNorm(d)
        # None: logits come from the token embedding (tied weights). Int8 quantization puts a quantized copy of
        # that matrix here, because the vocabulary projection is the largest matmul of every decoding step.
        self.output_projection: nn.Module | None = None
        self.checkpointing = False     # train.grad_checkpointing: recompute each block in the backward pass

    def forward(self, tokens: torch.Tensor, audio: torch.Tensor | None, cache: DecoderCache | None = None,
                need_cross_weights: bool = False, logit_positions: list[int] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``tokens (N, L)`` new tokens; ``audio (N, T, D)`` encoder output (unused once the cache holds it).

        Returns logits ``(N, L, n_vocab)`` in float32, or ``(N, len(logit_positions), n_vocab)`` for only those
        of the new positions (a prompt of 200 tokens needs the last one: the vocabulary projection of all of
        them is most of the work, and 40 MB a row), and, if asked, each layer's cross-attention scores
        ``(N, H, L, T)``. With a cache, the new positions follow ``cache.length`` earlier ones.
        """
        offset = cache.length if cache is not None else 0
        n_new = tokens.shape[1]
        if offset + n_new > self.positional_embedding.shape[0]:
            raise ValueError(f"{offset + n_new} tokens is more than this decoder's context of {self.positional_embedding.shape[0]}")
        x = self.token_embedding(tokens) + self.positional_embedding[offset: offset + n_new]
        x = x.to(audio.dtype if audio is not None else cache.cross_kv[0][0].dtype)
        # new queries see every cached position and the new ones up to themselves
        mask = None
        if offset and n_new > 1:
            mask = torch.ones(n_new, offset + n_new, dtype=torch.bool, device=tokens.device).tril(offset)
        cross_weights = []
        recompute = self.checkpointing and self.training and torch.is_grad_enabled() and cache is None
        for i, block in enumerate(self.blocks):
            if recompute:      # teacher forcing in training: no cache, no cross-attention weights
                x = checkpoint(self._block, i, block, x, audio, None, None, False, use_reentrant=False)[0]
                continue
            x, w = self._block(i, block, x, audio, cache, mask, need_cross_weights)
            if w is not None:
                cross_weights.append(w)
        if cache is not None:
            cache.length = offset + n_new
        if logit_positions is not None:
            x = x[:, logit_positions]
        x = self.ln(x)
        if self.output_projection is not None:
            logits = self.output_projection(x).float()
        else:
            logits = linear(x, self.token_embedding.weight.to(x.dtype)).float()   # output projection tied to the embedding
        return logits, cross_weights

    def _block(self, i: int, block: ResidualBlock, x: torch.Tensor, audio: torch.Tensor | None,
               cache: DecoderCache | None, mask: torch.Tensor | None, need_cross_weights: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer ``i``: causal self-attention (through the cache when there is one), cross-attention to the
        audio, MLP; returns the new ``x`` and the cross-attention scores if asked."""
        n_new = x.shape[1]
        h = block.attn_ln(x)
        q, k, v = block.attn.split(block.attn.query(h)), *block.attn.project_kv(h)
        if cache is not None:
            k, v = cache.append(i, k, v, self.positional_embedding.shape[0])
        out, _ = block.attn.attend(q, k, v, mask, causal=mask is None and n_new > 1, need_weights=False)
        x = x + block.attn.out(out)

        h = block.cross_attn_ln(x)
        q = block.cross_attn.split(block.cross_attn.query(h))
        if cache is None:      # teacher forcing (training, word alignment): the audio's keys are used once
            out, w = block.cross_attn.attend(q, *block.cross_attn.project_kv(audio), None, False, need_cross_weights)
        else:
            if len(cache.cross_kv) <= i:
                cache.cross_kv.append(block.cross_attn.project_memory(audio))
            keys_t, values = cache.cross_kv[i]
            group = q.shape[0] // keys_t.shape[0]
            if group > 1 and not need_cross_weights:
                # beams of one audio share its keys/values: fold them into the query axis instead of copying them
                n, heads, length, d = q.shape
                audios = keys_t.shape[0]
                q = q.view(audios, group, heads, length, d).transpose(1, 2).reshape(audios, heads, group * length, d)
                out, w = block.cross_attn.attend_memory(q, keys_t, values, False)
                out = out.view(audios, group, length, -1).reshape(n, length, -1)
            else:
                out, w = block.cross_attn.attend_memory(q, keys_t, values, need_cross_weights)
        x = x + block.cross_attn.out(out)
        return x + block.mlp(block.mlp_ln(x)), w

    def cross_kv(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's cross-attention keys/values for ``audio (B, T, D)``, projected once per audio; a cache
        holding them serves ``B * n`` decoder rows (n beams or samples per audio, audio-major)."""
        return [block.cross_attn.project_memory(audio) for block in self.blocks]


class Whisper(nn.Module):
    def __init__(self, dims: WhisperDims, alignment_heads: list[tuple[int, int]] | None = None):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer)
        self.decoder = TextDecoder(dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer)
        # (layer, head) pairs whose cross-attention follows the audio; the reference defaults to the upper half
        if alignment_heads is None:
            half = dims.n_text_layer // 2
            alignment_heads = [(layer, head) for layer in range(half, dims.n_text_layer) for head in range(dims.n_text_head)]
        self.alignment_heads = [tuple(map(int, pair)) for pair in alignment_heads]

    @property
    def is_multilingual(self) -> bool:
        return self.dims.n_vocab >= 51865

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel)

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(B, L, n_vocab)`` for ``mel (B, n_mels, 3000)`` and ``tokens (B, L)``."""
        return self.decoder(tokens, self.encoder(mel))[0]
