"""``asrforge.load_model(path)``: one :class:`Recognizer` for Whisper checkpoints, asrforge's own and exported ones.

Whether a path holds Whisper, an asrforge model or an exported ONNX folder is decided here, once (a ``.pt`` file is
read once); every command, benchmark, and the server and the web app use only what the protocol offers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from asrforge.checkpoint import open_checkpoint
from asrforge.errors import ConfigError
from asrforge.inference.evaluate import Evaluation
from asrforge_runtime.onnx_model import is_exported_folder
from asrforge_runtime.result import Result


class Recognizer(Protocol):
    """A loaded model. ``audio`` is a path or a 16 kHz mono float32 array ``(N,)``."""

    source: str                         # the path it was loaded from
    sample_rate: int                    # what arrays passed to it must be sampled at (16000)
    languages: tuple[str, ...]          # language codes it can be told (empty: it takes no language option)
    tasks: tuple[str, ...]              # "transcribe", and "translate" (into English) where it can
    word_timestamps: bool               # whether results can carry word times
    streaming: bool                     # whether it is built to decode audio as it arrives
    beam_size: int                      # the beam it searches with when no beam_size is given (1: greedy)

    def check_options(self, **options) -> None:
        """Raise :class:`~asrforge.errors.ConfigError`, naming the option and why, for what the model cannot take."""

    def transcribe(self, audio: str | Path | np.ndarray, **options) -> Result: ...

    def transcribe_batch(self, audio: list, **options) -> list[Result]: ...

    def evaluate(self, manifest: str | Path, **options) -> Evaluation: ...


LM_OPTIONS = ("lm", "lm_weight", "word_bonus", "closed_vocabulary")


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32", tokenizer: str | Path | None = None,
               lm_options: dict | None = None) -> Recognizer:
    """A local asrforge or Whisper checkpoint, or a folder ``asrforge export --format onnx`` wrote -> its
    :class:`Recognizer` (nothing is downloaded).

    ``dtype`` (Whisper only): float32, float16/bfloat16 on a GPU, int8 on a CPU. ``tokenizer`` (Whisper only): a
    folder holding ``tokenizer.json`` when it is not beside the weights. ``lm_options`` (asrforge models): ``lm``
    (True: the recipe's n-gram, False: none, or an ARPA path), ``lm_weight``, ``word_bonus``, ``closed_vocabulary``.
    """
    lm_options = dict(lm_options or {})
    unknown = sorted(set(lm_options) - set(LM_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown LM option(s) {unknown}; known: {', '.join(LM_OPTIONS)}")
    if is_exported_folder(path):
        from asrforge.inference.exported import ExportedModel

        if device != "cpu" or dtype != "float32" or tokenizer is not None:
            raise ConfigError(f"{path} is an exported ONNX model, which runs on the CPU as exported (float32 or int8 "
                              "graphs); leave out --device, --dtype and --tokenizer")
        return ExportedModel.load(path, **lm_options)
    opened = open_checkpoint(path)
    if opened.kind == "whisper":
        from asrforge.inference.whisper import WhisperTranscriber

        if lm_options.get("lm") not in (None, True, False) or set(lm_options) - {"lm"}:
            raise ConfigError("--lm, --lm-weight, --word-bonus and --closed-vocabulary apply to asrforge models; "
                              f"{path} is a Whisper checkpoint")
        return WhisperTranscriber.load(opened.path, device, dtype, tokenizer, opened.contents)
    from asrforge.inference.transcriber import Transcriber

    if dtype != "float32" or tokenizer is not None:
        raise ConfigError(f"dtype and tokenizer options apply to Whisper checkpoints; {path} is an asrforge checkpoint")
    return Transcriber.from_state(opened.contents, device, **lm_options)
