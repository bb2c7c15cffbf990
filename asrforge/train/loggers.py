"""Where training's records go: ``train_log.jsonl`` always (what ``asrforge plot`` and everything else reads) and,
with ``train.loggers: [jsonl, tensorboard]``, TensorBoard event files under ``EXPDIR/tensorboard``.

Each record's numbers become scalars at its step: a training record's ``loss`` (and each ``loss_NAME`` of a loss of several terms),
``lr``, ``grad_norm``, ``utts_per_s`` under ``train/``; a validation's ``dev_wer``, ``dev_cer``, ``dev_loss`` under
``dev/``; and, on a GPU, the peak memory allocated. Only the main process writes (under torchrun every rank logs the
same figures). A resumed run opens the same folder and purges events past the step it resumes from, so its curves
continue instead of doubling back.

At each validation, :meth:`TrainLoggers.log_examples` shows a few fixed dev utterances (``train.tensorboard_examples``)
at its step: their reference and hypothesis (TEXT), the CTC posteriorgram and the attention alignment where the model
has them (IMAGES), and their audio (AUDIO: once per process, since it does not change between epochs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from asrforge_runtime.audio import SAMPLE_RATE

from asrforge.extras import require_extra
from asrforge.train.examples import Example
from asrforge.train.figures import attention_image, posteriorgram_image

LOGGERS = ("jsonl", "tensorboard")
LOG_FILE = "train_log.jsonl"
SKIPPED = {"step", "epoch", "dev_utts"}          # counters, not curves


class TrainLoggers:
    def __init__(self, out: Path, loggers: list[str], main: bool, resume_step: int = 0):
        self.out, self.main = out, main
        self.writer = None
        self._heard: set[str] = set()       # the examples whose audio this process has written
        if main and "tensorboard" in loggers:
            require_extra("tensorboard", "train.loggers: tensorboard", "tensorboard", "matplotlib")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step or None)

    def log(self, record: dict) -> None:
        if not self.main:
            return
        with open(self.out / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is None:
            return
        section = "dev" if any(k.startswith("dev_") for k in record) else "train"
        for key, value in record.items():
            if key in SKIPPED or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            self.writer.add_scalar(f"{section}/{key.removeprefix('dev_')}", value, record["step"])
        if section == "train" and torch.cuda.is_available():
            self.writer.add_scalar("train/gpu_memory_mb", torch.cuda.max_memory_allocated() / 2**20, record["step"])

    @property
    def wants_examples(self) -> bool:
        return self.writer is not None

    def log_examples(self, examples: list[Example], step: int) -> None:
        """The dev examples of the validation at ``step`` (see the module's docstring)."""
        if self.writer is None:
            return
        for example in examples:
            if example.uid not in self._heard:
                self.writer.add_audio(f"dev_audio/{example.uid}", torch.from_numpy(example.audio)[None], step,
                                      sample_rate=SAMPLE_RATE)
                self._heard.add(example.uid)
            self.writer.add_text(f"dev_text/{example.uid}", example_markdown(example), step)
            if example.posteriors is not None:
                self.writer.add_image(f"posteriorgram/{example.uid}", posteriorgram_image(example), step,
                                      dataformats="HWC")
            if example.attention is not None:
                self.writer.add_image(f"attention/{example.uid}", attention_image(example), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _markdown_escaped(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text) or "(nothing)"


def example_markdown(example: Example) -> str:
    """What TensorBoard's text dashboard shows of an example (it renders Markdown)."""
    return (f"**reference:** {_markdown_escaped(example.reference)}  \n"
            f"**hypothesis:** {_markdown_escaped(example.hypothesis)}  \n"
            f"{example.errors}")
