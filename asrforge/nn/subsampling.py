"""Convolutional front end: two stride-2 3x3 Conv2d layers (x4 in time and frequency) + projection + LayerNorm,
optionally with max-pooling across frequency after the first layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from asrforge.nn.linear import Linear
from asrforge.nn.masks import valid_mask


def conv_out_length(lengths: torch.Tensor) -> torch.Tensor:
    """Output length of a kernel-3, stride-2, padding-1 convolution."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


@dataclass
class SubsamplingState:
    """A stream's place in the front end: per convolution, the input frames it has not used up yet ``(C, n, F)``
    (at first one zero frame, the convolution's padding before the first frame) and how many real frames came in."""

    pending: list[torch.Tensor] = field(default_factory=list)
    received: list[int] = field(default_factory=list)


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

    def _layers(self):
        return ((self.conv1, self.freq_pool), (self.conv2, nn.Identity()))

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.unsqueeze(1)                                   # (B, 1, T, D)
        for conv, pool in self._layers():
            h = pool(torch.relu(conv(h)))
            x_lens = conv_out_length(x_lens)
            h = h * valid_mask(x_lens, h.shape[2])[:, None, :, None]
        B, C, T, F = h.shape
        return self.norm(self.proj(h.transpose(1, 2).reshape(B, T, C * F))), x_lens

    # ---- streaming --------------------------------------------------------------------------------------------
    def initial_state(self, x: torch.Tensor) -> SubsamplingState:
        """A new stream's state, for input frames like ``x (T, D)`` (its dtype and device)."""
        state = SubsamplingState()
        channels = 1
        freq = x.shape[-1]
        for conv, _ in self._layers():
            state.pending.append(x.new_zeros(channels, 1, freq))
            state.received.append(0)
            channels, freq = conv.out_channels, (freq - 1) // 2 + 1
        return state

    def forward_chunk(self, x: torch.Tensor, state: SubsamplingState, final: bool = False) -> torch.Tensor:
        """The next input frames of one stream ``(T, D)`` -> the output frames they complete ``(T', out_dim)``;
        ``final``: the input ends here (the padding after the last frame is added). Over a whole input the outputs
        concatenated are :meth:`forward`'s, however it is cut: output ``t`` of a layer reads its input frames
        ``2t - 1 .. 2t + 1``, so the front end waits for up to 3 (then 6 ...) frames past a chunk's end."""
        h = x.unsqueeze(0)                                   # (1, T, D): channels first
        for k, (conv, pool) in enumerate(self._layers()):
            state.received[k] += h.shape[1]
            frames = torch.cat([state.pending[k], h], dim=1)
            if final:       # the padding after the last frame, where the last output reads past the end
                outputs = (state.received[k] - 1) // 2 + 1 if state.received[k] else 0
                frames = nn.functional.pad(frames, (0, 0, 0, 2 * outputs - state.received[k]))
            n = (frames.shape[1] - 3) // 2 + 1 if frames.shape[1] >= 3 else 0
            state.pending[k] = frames[:, 2 * n:]
            if n == 0:
                h = frames.new_zeros(conv.out_channels, 0, (frames.shape[2] - 1) // 2 + 1)
                continue
            h = pool(torch.relu(nn.functional.conv2d(frames[None, :, : 2 * n + 1], conv.weight, conv.bias,
                                                     stride=2, padding=(0, 1))))[0]
        C, T, F = h.shape
        return self.norm(self.proj(h.transpose(0, 1).reshape(T, C * F)))
