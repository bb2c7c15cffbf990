"""asrforge: train, decode, evaluate and run speech recognizers."""

__version__ = "0.1.0"


def load_model(path, device: str = "cpu", dtype: str = "float32", tokenizer=None, lm_options=None):
    """Load a local asrforge or Whisper checkpoint as a Recognizer; see :func:`asrforge.inference.recognizer.load_model`."""
    from asrforge.inference.recognizer import load_model as _load

    return _load(path, device, dtype, tokenizer, lm_options)
