"""``asrforge.load_model(path)``: one entry point for asrforge's own checkpoints and Whisper checkpoints.

Both kinds answer ``transcribe(audio, **options)`` with the same result layout (OpenAI's):
``{"text", "segments": [{"id", "start", "end", "text", ...}], "language", "duration"}``; asrforge models
give one segment per stretch of speech (the whole input when it is short) with ``words`` (times from the CTC
posteriors aligned to the chosen tokens (joint CTC/attention models too), or the transducer's emission frames;
LAS and Transformer models have none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asrforge.errors import CheckpointError, ConfigError
from asrforge.features.cmvn import CMVNStats
from asrforge.inference.transcriber import LONG_FORM_S, Transcriber


ASRFORGE_OPTIONS = {"beam_size", "progress", "word_timestamps", "speaker_stats", "max_segment_s"}


class AsrforgeModel:
    """An asrforge checkpoint behind the common ``transcribe`` interface."""

    def __init__(self, transcriber: Transcriber, source: str = ""):
        self.transcriber = transcriber
        self.source = source

    @staticmethod
    def check_options(options: dict) -> None:
        """Refuse options meant for Whisper (``language``, ``temperature``, ...) before any audio is read."""
        unknown = sorted(set(options) - ASRFORGE_OPTIONS)
        if unknown:
            raise ConfigError(f"option(s) {unknown} apply to Whisper checkpoints only; an asrforge model takes "
                              f"beam_size and max_segment_s")

    def transcribe(self, audio: np.ndarray | str | Path, beam_size: int | None = None, progress: bool = False,
                   word_timestamps: bool = True, speaker_stats: CMVNStats | None = None,
                   max_segment_s: float = LONG_FORM_S, **options) -> dict:
        """``word_timestamps`` is accepted for symmetry with Whisper: CTC and transducer models give word
        times at no cost, so they are always there (LAS and Transformer decoders have no alignment to give them).
        ``speaker_stats`` and ``max_segment_s``: see :meth:`Transcriber.transcribe`."""
        self.check_options(options)
        r = self.transcriber.transcribe(audio, beam_size, speaker_stats, max_segment_s)[0]
        segments = [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text,
                     "words": [{"word": w.word, "start": w.start, "end": w.end} for w in s.words]}
                    for i, s in enumerate(r.segments)]
        return {"text": r.text, "segments": segments, "language": None, "duration": round(r.duration, 3)}


def is_whisper_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return (path / "model.bin").is_file() or (
            (path / "config.json").is_file() and any((path / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")))
    if path.is_file():
        try:   # memory-mapped: reads the keys, not the weights
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            return False
        return isinstance(state, dict) and "dims" in state and "model_state_dict" in state
    return False


def check_lm_options(lm_options: dict | None) -> None:
    """Whisper checkpoints take no n-gram LM: refuse an explicit --lm, --lm-weight, --word-bonus or --closed-vocabulary."""
    if lm_options and (lm_options.get("lm") not in (True, False) or len(lm_options) > 1):
        raise ConfigError("--lm, --lm-weight, --word-bonus and --closed-vocabulary apply to asrforge models; "
                          "this is a Whisper checkpoint")


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32", tokenizer: str | Path | None = None,
               lm_options: dict | None = None):
    """A local asrforge or Whisper checkpoint -> an object with ``transcribe(audio, **options) -> dict``.

    ``dtype`` (Whisper only): float32, float16/bfloat16 on a GPU, int8 on a CPU. ``lm_options`` (asrforge
    models): ``lm``, ``lm_weight``, ``word_bonus``, ``closed_vocabulary`` as :meth:`Transcriber.from_checkpoint` takes them.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model {path} does not exist; give a local checkpoint path (nothing is downloaded)")
    if is_whisper_checkpoint(path):
        from asrforge.inference.whisper import WhisperPipeline

        check_lm_options(lm_options)
        return WhisperPipeline.load(path, device, dtype, tokenizer)
    if dtype != "float32" or tokenizer is not None:
        raise ConfigError("dtype and tokenizer options apply to Whisper checkpoints; this is an asrforge checkpoint")
    return AsrforgeModel(Transcriber.from_checkpoint(path, device, **(lm_options or {})), str(path))
