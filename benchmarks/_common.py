"""Helpers shared by the benchmark scripts: a corpus to measure on and the machine description."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from asrforge.data.synth import SynthConfig, synthesize_corpus
from asrforge.train.trainer import Trainer


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def bench_corpus(out: str | Path, hours: float = 0.1) -> Path:
    """A synthetic digit corpus (cached in ``out``) so benchmarks run anywhere."""
    out = Path(out)
    synthesize_corpus(out, SynthConfig(hours=hours, seed=11), progress=False)
    return out


def measure_steps(recipe, out: Path, steps: int) -> dict:
    """Optimizer steps on batches prepared beforehand (from the trainer's own loader, so manifests and shards
    alike): what one training step consumes, data loading excluded. Each step is the trainer's own (any
    family; mixed precision on a GPU, gradient clipping, the weight average, the speaker adversary)."""
    trainer = Trainer(recipe, out, progress=False)
    data = []
    for batch in trainer._loader():
        data.append(batch)
        if len(data) >= min(steps, len(trainer.sampler)):
            break
    trainer.model.train()
    dev = trainer.dist.device
    utts = seconds = 0.0
    start = time.perf_counter()
    for k in range(steps + 2):
        batch = data[k % len(data)]
        if k == 2:      # two warm-up steps (allocator, kernels)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            utts = seconds = 0.0
        trainer._train_step(batch)
        trainer._optimizer_step()
        utts += len(batch)
        seconds += float(batch.feat_lens.sum()) * recipe.features.hop_ms / 1000
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"utts_per_s": utts / elapsed, "audio_s_per_s": seconds / elapsed,
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype is not None else None}
