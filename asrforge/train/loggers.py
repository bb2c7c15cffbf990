"""Where training's records go: ``train_log.jsonl`` always (what ``asrforge plot`` and everything else reads) and,
with ``train.loggers: [jsonl, tensorboard]``, TensorBoard event files under ``EXPDIR/tensorboard``.

Each record's numbers become scalars at its step: a training record's ``loss`` (and any ``loss_*`` of an objective),
``lr``, ``grad_norm``, ``utts_per_s`` under ``train/``; a validation's ``dev_wer``, ``dev_cer``, ``dev_loss`` under
``dev/``; and, on a GPU, the peak memory allocated. Only the main process writes (under torchrun every rank logs the
same figures). A resumed run opens the same folder and purges events past the step it resumes from, so its curves
continue instead of doubling back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from asrforge.extras import require_extra

LOGGERS = ("jsonl", "tensorboard")
LOG_FILE = "train_log.jsonl"
SKIPPED = {"step", "epoch", "dev_utts"}          # counters, not curves


class TrainLoggers:
    def __init__(self, out: Path, loggers: list[str], main: bool, resume_step: int = 0):
        self.out, self.main = out, main
        self.writer = None
        if main and "tensorboard" in loggers:
            require_extra("tensorboard", "train.loggers: tensorboard", "tensorboard")
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

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
