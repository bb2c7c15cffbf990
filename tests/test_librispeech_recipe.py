"""configs/librispeech_conformer_ctc.yaml end to end, as a user runs it: a LibriSpeech-layout folder (synthetic
speech as FLAC with upper-case .trans.txt files) -> `asrforge prepare librispeech` -> train (the recipe shrunk
to seconds, its SentencePiece tokenizer trained on the training text) -> evaluate on test-clean."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from asrforge_runtime.audio import load_audio, write_audio
from asrforge.data.manifest import read_manifest
from conftest import REPO

# the recipe's parts (conformer, unigram pieces, speed perturbation, SpecAugment, EMA) at a size for seconds
SHRINK = ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.layers=1", "model.encoder.ff_mult=2",
          "model.encoder.conv_kernel=5", "text.vocab_size=24", "data.num_workers=0", "data.max_batch_seconds=12",
          "train.epochs=1", "train.warmup_steps=2", "train.log_every=5", "train.threads=1", "train.ema_decay=0.9",
          "decode.beam_size=2"]


@pytest.fixture(scope="module")
def librispeech(corpus, tmp_path_factory):
    """SRC/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac + <speaker>-<chapter>.trans.txt, the synthetic
    corpus's voices numbered as LibriSpeech numbers its readers."""
    src = tmp_path_factory.mktemp("LibriSpeech")
    for split, manifest in [("train-clean-100", "train"), ("dev-clean", "dev"), ("test-clean", "test")]:
        utts, _ = read_manifest(corpus / f"{manifest}.jsonl")
        readers = {s: 100 + i for i, s in enumerate(sorted({u.speaker for u in utts}))}
        lines: dict = {}
        for n, u in enumerate(utts):
            reader, chapter = readers[u.speaker], 7000 + readers[u.speaker]
            folder = src / split / str(reader) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            uid = f"{reader}-{chapter}-{n:04d}"
            write_audio(folder / f"{uid}.flac", load_audio(u.audio_filepath))
            lines.setdefault(folder / f"{reader}-{chapter}.trans.txt", []).append(f"{uid} {u.text.upper()}")
        for path, rows in lines.items():
            path.write_text("\n".join(rows) + "\n")
    return src


def cli(*args):
    proc = subprocess.run([sys.executable, "-m", "asrforge.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_librispeech_recipe_prepares_trains_and_evaluates(librispeech, corpus, tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    cli("prepare", "librispeech", librispeech, "--out", data)
    assert {p.name for p in data.glob("*.jsonl")} >= {"train-clean-100.jsonl", "dev-clean.jsonl", "test-clean.jsonl"}
    cli("train", REPO / "configs" / "librispeech_conformer_ctc.yaml", f"data.train={data / 'train-clean-100.jsonl'}",
        f"data.dev={data / 'dev-clean.jsonl'}", *SHRINK, "--out", exp)
    state = torch.load(exp / "best.pt", map_location="cpu", weights_only=False)
    assert state["tokenizer"]["kind"] == "sentencepiece" and state["recipe"]["model"]["encoder"]["conv_kernel"] == 5
    assert state["recipe"]["augment"]["speed_factors"] == [0.9, 1.0, 1.1]

    report = tmp_path / "eval.json"
    cli("evaluate", "--model", exp, "--manifest", data / "test-clean.jsonl", "--json", report)
    result = json.loads(report.read_text())
    assert result["utts"] == len(read_manifest(corpus / "test.jsonl")[0]) and result["beam_size"] == 2
