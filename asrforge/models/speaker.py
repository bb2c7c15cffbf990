"""Speaker encoders: a stretch of speech -> one voice embedding (a d-vector), close for one voice, far for two.

:class:`LstmSpeakerEncoder` is the GE2E encoder (Wan et al., 2018) in resemblyzer's layout: three LSTM layers of
256 over 40 mel bands, the last layer's final state through a linear layer and a ReLU, L2-normalized. The weights
come from the resemblyzer wheel's ``pretrained.pt``; nothing here downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from asrforge.errors import ConfigError


class LstmSpeakerEncoder(nn.Module):
    def __init__(self, n_mels: int = 40, hidden: int = 256, layers: int = 3, dim: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, dim)
        self.dim = dim

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` frames of which the first ``lengths (B,)`` are real -> ``(B, dim)`` unit vectors."""
        packed = pack_padded_sequence(mels, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)

    @classmethod
    def from_resemblyzer(cls, path: str | Path) -> "LstmSpeakerEncoder":
        """Load resemblyzer's ``pretrained.pt`` (``{"model_state": ...}``; its GE2E similarity scale and bias are
        training-only and dropped)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        except (OSError, RuntimeError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not a resemblyzer speaker encoder checkpoint ({e})") from None
        model = cls()
        wanted = {k: v for k, v in state.items() if not k.startswith("similarity_")}
        try:
            model.load_state_dict(wanted)
        except RuntimeError as e:
            raise ConfigError(f"{path}: its weights do not fit resemblyzer's encoder layout ({e})") from None
        return model.eval()
