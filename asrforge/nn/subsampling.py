"""Convolutional front end: two stride-2 3x3 Conv2d layers (x4 in time and frequency) + projection + LayerNorm,
optionally with max-pooling across frequency after the first layer."""

from __future__ import annotations

import torch
from torch import nn

from asrforge.nn.linear import Linear
from asrforge.nn.masks import valid_mask


def conv_out_length(lengths: torch.Tensor) -> torch.Tensor:
    """Output length of a kernel-3, stride-2, padding-1 convolution."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


class Conv2dSubsampling(nn.Module):
    """``(B, T, D) -> (B, ceil(T/4), out_dim)``.

    Frames past each utterance's end are zeroed after every layer, so a padded utterance's
    output equals the output it gets alone (padding never changes a result).

    ``freq_pool`` > 1 max-pools the first layer's maps across ``freq_pool`` neighbouring bands (stride 1, same
    size): a formant moved by a band or two, as between two voices' vocal tracts, then gives the same response.
    """

    def __init__(self, in_dim: int, out_dim: int, channels: int = 32, freq_pool: int = 1):
        super().__init__()
        if freq_pool < 1 or freq_pool % 2 == 0:
            raise ValueError(f"conv_freq_pool must be an odd number >= 1 (1: off), got {freq_pool}")
        self.freq_pool = (nn.MaxPool2d((1, freq_pool), stride=1, padding=(0, freq_pool // 2))
                          if freq_pool > 1 else nn.Identity())
        # LayerNorm on the projection keeps the RNN's inputs well scaled; it markedly shortens CTC's
        # initial blank-only plateau (measured on the demo corpus).
        self.norm = nn.LayerNorm(out_dim)
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        freq = (in_dim - 1) // 2 + 1
        freq = (freq - 1) // 2 + 1
        self.proj = Linear(channels * freq, out_dim)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.unsqueeze(1)                                   # (B, 1, T, D)
        for conv, pool in ((self.conv1, self.freq_pool), (self.conv2, nn.Identity())):
            h = pool(torch.relu(conv(h)))
            x_lens = conv_out_length(x_lens)
            h = h * valid_mask(x_lens, h.shape[2])[:, None, :, None]
        B, C, T, F = h.shape
        return self.norm(self.proj(h.transpose(1, 2).reshape(B, T, C * F))), x_lens
