"""Speaker embedding models by kind, so diarization can use whichever a user has: ``--embedding-model KIND`` or
``KIND:PATH``.

Each kind is an entry of :data:`asrforge.registry.SPEAKER_EMBEDDERS`, built as ``cls(path, device)`` (``path``
None: the kind's own default weights), whose ``embed(windows)`` turns a list of 16-kHz waveforms into unit
vectors ``(B, D)``. Two kinds ship:

- ``resemblyzer`` (default): the GE2E LSTM encoder whose weights ship inside the ``resemblyzer`` wheel (found
  without importing resemblyzer, so its own dependencies need not be installed), run by our own module and
  front end.
- ``torchscript:PATH``: any TorchScript module taking ``(B, N)`` float32 16-kHz waveforms to ``(B, D)``
  embeddings -- a SpeechBrain ECAPA or WeSpeaker model wrapped with its front end and ``torch.jit.script`` or
  ``torch.jit.trace``d, say.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from asrforge.errors import ConfigError
from asrforge.features.speaker import raise_volume, speaker_mels
from asrforge.models.speaker import LstmSpeakerEncoder
from asrforge.registry import SPEAKER_EMBEDDERS

BATCH = 64    # windows per forward pass: bounds memory on hour-long recordings


def load_embedder(spec: str = "resemblyzer", device: str | torch.device = "cpu"):
    """``KIND`` or ``KIND:PATH`` -> the embedding model (see the module's docstring)."""
    kind, _, path = spec.partition(":")
    return SPEAKER_EMBEDDERS.get(kind).cls(path or None, torch.device(device))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def resemblyzer_weights() -> Path:
    """Where the installed resemblyzer package keeps ``pretrained.pt``, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    found = [Path(d) / "pretrained.pt" for d in (spec.submodule_search_locations or [])] if spec else []
    for path in found:
        if path.is_file():
            return path
    raise ConfigError("speaker diarization's default embedding model is resemblyzer's encoder, whose weights ship in "
                      "the resemblyzer package: pip install 'asrforge[diarize]' (or pip install --no-deps resemblyzer; "
                      "only its weights file is used), or name a model with --embedding-model KIND:PATH")


@SPEAKER_EMBEDDERS.register("resemblyzer", config=type(None))
class ResemblyzerEmbedder:
    """Each window is loudness-raised to -30 dBFS on its own, as resemblyzer prepares every utterance."""

    def __init__(self, path: str | None, device: torch.device):
        self.encoder = LstmSpeakerEncoder.from_resemblyzer(path or resemblyzer_weights()).to(device)
        self.device = device
        self.dim = self.encoder.dim

    @torch.inference_mode()
    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        for first in range(0, len(windows), BATCH):
            batch = windows[first: first + BATCH]
            longest = max(len(w) for w in batch)
            padded = torch.zeros(len(batch), longest)
            for i, w in enumerate(batch):
                padded[i, : len(w)] = torch.from_numpy(raise_volume(np.asarray(w, dtype=np.float32)))
            mels = speaker_mels(padded).to(self.device)
            lengths = torch.tensor([1 + len(w) // 160 for w in batch])
            out[first: first + len(batch)] = self.encoder(mels, lengths).cpu().numpy()
        return out


@SPEAKER_EMBEDDERS.register("torchscript", config=type(None))
class TorchScriptEmbedder:
    """Windows of one length are batched together (a traced model may not take padding)."""

    def __init__(self, path: str | None, device: torch.device):
        if path is None:
            raise ConfigError("--embedding-model torchscript needs the module's file: torchscript:PATH")
        try:
            with warnings.catch_warnings():     # torch 2.13 marks torch.jit deprecated; the user's file is what it is
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(path, map_location=device).eval()
        except (OSError, RuntimeError, ValueError) as e:
            raise ConfigError(f"{path}: not a TorchScript speaker embedding module ({e})") from None
        self.device = device

    @torch.inference_mode()
    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_length.setdefault(len(w), []).append(i)
        rows: dict[int, np.ndarray] = {}
        for length, idx in by_length.items():
            for first in range(0, len(idx), BATCH):
                part = idx[first: first + BATCH]
                batch = torch.from_numpy(np.stack([np.asarray(windows[i], dtype=np.float32) for i in part]))
                emb = self.module(batch.to(self.device))
                if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or emb.shape[0] != len(part):
                    raise ConfigError("a TorchScript speaker embedding module must map (B, N) waveforms to (B, D) "
                                      f"embeddings; it gave {getattr(emb, 'shape', type(emb).__name__)}")
                for i, row in zip(part, emb.float().cpu().numpy()):
                    rows[i] = row
        return _unit(np.stack([rows[i] for i in range(len(windows))])) if windows else np.zeros((0, 0), np.float32)
