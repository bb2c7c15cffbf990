"""Run a trained model: transcribe files or arrays, evaluate manifests."""

from asrforge.inference.transcriber import Result, Transcriber

__all__ = ["Result", "Transcriber"]
