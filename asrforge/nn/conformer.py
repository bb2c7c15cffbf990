"""Conformer block (Gulati et al. 2020): half-step feed-forward, rotary self-attention, convolution, half-step feed-forward."""

from __future__ import annotations

import torch
from torch import nn

from asrforge.nn.attention import MultiHeadAttention
from asrforge.nn.linear import Linear
from asrforge.nn.transformer import FeedForward


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv: ``(B, T, D), valid (B, T) bool -> (B, T, D)``.

    Padded frames are zeroed before the depthwise convolution, so they never leak into real ones.
    LayerNorm rather than BatchNorm: a frame's output then never depends on the other utterances in a batch.
    """

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"model.encoder.conv_kernel must be odd, got {kernel}")
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.depth_norm = nn.LayerNorm(dim)
        self.pointwise_out = Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = nn.functional.glu(self.pointwise_in(self.norm(x)), dim=-1)
        h = h * valid[..., None]
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pointwise_out(nn.functional.silu(self.depth_norm(h))))


class ConformerLayer(nn.Module):
    """``x (B, T, D), valid (B, T) bool -> (B, T, D)``; macaron feed-forwards each add half their output."""

    def __init__(self, dim: int, heads: int, ff_mult: int, conv_kernel: int, dropout: float):
        super().__init__()
        self.ff1_norm, self.ff2_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff1 = FeedForward(dim, ff_mult * dim, dropout, nn.SiLU)
        self.ff2 = FeedForward(dim, ff_mult * dim, dropout, nn.SiLU)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout, rotary=True)
        self.conv = ConvolutionModule(dim, conv_kernel, dropout)
        self.out_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.drop(self.ff1(self.ff1_norm(x)))
        h = self.attn_norm(x)
        x = x + self.drop(self.attn(h, h, valid[:, None, :]))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.drop(self.ff2(self.ff2_norm(x)))
        return self.out_norm(x)
