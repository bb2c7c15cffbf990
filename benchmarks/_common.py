"""Helpers shared by the benchmark scripts: a corpus to measure on and the machine description."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from asrforge.data.synth import SynthConfig, synthesize_corpus


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def bench_corpus(out: str | Path, hours: float = 0.1) -> Path:
    """A synthetic digit corpus (cached in ``out``) so benchmarks run anywhere."""
    out = Path(out)
    synthesize_corpus(out, SynthConfig(hours=hours, seed=11), progress=False)
    return out
