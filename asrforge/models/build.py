"""Build the model a recipe names. Importing this module registers every family."""

from __future__ import annotations

from torch import nn

import asrforge.models.attention  # noqa: F401  (las, transformer, joint)
import asrforge.models.ctc  # noqa: F401
import asrforge.models.transducer  # noqa: F401
from asrforge.registry import MODELS


def build_model(config, input_dim: int, vocab_size: int) -> nn.Module:
    """Instantiate the family named by ``config.family`` from the registry."""
    return MODELS.get(config.family).cls(config, input_dim, vocab_size)
