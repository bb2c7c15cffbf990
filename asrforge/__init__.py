"""asrforge: train, decode, evaluate and run speech recognizers."""

__version__ = "0.1.0"
