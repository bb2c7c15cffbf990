"""configs/fsdd_ctc.yaml end to end, as a user and the benchmark run it: an FSDD-layout folder of four
synthetic voices -> `asrforge prepare fsdd` -> train (the recipe shrunk to seconds) -> evaluate with the recipe's
closed-vocabulary word bigram; and benchmarks/fsdd_heldout.py on one held-out voice."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asrforge_runtime.audio import resample
from asrforge.data.synth.espeak import EspeakEngine
from asrforge.data.synth.grammar import DIGITS
from conftest import REPO

# four voices named as FSDD names its speakers ({digit}_{speaker}_{index}.wav)
VOICES = {"amy": "en-us+f2", "ben": "en-gb-x-rp+m3", "cal": "en-us-nyc+m7", "dot": "en-gb-scotland+f4"}
INDICES = 12          # whole-corpus split: test = index 0-4, dev = 5-9, train = 10-11
# The recipe's architecture and options (conformer, speaker CMVN, EMA, speed perturbation, SpecAugment, the
# closed-vocabulary bigram) at a size that trains in seconds.
SHRINK = ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.layers=1", "model.encoder.ff_mult=2",
          "train.epochs=2", "train.max_minutes=null", "train.warmup_steps=2", "train.log_every=5", "train.threads=1",
          "train.ema_decay=0.9"]


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory):
    """SRC/recordings/{digit}_{speaker}_{index}.wav at 8 kHz, 16-bit, trimmed to the word as FSDD's files are."""
    src = tmp_path_factory.mktemp("fsdd")
    (src / "recordings").mkdir()
    engine = EspeakEngine.get()
    for speaker, voice in VOICES.items():
        for digit, word in enumerate(DIGITS):
            for index in range(INDICES):
                engine.seed(1000 * digit + index)
                pcm = engine.synthesize(word, voice, rate=140 + 5 * index, pitch=40 + 2 * index)
                wave = resample(pcm.astype(np.float32) / 32768.0, engine.sample_rate, 8000)
                loud = np.flatnonzero(np.abs(wave) > 0.02)
                sf.write(src / "recordings" / f"{digit}_{speaker}_{index}.wav", wave[loud[0]:loud[-1] + 1], 8000,
                         subtype="PCM_16")
    return src


def cli(*args, script=None):
    command = [sys.executable, script] if script else [sys.executable, "-m", "asrforge.cli"]
    proc = subprocess.run([*command, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_recipe_trains_on_the_whole_four_speaker_manifest_and_decodes_only_digits(fsdd, tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    cli("prepare", "fsdd", fsdd, "--out", data)
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    assert {u["speaker"] for u in train} == set(VOICES) and len(train) == 4 * 10 * (INDICES - 10)

    cli("train", REPO / "configs" / "fsdd_ctc.yaml", f"data.train={data / 'train.jsonl'}",
        f"data.dev={data / 'dev.jsonl'}", *SHRINK, "--out", exp)
    # the recipe's word bigram is built from the training transcripts next to the checkpoint
    arpa = (exp / "lm.arpa").read_text()
    assert "\\2-grams:" in arpa and all(f" {w}" in arpa or f"\t{w}" in arpa for w in DIGITS)

    proc = cli("evaluate", "--model", exp, "--manifest", data / "test.jsonl", "--json", tmp_path / "eval.json",
               "--report-dir", tmp_path / "report")
    assert "2-gram LM" in proc.stdout and "closed vocabulary" in proc.stdout
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["utts"] == 4 * 10 * 5 and summary["beam_size"] == 4 and 0.0 <= summary["wer"]
    hyps = [json.loads(line)["hypothesis"] for line in (tmp_path / "report" / "utterances.jsonl").read_text().splitlines()]
    # the closed vocabulary: a barely trained model spells "oeo" without it; with it, every word it writes is a digit
    assert len(hyps) == 200 and any(hyps) and all(w in DIGITS for h in hyps for w in h.split())


def test_heldout_benchmark_reports_each_score_for_an_unseen_voice(fsdd, tmp_path):
    proc = cli("--fsdd", fsdd, "--speakers", "dot", "--out", tmp_path, "--", *SHRINK,
               script=REPO / "benchmarks" / "fsdd_heldout.py")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    dot = result["speakers"]["dot"]
    # every recording of the held-out voice is scored, with and without the LM, for best.pt and last.pt
    assert dot["utts"] == 10 * INDICES and result["mean_wer"] == dot["wer"]
    assert {"wer_last", "wer_nolm", "wer_last_nolm"} <= set(dot) and all(0.0 <= dot[k] for k in ("wer", "wer_nolm"))
    train = [json.loads(line) for line in (tmp_path / "data-dot" / "train.jsonl").read_text().splitlines()]
    assert "dot" not in {u["speaker"] for u in train}
