"""Errors meant for people: each names the item at fault and what to do about it.

The CLIs (``asrforge``, ``python -m asrforge_runtime``) catch :class:`AsrforgeError` and print its message without
a traceback; batch jobs catch it per item, skip the item and count it. ``asrforge.errors`` adds the kinds only
training and data preparation raise.
"""


class AsrforgeError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class AudioError(AsrforgeError):
    """An audio file is missing, empty or cannot be decoded."""


class ConfigError(AsrforgeError):
    """A recipe, an option or an override names an unknown key or holds a bad value."""


class CheckpointError(AsrforgeError):
    """A checkpoint or an exported model folder is missing, corrupt or not asrforge's."""
