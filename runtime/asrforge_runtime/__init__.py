"""asrforge-runtime: run a model exported by ``asrforge export --format onnx`` without PyTorch.

``load(folder)`` gives an :class:`~asrforge_runtime.recognizer.OnnxRecognizer`; ``python -m asrforge_runtime
transcribe --model DIR FILES...`` writes its results. The front end, the CTC and transducer searches and the word
n-gram fusion here are the ones asrforge itself decodes with (asrforge imports them from this package).
"""

__version__ = "0.1.0"


def load(path, threads: int | None = None, **lm_options):
    """An exported folder as an ``OnnxRecognizer`` (``lm``, ``lm_weight``, ``word_bonus``, ``closed_vocabulary``)."""
    from asrforge_runtime.recognizer import OnnxRecognizer

    return OnnxRecognizer.load(path, threads, **lm_options)
