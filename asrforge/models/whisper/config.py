"""The ``whisper`` model family of a recipe: fine-tune a Whisper checkpoint (``model.init``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from asrforge.models.whisper.model import Whisper
from asrforge.registry import MODELS


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


MODELS.register("whisper", WhisperModelConfig)(Whisper)
