"""Padding masks."""

import torch


def valid_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool, True on real frames."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def chunk_mask(length: int, chunk: int, left_chunks: int, device: torch.device | None = None) -> torch.Tensor:
    """``(T, T)`` bool, True where frame ``t`` may attend frame ``s``: both in the same chunk of ``chunk`` frames
    (counted from the first frame), or ``s`` in one of the ``left_chunks`` chunks before (``-1``: all before).
    Attention so limited never reads past the end of the chunk it is in, which is what lets it run as audio arrives."""
    index = torch.arange(length, device=device) // chunk
    behind = index[:, None] - index[None, :]
    allowed = behind >= 0
    return allowed if left_chunks < 0 else allowed & (behind <= left_chunks)
