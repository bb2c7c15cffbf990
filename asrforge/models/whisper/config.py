"""The ``whisper`` model family of a recipe: fine-tune a Whisper checkpoint (``model.init``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from asrforge.errors import ConfigError
from asrforge.models.whisper.checkpoints import load_whisper_checkpoint
from asrforge.models.whisper.model import Whisper
from asrforge.registry import PRETRAINED_MODELS


@dataclass
class WhisperModelConfig:
    family: str = "whisper"
    init: str | None = None              # the checkpoint to fine-tune: OpenAI .pt, Hugging Face or CTranslate2 folder
    tokenizer: str | None = None         # folder with tokenizer.json, if not beside the checkpoint
    freeze_encoder: bool = True          # train the decoder only: less memory, less forgetting, 3x faster steps
    language: str | None = "en"          # the language token of the training data (multilingual checkpoints)
    task: Literal["transcribe", "translate"] = "transcribe"
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("model.label_smoothing must be in [0, 1)")


@PRETRAINED_MODELS.register("whisper", WhisperModelConfig)
def load_pretrained_whisper(config: WhisperModelConfig) -> Whisper:
    """The Whisper model ``config.init`` holds, with its weights, in float32."""
    if not config.init:
        raise ConfigError("model.init is not set; pass model.init=PATH to a Whisper checkpoint "
                          "(OpenAI .pt, Hugging Face folder or CTranslate2 folder)")
    return load_whisper_checkpoint(config.init).build()
