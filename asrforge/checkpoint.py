"""Self-describing checkpoints: recipe, tokenizer and weights in one file (plus training state in last.pt).

A checkpoint is all ``asrforge transcribe --model X`` needs. It holds only tensors and plain
Python values, so it loads with ``torch.load(weights_only=True)``: opening a checkpoint never runs code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from asrforge.config import to_dict
from asrforge.errors import CheckpointError

FORMAT = "asrforge-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, recipe, tokenizer, model: torch.nn.Module, **extra) -> None:
    path = Path(path)
    state = {"format": FORMAT, "version": VERSION, "recipe": to_dict(recipe), "tokenizer": tokenizer.state_dict(),
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}
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


def load_checkpoint(path: str | Path) -> dict:
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file ({str(e).splitlines()[0][:160]}); "
                              "use best.pt/last.pt written by `asrforge train`") from None
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
