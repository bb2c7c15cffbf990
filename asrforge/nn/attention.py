"""Attention blocks: multi-head self/cross attention (optionally rotary) and LAS's location-aware attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from asrforge.nn.linear import Linear


@dataclass
class LayerCache:
    """What one stream's encoder layer keeps between chunks: the keys and values ``(H, K, Dh)`` of the frames its
    next chunk may still attend, and for a convolution the last ``kernel - 1`` inputs ``(kernel - 1, D)``."""

    keys: torch.Tensor
    values: torch.Tensor
    conv: torch.Tensor | None = None


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

    def attend(self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               query_start: int = 0) -> torch.Tensor:
        """``query (B, Tq, D)`` over projected ``k, v (B, H, Tk, Dh)`` -> ``(B, Tq, D)``; ``query_start``: the key
        position of the first query (rotary positions: queries that follow cached keys sit after them)."""
        q = self._split(self.q(query))
        if self.rotary:
            Tq, Tk = q.shape[2], k.shape[2]
            cos, sin = rotary_tables(max(query_start + Tq, Tk), self.head_dim, q.device)
            q = apply_rotary(q, cos[query_start: query_start + Tq], sin[query_start: query_start + Tq])
            k = apply_rotary(k, cos[:Tk], sin[:Tk])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None],
                                             dropout_p=self.dropout if self.training else 0.0)
        B, H, T, Dh = out.shape
        return self.out(out.transpose(1, 2).reshape(B, T, H * Dh))

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.attend(query, *self.project_kv(memory), mask)

    def weights(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The attention weights :meth:`forward` uses, for looking at: ``(B, H, Tq, Tk)``, each row summing to 1
        (no rotary positions: cross-attention, which is what is looked at, has none)."""
        q, (k, _) = self._split(self.q(query)), self.project_kv(memory)
        scores = q @ k.transpose(-1, -2) / self.head_dim ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None], float("-inf"))
        return scores.float().softmax(-1)

    def empty_cache(self, like: torch.Tensor) -> LayerCache:
        """A stream's cache before its first chunk: no earlier keys (``like``: a tensor of the dtype and device)."""
        empty = like.new_zeros(self.heads, 0, self.head_dim)
        return LayerCache(empty, empty)

    def attend_chunk(self, h: torch.Tensor, lengths: list[int], past: list[tuple[torch.Tensor, torch.Tensor]],
                     keep: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Self-attention of the next chunk of several streams over their own earlier frames.

        ``h (B, c, D)``: each stream's chunk (``lengths[i]`` real frames, the rest padding); ``past[i]``: the keys
        and values ``(H, K_i, Dh)`` of stream ``i``'s earlier frames it may still attend (``K_i`` may be 0).
        Returns ``(B, c, D)`` and each stream's keys and values to keep for the next chunk: its last ``keep``
        frames (``keep < 0``: all). The caches are aligned at their ends, so every query sits at the same key
        position and rotary positions keep each stream's offsets between query and key.
        """
        k_new, v_new = self.project_kv(h)                     # (B, H, c, Dh)
        B, H, c, Dh = k_new.shape
        K = max(pk.shape[1] for pk, _ in past)
        k = k_new.new_zeros(B, H, K + c, Dh)
        v = k_new.new_zeros(B, H, K + c, Dh)
        mask = torch.zeros(B, 1, K + c, dtype=torch.bool, device=h.device)
        k[:, :, K:], v[:, :, K:] = k_new, v_new
        kept = []
        for i, ((pk, pv), n) in enumerate(zip(past, lengths)):
            Ki = pk.shape[1]
            k[i, :, K - Ki: K], v[i, :, K - Ki: K] = pk, pv
            mask[i, 0, K - Ki: K + n] = True
            grown_k, grown_v = torch.cat([pk, k_new[i, :, :n]], dim=1), torch.cat([pv, v_new[i, :, :n]], dim=1)
            start = 0 if keep < 0 else max(0, grown_k.shape[1] - keep)
            kept.append((grown_k[:, start:], grown_v[:, start:]))
        return self.attend(h, k, v, mask, query_start=K), kept


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
