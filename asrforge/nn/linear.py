"""Linear layers that run inference through oneDNN's matmul on the CPU.

PyTorch's CPU ``F.linear`` goes to MKL's sgemm. On AMD CPUs MKL does not take its AVX-512 code path, and
oneDNN's kernel (the one ``torch.compile`` uses on CPUs) is 2-3x faster there. Measured on the 2-core
AMD EPYC this project is developed on, float32, 2 threads:

| x (rows, in) @ W (out, in)^T | F.linear | oneDNN |
|---|---|---|
| 1500 x 512 -> 2048 (Whisper base encoder MLP) | 18.2 ms | 7.5 ms |
| 5 x 512 -> 51865 (vocabulary projection, 5 beams) | 10.6 ms | 3.8 ms |
| 40 x 512 -> 2048 | 0.53 ms | 0.29 ms |

oneDNN has a fixed cost of about 14 µs a call, so products under ONEDNN_MIN_MACS (about a million
multiply-adds) stay with ``F.linear``: 1 x 512 -> 512 takes 16 µs there against 23 µs, 8 x 144 -> 576 16 µs
against 21 µs. Around the threshold the two are within a few µs either way.

The oneDNN operator has no backward (autograd would silently give no gradient), so it is used only when
nothing needs a gradient: inference, evaluation, decoding. Training keeps ``F.linear``. Set
``ASRFORGE_ONEDNN_LINEAR=0`` to turn it off (for comparisons, or if a build lacks the operator; that case is
also detected once and falls back by itself).
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

ONEDNN_MIN_MACS = 1 << 20


@lru_cache(maxsize=None)
def onednn_linear_available() -> bool:
    """True when this torch build has a working oneDNN linear and the user has not turned it off."""
    if os.environ.get("ASRFORGE_ONEDNN_LINEAR", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w = torch.ones(2, 3), torch.ones(4, 3)
        out = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
        return bool(torch.equal(out, torch.full((2, 4), 3.0)))
    except (AttributeError, RuntimeError):
        return False


def _onednn_eligible(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.jit.is_tracing():     # an ONNX export traces the model: oneDNN's kernel is not an ONNX operator
        return False
    if x.numel() * weight.shape[0] < ONEDNN_MIN_MACS:      # rows * in * out
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return False
    return onednn_linear_available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x (..., in)``, ``weight (out, in)`` -> ``(..., out)``, followed by an
    exact (erf) GELU when ``gelu``; fused into one oneDNN call when no gradient is needed on the CPU."""
    if _onednn_eligible(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    out = F.linear(x, weight, bias)
    return F.gelu(out) if gelu else out


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose no-gradient CPU forward uses :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class GeluMLP(nn.Sequential):
    """``Linear -> GELU -> Linear`` as an ``nn.Sequential`` (state-dict keys ``0.*`` and ``2.*``, as in Whisper's
    checkpoints), with the first matmul and the GELU fused at inference."""

    BLOCK_ROWS = 2048

    def __init__(self, d: int, hidden: int):
        super().__init__(Linear(d, hidden), nn.GELU(), Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] <= self.BLOCK_ROWS:
            return self._rows(x)
        # a block of rows at a time, so the hidden activations (4x wider than x, twice when the layers are not
        # fused) are held for one block, not for 8 windows of 1500 rows; float32 speed does not change with it
        out = torch.cat([self._rows(rows[i: i + self.BLOCK_ROWS]) for i in range(0, rows.shape[0], self.BLOCK_ROWS)])
        return out.view(*x.shape[:-1], out.shape[-1])

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        first, _, second = self
        if type(first) is not Linear:      # replaced, e.g. by a quantized layer: run the plain sequence
            return super().forward(x)
        return second(linear(x, first.weight, first.bias, gelu=True))
