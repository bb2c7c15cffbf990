"""LoRA adapters of a Whisper model as a fine-tuning run saves them, and merging them into the base weights.

A LoRA fine-tuning run (``model.lora``) trains low-rank updates ``W + (alpha / rank) * B @ A`` of chosen linear
layers and saves only them: ``EXP/adapters.safetensors`` (for each adapted layer ``NAME.lora_A (rank, in)`` and
``NAME.lora_B (out, rank)``, where NAME is the layer's name in OpenAI's checkpoint layout, e.g.
``decoder.blocks.0.attn.query``) and ``EXP/adapters.json`` (the base checkpoint, rank, alpha). Reading such a
folder builds the base model and adds the updates to its weights, so inference, the server and ``asrforge
export`` see a plain Whisper model and never need peft (training does).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from asrforge.errors import CheckpointError
from asrforge.models.whisper.model import Whisper

ADAPTERS = "adapters.safetensors"
ADAPTERS_CONFIG = "adapters.json"


def save_adapters(adapters: dict[str, torch.Tensor], folder: str | Path, base: str, rank: int, alpha: float,
                  targets: list[str]) -> None:
    """``adapters``: ``NAME.lora_A`` / ``NAME.lora_B`` tensors; ``base``: the checkpoint they adapt. (The tokenizer
    files go beside them, where loading looks: the caller copies them.)"""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in adapters.items()}, str(folder / ADAPTERS))
    (folder / ADAPTERS_CONFIG).write_text(json.dumps({"format": "asrforge-lora", "base": str(base), "rank": rank,
                                                      "alpha": alpha, "targets": targets}, indent=2) + "\n")


def read_adapters(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """-> (the config of ``adapters.json``, the tensors of ``adapters.safetensors``)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / ADAPTERS_CONFIG).read_text())
        tensors = load_file(str(folder / ADAPTERS))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the LoRA adapters in {folder} ({e}); {ADAPTERS_CONFIG} and {ADAPTERS} "
                              "are written together by a `model.lora` fine-tuning run") from None
    if config.get("format") != "asrforge-lora" or not config.get("base"):
        raise CheckpointError(f"{folder / ADAPTERS_CONFIG} is not an asrforge LoRA description (format, base)")
    return config, tensors


@torch.no_grad()
def merge_adapters(model: Whisper, tensors: dict[str, torch.Tensor], rank: int, alpha: float) -> Whisper:
    """Add each adapter's ``(alpha / rank) * B @ A`` to its layer's weight, in place."""
    layers = dict(model.named_modules())
    names = sorted({key.rsplit(".", 1)[0] for key in tensors})
    for name in names:
        layer = layers.get(name)
        a, b = tensors.get(f"{name}.lora_A"), tensors.get(f"{name}.lora_B")
        if layer is None or a is None or b is None or not isinstance(layer, torch.nn.Linear) \
                or (b.shape[0], a.shape[1]) != tuple(layer.weight.shape):
            raise CheckpointError(f"LoRA adapter {name} does not fit the base model (no such linear layer, or sizes "
                                  "differ); the adapters were trained on another checkpoint")
        layer.weight += (alpha / rank) * (b.float() @ a.float()).to(layer.weight.dtype)
    return model
