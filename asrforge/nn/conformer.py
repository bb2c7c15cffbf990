"""Conformer block (Gulati et al. 2020): half-step feed-forward, rotary self-attention, convolution, half-step feed-forward."""

from __future__ import annotations

import torch
from torch import nn

from asrforge.nn.attention import LayerCache, MultiHeadAttention
from asrforge.nn.linear import Linear
from asrforge.nn.transformer import FeedForward


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv: ``(B, T, D), valid (B, T) bool -> (B, T, D)``.

    Padded frames are zeroed before the depthwise convolution, so they never leak into real ones.
    LayerNorm rather than BatchNorm: a frame's output then never depends on the other utterances in a batch.
    ``causal``: the depthwise convolution reads the ``kernel - 1`` frames before a frame and none after (centred
    otherwise), so a streaming encoder needs no future frames for it.
    """

    def __init__(self, dim: int, kernel: int, dropout: float, causal: bool = False):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"model.encoder.conv_kernel must be odd, got {kernel}")
        self.causal, self.kernel = causal, kernel
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=0 if causal else kernel // 2, groups=dim)
        self.depth_norm = nn.LayerNorm(dim)
        self.pointwise_out = Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _gated(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return nn.functional.glu(self.pointwise_in(self.norm(x)), dim=-1) * valid[..., None]

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop(self.pointwise_out(nn.functional.silu(self.depth_norm(h))))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self._gated(x, valid).transpose(1, 2)
        if self.causal:
            h = nn.functional.pad(h, (self.kernel - 1, 0))
        return self._output(self.depthwise(h).transpose(1, 2))

    def forward_chunk(self, x: torch.Tensor, valid: torch.Tensor, past: list[torch.Tensor],
                      lengths: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Causal only: the next chunk of several streams ``x (B, c, D)`` with each stream's last ``kernel - 1``
        inputs ``past[i] ((kernel - 1), D)`` (zeros before the first chunk) -> ``(B, c, D)`` and the inputs to keep."""
        h = torch.cat([torch.stack(past), self._gated(x, valid)], dim=1)       # (B, kernel - 1 + c, D)
        kept = [h[i, n: n + self.kernel - 1] for i, n in enumerate(lengths)]
        return self._output(self.depthwise(h.transpose(1, 2)).transpose(1, 2)), kept


class ConformerLayer(nn.Module):
    """``x (B, T, D), valid (B, T) bool -> (B, T, D)``; macaron feed-forwards each add half their output.
    ``mask (B or 1, T or 1, T)`` limits self-attention further (chunks); padding is always masked."""

    def __init__(self, dim: int, heads: int, ff_mult: int, conv_kernel: int, dropout: float, causal: bool = False):
        super().__init__()
        self.ff1_norm, self.ff2_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff1 = FeedForward(dim, ff_mult * dim, dropout, nn.SiLU)
        self.ff2 = FeedForward(dim, ff_mult * dim, dropout, nn.SiLU)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout, rotary=True)
        self.conv = ConvolutionModule(dim, conv_kernel, dropout, causal)
        self.out_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + 0.5 * self.drop(self.ff1(self.ff1_norm(x)))
        h = self.attn_norm(x)
        attend = valid[:, None, :] if mask is None else valid[:, None, :] & mask
        x = x + self.drop(self.attn(h, h, attend))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.drop(self.ff2(self.ff2_norm(x)))
        return self.out_norm(x)

    # ---- streaming (causal convolution, chunked attention) ----------------------------------------------------
    def empty_cache(self, like: torch.Tensor) -> LayerCache:
        cache = self.attn.empty_cache(like)
        cache.conv = like.new_zeros(self.conv.kernel - 1, like.shape[-1])
        return cache

    def forward_chunk(self, x: torch.Tensor, lengths: list[int], caches: list[LayerCache],
                      keep: int) -> tuple[torch.Tensor, list[LayerCache]]:
        """The next chunk of several streams ``x (B, c, D)`` (``lengths[i]`` real frames) with their caches
        -> ``(B, c, D)`` and the caches for the next chunk (attention keeps the last ``keep`` frames, see
        :meth:`MultiHeadAttention.attend_chunk`). Equal to :meth:`forward` under the chunk mask."""
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < torch.tensor(lengths, device=x.device)[:, None]
        x = x + 0.5 * self.ff1(self.ff1_norm(x))
        attended, kv = self.attn.attend_chunk(self.attn_norm(x), lengths, [(c.keys, c.values) for c in caches], keep)
        x = x + attended
        conv, conv_kept = self.conv.forward_chunk(x, valid, [c.conv for c in caches], lengths)
        x = x + conv
        x = x + 0.5 * self.ff2(self.ff2_norm(x))
        return self.out_norm(x), [LayerCache(k, v, c) for (k, v), c in zip(kv, conv_kept)]
