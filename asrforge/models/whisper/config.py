"""The ``whisper`` model family of a recipe: fine-tune a Whisper checkpoint (``model.init``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asrforge.errors import ConfigError
from asrforge.models.whisper.checkpoints import load_whisper_checkpoint
from asrforge.models.whisper.model import Whisper
from asrforge.registry import PRETRAINED_MODELS


@dataclass
class LoraSettings:
    """``model.lora``: train low-rank adapters (peft's LoRA) instead of the weights themselves. rank 0: off."""
    rank: int = 0
    alpha: float = 16.0                  # the update is scaled by alpha / rank
    dropout: float = 0.0
    # linear layers adapted, by the end of their names (OpenAI's layout): attention projections query, key,
    # value, out, in self- and cross-attention; the encoder's too unless model.freeze_encoder
    targets: list[str] = field(default_factory=lambda: ["attn.query", "attn.key", "attn.value", "attn.out"])

    def __post_init__(self):
        if self.rank < 0 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.lora takes rank >= 0 (0: off), alpha > 0 and dropout in [0, 1)")
        if self.rank and not self.targets:
            raise ValueError("model.lora.targets is empty; name the layers to adapt, e.g. [attn.query, attn.value]")


@dataclass
class WhisperModelConfig:
    family: str = "whisper"
    init: str | None = None              # the checkpoint to fine-tune: OpenAI .pt, Hugging Face or CTranslate2 folder
    tokenizer: str | None = None         # folder with tokenizer.json, if not beside the checkpoint
    freeze_encoder: bool = True          # train the decoder only: less memory, less forgetting, 3x faster steps
    language: str | None = "en"          # the language token of the training data (multilingual checkpoints)
    task: Literal["transcribe", "translate"] = "transcribe"
    label_smoothing: float = 0.0
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("model.label_smoothing must be in [0, 1)")


def require_init(config: WhisperModelConfig) -> None:
    if not config.init:
        raise ConfigError("model.init is not set; pass model.init=PATH to a Whisper checkpoint "
                          "(OpenAI .pt, Hugging Face folder or CTranslate2 folder)")


@PRETRAINED_MODELS.register("whisper", WhisperModelConfig)
def load_pretrained_whisper(config: WhisperModelConfig) -> Whisper:
    """The Whisper model ``config.init`` holds, with its weights, in float32."""
    require_init(config)
    return load_whisper_checkpoint(config.init).build()
