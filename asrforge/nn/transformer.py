"""Pre-norm Transformer blocks and sinusoidal positions."""

from __future__ import annotations

import math

import torch
from torch import nn

from asrforge.nn.attention import LayerCache, MultiHeadAttention
from asrforge.nn.linear import Linear


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """``(length, dim)`` absolute position encodings of Vaswani et al."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.net = nn.Sequential(Linear(dim, hidden), activation(), nn.Dropout(dropout), Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    """``x (B, T, D), valid (B, T) bool -> (B, T, D)``: pre-norm self-attention and feed-forward;
    ``mask (B or 1, T or 1, T)`` limits self-attention further (chunks); padding is always masked."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        attend = valid[:, None, :] if mask is None else valid[:, None, :] & mask
        x = x + self.drop(self.attn(h, h, attend))
        return x + self.drop(self.ff(self.norm2(x)))

    def empty_cache(self, like: torch.Tensor) -> LayerCache:
        return self.attn.empty_cache(like)

    def forward_chunk(self, x: torch.Tensor, lengths: list[int], caches: list[LayerCache],
                      keep: int) -> tuple[torch.Tensor, list[LayerCache]]:
        """The next chunk of several streams ``x (B, c, D)`` with their caches -> ``(B, c, D)`` and the caches
        for the next chunk (see :meth:`MultiHeadAttention.attend_chunk`)."""
        attended, kv = self.attn.attend_chunk(self.norm1(x), lengths, [(c.keys, c.values) for c in caches], keep)
        x = x + attended
        return x + self.ff(self.norm2(x)), [LayerCache(k, v) for k, v in kv]


class DecoderLayer(nn.Module):
    """``y (B, L, D), memory (B, T, D), self_mask (B, L, L), memory_mask (B, 1, T) -> (B, L, D)``."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff, dropout)
        self.drop = nn.Dropout(dropout)

    def _self_attended(self, y: torch.Tensor, self_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(y)
        return y + self.drop(self.self_attn(h, h, self_mask))

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        y = self._self_attended(y, self_mask)
        y = y + self.drop(self.cross_attn(self.norm2(y), memory, memory_mask))
        return y + self.drop(self.ff(self.norm3(y)))

    def cross_weights(self, y: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor,
                      memory_mask: torch.Tensor) -> torch.Tensor:
        """What this layer's cross-attention weighs each memory frame with, for the input ``y`` that
        :meth:`forward` takes: ``(B, H, L, T)``."""
        return self.cross_attn.weights(self.norm2(self._self_attended(y, self_mask)), memory, memory_mask)

    def step(self, y: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], memory_kv: tuple[torch.Tensor, torch.Tensor],
             memory_mask: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new position ``y (N, 1, D)`` given the self-attention keys/values of the earlier ones
        (``cache``: two ``(N, H, i, Dh)``) and the projected memory -> output and the grown cache."""
        h = self.norm1(y)
        k, v = self.self_attn.project_kv(h)
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = y + self.self_attn.attend(h, k, v, None)        # every cached position is in the past: no mask
        y = y + self.cross_attn.attend(self.norm2(y), *memory_kv, memory_mask)
        return y + self.ff(self.norm3(y)), (k, v)
