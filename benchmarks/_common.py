"""Helpers shared by the benchmark scripts: a corpus to measure on and the machine description."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from asrforge.data.synth import SynthConfig, synthesize_corpus
from asrforge.losses.ctc import ctc_loss
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
    alike): what one training step consumes, data loading excluded."""
    trainer = Trainer(recipe, out, progress=False)
    data = []
    for batch in trainer._loader():
        data.append(batch)
        if len(data) >= min(steps, len(trainer.sampler)):
            break
    model, opt, dev = trainer.model.train(), trainer.optimizer, trainer.dist.device
    utts = seconds = 0.0
    start = time.perf_counter()
    for k in range(steps + 2):
        batch = data[k % len(data)]
        if k == 2:      # two warm-up steps (allocator, kernels)
            start = time.perf_counter()
            utts = seconds = 0.0
        log_probs, lens = model(batch.feats.to(dev), batch.feat_lens.to(dev))
        ctc_loss(log_probs, lens, batch.tokens.to(dev), batch.token_lens.to(dev)).loss.backward()
        opt.step()
        opt.zero_grad()
        utts += len(batch)
        seconds += float(batch.feat_lens.sum()) * recipe.features.hop_ms / 1000
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"utts_per_s": utts / elapsed, "audio_s_per_s": seconds / elapsed,
            "params": sum(p.numel() for p in model.parameters())}
