"""Self-describing checkpoints: recipe, tokenizer and weights in one file (plus training state in last.pt), and
telling them from Whisper checkpoints.

A checkpoint is all ``asrforge transcribe --model X`` needs. It holds only tensors and plain
Python values, so it loads with ``torch.load(weights_only=True)``: opening a checkpoint never runs code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from asrforge.config import to_dict
from asrforge.errors import CheckpointError
from asrforge.models.whisper.checkpoints import is_whisper_folder

FORMAT = "asrforge-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, recipe, tokenizer, model: torch.nn.Module | dict, **extra) -> None:
    """``model``: a module, or the weights to keep of it (a LoRA run keeps its adapters alone)."""
    path = Path(path)
    weights = model if isinstance(model, dict) else model.state_dict()
    state = {"format": FORMAT, "version": VERSION, "recipe": to_dict(recipe), "tokenizer": tokenizer.state_dict(),
             "model": {k: v.detach().cpu() for k, v in weights.items()}, **extra}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a broken checkpoint


def resolve_checkpoint(path: str | Path) -> Path:
    """An experiment folder means its ``best.pt`` (or ``last.pt`` if there is no best yet)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no best.pt or last.pt; pass a checkpoint file or a finished experiment folder")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a .pt file or an experiment folder from `asrforge train`")
    return path


def _read(path: Path, mmap: bool = False) -> object:
    """A torch file's contents (tensors and plain values only: ``weights_only``), or :class:`CheckpointError`.
    ``mmap``: tensors stay in the file's pages until used (inference reads each weight once, into the model)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        if mmap and isinstance(e, RuntimeError) and "mmap" in str(e):   # a legacy (pre-zip) file cannot be mapped
            return _read(path)
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file ({str(e).splitlines()[0][:160]}); "
                              "use best.pt/last.pt written by `asrforge train`") from None


def _validated(path: Path, state: object) -> dict:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an asrforge checkpoint (no '{FORMAT}' marker); "
                              "train one with `asrforge train`, or give a Whisper checkpoint (OpenAI .pt, Hugging Face or CTranslate2 folder)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {state['version']}; this asrforge reads up to {VERSION}: upgrade asrforge")
    for key in ("recipe", "tokenizer", "model"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks its {key!r} entry; it is incomplete — use another checkpoint")
    state["path"] = str(path)
    return state


def load_checkpoint(path: str | Path) -> dict:
    """An asrforge checkpoint (a file, or an experiment folder's ``best.pt``) as a dict with its ``path``."""
    path = resolve_checkpoint(path)
    return _validated(path, _read(path))


@dataclass
class OpenedCheckpoint:
    """What a model path holds, decided once: its kind, and a ``.pt`` file's contents, read once."""
    kind: Literal["asrforge", "whisper"]
    path: Path                  # the checkpoint file, or a Whisper folder
    contents: dict | None       # the file's contents (memory-mapped tensors); None for a folder


def open_checkpoint(path: str | Path) -> OpenedCheckpoint:
    """Tell an asrforge checkpoint (a ``.pt`` file or an experiment folder) from a Whisper one (an OpenAI ``.pt``,
    a Hugging Face or a CTranslate2 folder), reading a file only once."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model {path} does not exist; give a local checkpoint path (nothing is downloaded)")
    if path.is_dir():
        if is_whisper_folder(path):
            return OpenedCheckpoint("whisper", path, None)
        path = resolve_checkpoint(path)
    contents = _read(path, mmap=True)
    if isinstance(contents, dict) and "dims" in contents and "model_state_dict" in contents:
        return OpenedCheckpoint("whisper", path, contents)
    state = _validated(path, contents)
    if state["recipe"].get("model", {}).get("family") == "whisper":
        raise CheckpointError(f"{path} is the training state of a Whisper fine-tuning run (for --resume); its model is "
                              f"the run's folder {path.parent} (whisper.pt, or LoRA adapters on their base): give that")
    return OpenedCheckpoint("asrforge", path, state)
