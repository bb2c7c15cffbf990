"""Shared fixtures: everything is generated here (tiny synthetic corpus, tiny trained model); nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asrforge.data.synth import SynthConfig, synthesize_corpus

torch.set_num_threads(2)

TINY_MODEL = ["model.encoder.hidden=32", "model.encoder.layers=1", "model.encoder.conv_channels=4", "model.encoder.dropout=0.0", "model.dropout=0.0"]


# Shrinks each shipped demo recipe to seconds on CPU; the commands are the ones a user runs.
TINY_RECIPE = {
    "demo_conformer_ctc.yaml": ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.layers=1",
                                "model.encoder.conv_channels=4"],
    "demo_las.yaml": ["model.encoder.hidden=32", "model.encoder.pyramid_layers=2", "model.decoder.hidden=32",
                      "model.decoder.embed=16", "model.decoder.attn_dim=16", "model.sampling_ramp_steps=2"],
    "demo_transformer.yaml": ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.layers=1",
                              "model.encoder.ff=64", "model.encoder.conv_channels=4", "model.decoder.d_model=32",
                              "model.decoder.heads=2", "model.decoder.layers=1", "model.decoder.ff=64"],
    "demo_joint.yaml": ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.layers=1",
                        "model.encoder.conv_channels=4", "model.decoder.d_model=32", "model.decoder.heads=2",
                        "model.decoder.layers=1", "model.decoder.ff=64", "decode.joint_search=rescore"],
    "demo_rnnt.yaml": ["model.encoder.hidden=32", "model.encoder.layers=1", "model.encoder.conv_channels=4",
                       "model.pred_hidden=32", "model.joint_dim=32"],
    "demo_conformer_rnnt.yaml": ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.layers=1",
                                 "model.encoder.conv_channels=4", "model.pred_hidden=32", "model.joint_dim=32"],
}


def tiny_overrides(corpus: Path, **extra) -> list[str]:
    """Overrides turning configs/demo_ctc.yaml into a seconds-long CPU run on ``corpus``."""
    base = {"data.train": corpus / "train.jsonl", "data.dev": corpus / "dev.jsonl", "data.max_batch_seconds": 12,
            "train.epochs": 2, "train.max_minutes": "null", "train.warmup_steps": 2, "train.log_every": 1,
            "train.threads": 1, "features.n_mels": 40, "decode.beam_size": 4}
    base.update(extra)
    return TINY_MODEL + [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """~40 short digit utterances: train, dev and test with disjoint voices."""
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, SynthConfig(hours=0.02, seed=3, min_eval_utts=8), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory, corpus) -> Path:
    """An experiment folder with best.pt/last.pt from a few tiny steps (accuracy irrelevant)."""
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    exp = tmp_path_factory.mktemp("exp")
    Trainer(load_recipe(REPO / "configs" / "demo_ctc.yaml", tiny_overrides(corpus)), exp, progress=False).fit()
    return exp


@pytest.fixture(scope="session")
def whisper_pt(tmp_path_factory) -> Path:
    """The tiny random Whisper (whisper_fixtures.tiny_whisper) saved as an OpenAI .pt beside its tokenizer.json."""
    from whisper_fixtures import tiny_whisper

    from asrforge.models.whisper import save_openai

    folder = tmp_path_factory.mktemp("whisper")
    model, _ = tiny_whisper(folder)
    save_openai(model, folder / "tiny.pt")
    return folder / "tiny.pt"


@pytest.fixture(scope="session")
def babbler(tmp_path_factory) -> Path:
    """An untrained (seeded) BiLSTM-CTC checkpoint, greedy, no LM: it says a different string of letters for every
    recording, which makes a wrong, swapped or lost output visible (the tiny trained model says nothing at all)."""
    from asrforge.checkpoint import save_checkpoint
    from asrforge.models.build import build_model
    from asrforge.recipe import load_recipe
    from asrforge.text import CharTokenizer

    recipe = load_recipe("demo_ctc", [*TINY_MODEL, "features.n_mels=40", "decode.beam_size=1", "lm.order=0"])
    tokenizer = CharTokenizer.build(["zero one two three four five six seven eight nine"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("babbler") / "babbler.pt"
    save_checkpoint(path, recipe, tokenizer, build_model(recipe.model, recipe.features.dim, tokenizer.vocab_size))
    return path


REPO = Path(__file__).resolve().parent.parent


def sine(seconds: float = 1.0, sr: int = 16000, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_manifest_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
