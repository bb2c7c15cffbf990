"""Errors meant for people: each names the item at fault and what to do about it.

The CLI catches :class:`AsrforgeError` and prints its message without a traceback;
batch jobs catch it per item, skip the item and count it.
"""


class AsrforgeError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class AudioError(AsrforgeError):
    """An audio file is missing, empty or cannot be decoded."""


class ManifestError(AsrforgeError):
    """A manifest file or one of its lines is malformed."""


class TextError(AsrforgeError):
    """A transcript is empty or cannot be tokenized."""


class ConfigError(AsrforgeError):
    """A recipe or an override names an unknown key or holds a bad value."""


class CheckpointError(AsrforgeError):
    """A checkpoint is missing, corrupt or not an asrforge checkpoint."""
