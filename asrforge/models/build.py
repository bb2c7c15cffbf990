"""Build the model a recipe names. Importing this module registers every family trained from scratch."""

from __future__ import annotations

from torch import nn

import asrforge.models.attention  # noqa: F401  (las, transformer, joint)
import asrforge.models.ctc  # noqa: F401
import asrforge.models.transducer  # noqa: F401
from asrforge.errors import ConfigError
from asrforge.registry import MODELS, PRETRAINED_MODELS


def build_model(config, input_dim: int, vocab_size: int) -> nn.Module:
    """A new model of the family named by ``config.family``: ``input_dim`` features per frame, ``vocab_size`` tokens."""
    if config.family in PRETRAINED_MODELS:
        raise ConfigError(f"model family {config.family!r} is fine-tuned from a pretrained checkpoint (model.init), "
                          "not built from scratch")
    return MODELS.get(config.family).cls(config, input_dim, vocab_size)
