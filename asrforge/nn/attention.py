"""Attention blocks: multi-head self/cross attention (optionally rotary) and LAS's location-aware attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from asrforge.nn.linear import Linear


def rotary_tables(length: int, head_dim: int, device: torch.device, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``(length, head_dim)`` for rotary position embedding (pairs (i, i + head_dim/2) rotate together)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x (B, H, T, Dh)`` rotated by position: dot products of q and k then depend on relative offset only."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class MultiHeadAttention(nn.Module):
    """``query (B, Tq, D), key/value (B, Tk, D), mask (B or 1, Tq or 1, Tk) bool True = may attend -> (B, Tq, D)``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, rotary: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model dimension {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.rotary, self.dropout = heads, dim // heads, rotary, dropout
        self.q = Linear(dim, dim)
        self.kv = Linear(dim, 2 * dim)
        self.out = Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, Tk, D) -> k, v (B, H, Tk, Dh)``: what a cache keeps between decoding steps."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``query (B, Tq, D)`` over projected ``k, v (B, H, Tk, Dh)`` -> ``(B, Tq, D)``."""
        q = self._split(self.q(query))
        if self.rotary:
            cos, sin = rotary_tables(max(q.shape[2], k.shape[2]), self.head_dim, q.device)
            q, k = apply_rotary(q, cos[: q.shape[2]], sin[: q.shape[2]]), apply_rotary(k, cos[: k.shape[2]], sin[: k.shape[2]])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None],
                                             dropout_p=self.dropout if self.training else 0.0)
        B, H, T, Dh = out.shape
        return self.out(out.transpose(1, 2).reshape(B, T, H * Dh))

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.attend(query, *self.project_kv(memory), mask)


class LocationAwareAttention(nn.Module):
    """Chorowski et al. (2015): content + location attention for the LAS speller.

    ``energy[t] = w . tanh(W_q query + W_m memory[t] + W_f conv(previous weights)[t])``; the convolution
    over the previous step's weights lets the speller know where it was and move forward monotonically.
    """

    def __init__(self, query_dim: int, memory_dim: int, attn_dim: int, channels: int = 10, kernel: int = 31):
        super().__init__()
        self.query = Linear(query_dim, attn_dim, bias=False)
        self.memory = Linear(memory_dim, attn_dim)
        self.location_conv = nn.Conv1d(1, channels, kernel, padding=kernel // 2, bias=False)
        self.location = Linear(channels, attn_dim, bias=False)
        self.energy = Linear(attn_dim, 1, bias=False)

    def project_memory(self, memory: torch.Tensor) -> torch.Tensor:
        """``(B, T, memory_dim) -> (B, T, attn_dim)``, computed once per utterance."""
        return self.memory(memory)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, memory_proj: torch.Tensor, mask: torch.Tensor,
                previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``query (N, Q), memory (N, T, M), memory_proj (N, T, A), mask (N, T), previous (N, T)
        -> context (N, M), weights (N, T)``."""
        loc = self.location(self.location_conv(previous[:, None]).transpose(1, 2))
        energy = self.energy(torch.tanh(self.query(query)[:, None] + memory_proj + loc)).squeeze(-1)
        weights = torch.softmax(energy.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights
