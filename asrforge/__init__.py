"""asrforge: train, decode, evaluate and run speech recognizers."""

__version__ = "0.1.0"


def load_model(path, device: str = "cpu", dtype: str = "float32", tokenizer=None):
    """Load a local asrforge or Whisper checkpoint; see :func:`asrforge.inference.api.load_model`."""
    from asrforge.inference.api import load_model as _load

    return _load(path, device, dtype, tokenizer)
