"""Run a trained model: one :class:`Recognizer` for Whisper and asrforge checkpoints, transcribing files or arrays
into :class:`Result` s and scoring manifests."""

from asrforge.inference.recognizer import Recognizer, load_model
from asrforge_runtime.result import Result, Segment, Word

__all__ = ["Recognizer", "Result", "Segment", "Word", "load_model"]
