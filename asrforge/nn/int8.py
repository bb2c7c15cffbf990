"""Int8 linear layers and embeddings for CPU inference: weights stored as int8 with one scale per output row.

Two kinds of linear layer, because what is quantized well depends on how many rows the input has:

- :class:`RowwiseInt8Linear` quantizes the *input* per row too (one scale per row, symmetric int8) and
  multiplies with ``torch._int_mm`` (int32 accumulation). For long inputs such as Whisper's encoder (1500
  rows a window) one scale for the whole matrix lets a few loud rows coarsen all the others. Measured on a
  5-minute English recording with Whisper base, beam 5: quantizing only the encoder gave 9.50 % WER with
  one scale per matrix and 9.15 % with one per row (float32: 9.39 %); the row-wise product was also the
  faster one at 1500 rows (4.1 against 5.6 ms for 1500 x 512 -> 2048 on 2 cores).
- :class:`DynamicInt8Linear` is PyTorch's dynamic quantized linear (fbgemm, packed weights, one input scale
  per call), faster for the few rows of a decoding step (0.78 against 1.6 ms for the 5 x 512 -> 51865
  vocabulary projection). It uses the full 8-bit input range where the CPU has VNNI: PyTorch's default
  drops to 7 bits everywhere because the older AVX2 instructions can saturate (decoder only, same
  recording: 9.73 % with 8 bits; 10.2 % for the whole model with 7).

Both are for inference only (no gradient).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch
from torch import nn


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, K)`` float -> ``(N, K)`` int8 and ``(N,)`` float32 scales with ``weight ~ int8 * scale[:, None]``."""
    weight = weight.detach().float()
    scale = weight.abs().amax(1).clamp_min(1e-12) / 127.0
    return (weight / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8), scale


class RowwiseInt8Linear(nn.Module):
    """``x (..., K) -> (..., N)``; the input is quantized per row at run time (see the module docstring)."""

    BLOCK_ROWS = 2048     # rows multiplied at a time: the int32 products of 8 windows at once would be 100 MB

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scale = quantize_rows(linear.weight)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", weight.t())          # (K, N) column-major: the layout _int_mm reads fastest
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float()
        out = rows.new_empty(rows.shape[0], self.out_features)
        for first in range(0, rows.shape[0], self.BLOCK_ROWS):
            block = rows[first: first + self.BLOCK_ROWS]
            x_scale = block.abs().amax(-1, keepdim=True).clamp_min_(1e-12) / 127.0
            quantized = (block / x_scale).round_().to(torch.int8)
            torch.mul(torch._int_mm(quantized, self.weight_t), x_scale, out=out[first: first + len(block)])
        out.mul_(self.scale)
        if self.bias is not None:
            out += self.bias
        return out.view(*shape[:-1], self.out_features)


@lru_cache(maxsize=None)
def _full_input_range() -> bool:
    """8-bit inputs are safe with VNNI's int8 dot products; without them fbgemm's AVX2 kernel can saturate."""
    return bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())


class DynamicInt8Linear(torch.ao.nn.quantized.dynamic.Linear):
    """PyTorch's dynamic int8 linear (one input scale per call) with the full input range where it is safe."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "DynamicInt8Linear":
        from torch.ao.quantization import per_channel_dynamic_qconfig

        if type(linear) is not nn.Linear:    # from_float accepts the exact class only; the layer is being replaced
            linear.__class__ = nn.Linear
        linear.qconfig = per_channel_dynamic_qconfig   # one scale per output row, as CTranslate2 does
        with warnings.catch_warnings():   # torch marks eager quantization deprecated in favour of torchao (not installed)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor", category=UserWarning)
            return cls.from_float(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                 reduce_range=not _full_input_range())
        return out.to(x.dtype)


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows with one scale each (a quarter of float32's memory)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)    # (V, D) int8
        self.register_buffer("scale", scale)      # (V,)

    @classmethod
    def from_dynamic_linear(cls, linear: DynamicInt8Linear) -> "Int8Embedding":
        """The table from the quantized rows of a tied output projection, so lookup and projection agree."""
        weight = linear.weight()
        return cls(weight.int_repr(), weight.q_per_channel_scales().float())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids (...)`` -> ``(..., D)`` float32."""
        return self.weight[ids].float() * self.scale[ids].unsqueeze(-1)


def replace_linears(module: nn.Module, make) -> None:
    """Replace every ``nn.Linear`` below ``module`` by ``make(linear)``, in place; the float weights go as each
    layer is replaced, so the model is never held twice."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child))
        else:
            replace_linears(child, make)
