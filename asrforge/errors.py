"""Errors meant for people: each names the item at fault and what to do about it.

The CLI catches :class:`AsrforgeError` and prints its message without a traceback; batch jobs catch it per item,
skip the item and count it. The kinds the torch-free runtime raises too are defined there (one hierarchy for both
packages); the two below arise only in data preparation and training.
"""

from asrforge_runtime.errors import AsrforgeError, AudioError, CheckpointError, ConfigError

__all__ = ["AsrforgeError", "AudioError", "CheckpointError", "ConfigError", "ManifestError", "TextError"]


class ManifestError(AsrforgeError):
    """A manifest file or one of its lines is malformed."""


class TextError(AsrforgeError):
    """A transcript is empty or cannot be tokenized."""
