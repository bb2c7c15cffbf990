"""Build a synthetic speech corpus: train/dev/test manifests whose test voices are never heard in train or dev.

A *voice* is an eSpeak NG variant (m1, f3, klatt2, ...) spoken with any of several English accents.
Variants are split three ways, so dev and test speak with voices the model never trained on.
Every utterance draws its own text, accent, rate, pitch, silence, gain and noise from a random
generator seeded by (seed, split, index). eSpeak NG's waveform generator also keeps state from one
utterance to the next (it survives espeak_Terminate), so utterances are rendered in fixed chunks of
consecutive indices, each chunk in a freshly spawned process: the corpus is identical for a seed
whatever the number of workers.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from asrforge_runtime.audio import SAMPLE_RATE, resample, write_audio
from asrforge.data.manifest import Utterance, write_manifest
from asrforge.data.synth.espeak import EspeakEngine
from asrforge.data.synth.grammar import DOMAINS
from asrforge.progress import progress_bar

ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
# Variants that still sound like speech (the robotic, whispering and croaking ones are left out).
VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt6",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky",
    "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "Storm", "Tweaky",
    "adam", "anika", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
    "edward", "edward2", "grandma", "grandpa", "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "mike2", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
]
SPLITS = ("train", "dev", "test")
GENERATOR_VERSION = 2   # bump when rendering changes, so cached corpora are rebuilt
CHUNK = 256   # utterances rendered per fresh process (part of the corpus definition: changing it changes audio)


@dataclass
class SynthConfig:
    domain: Literal["digits", "commands"] = "digits"
    hours: float = 1.0                 # training audio; dev and test add dev_fraction/test_fraction of it
    seed: int = 0
    dev_fraction: float = 0.05
    test_fraction: float = 0.08
    min_eval_utts: int = 100           # dev/test never smaller than this, so their WER means something
    held_out_voices: float = 0.2       # fraction of variants kept for test (as many again /2 for dev)
    rate: tuple[int, int] = (120, 220)     # words per minute
    pitch: tuple[int, int] = (20, 80)
    pitch_range: tuple[int, int] = (20, 90)
    snr_db: tuple[float, float] = (8.0, 35.0)
    silence: tuple[float, float] = (0.05, 0.4)   # seconds added before and after speech


def split_voices(seed: int, held_out: float) -> dict[str, list[str]]:
    """Disjoint variant lists for train/dev/test, fixed by ``seed``."""
    variants = sorted(VARIANTS)
    random.Random(f"voices-{seed}").shuffle(variants)
    n_test = max(1, round(held_out * len(variants)))
    n_dev = max(1, round(held_out / 2 * len(variants)))
    return {"test": variants[:n_test], "dev": variants[n_test : n_test + n_dev], "train": variants[n_test + n_dev :]}


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise tilted toward low frequencies by a random amount (room-like hum to hiss)."""
    white = rng.standard_normal(n).astype(np.float32)
    alpha = rng.uniform(0.0, 0.95)                 # one-pole low-pass strength
    if alpha > 0:
        from scipy.signal import lfilter
        white = lfilter([1.0 - alpha], [1.0, -alpha], white).astype(np.float32)
    return white / (np.sqrt(np.mean(white**2)) + 1e-8)


def render(config: SynthConfig, split: str, index: int, voices: list[str]) -> tuple[str, str, np.ndarray]:
    """-> (text, speaker, 16 kHz float32 waveform) for utterance ``index`` of ``split``."""
    rng = random.Random(f"{config.seed}-{split}-{index}")
    nrng = np.random.default_rng(rng.getrandbits(64))
    text = DOMAINS[config.domain](rng)
    variant, accent = rng.choice(voices), rng.choice(ACCENTS)
    engine = EspeakEngine.get()
    engine.seed(rng.getrandbits(31))
    pcm = engine.synthesize(text, f"{accent}+{variant}", rate=rng.randint(*config.rate),
                            pitch=rng.randint(*config.pitch), pitch_range=rng.randint(*config.pitch_range))
    wave = resample(pcm.astype(np.float32) / 32768.0, engine.sample_rate, SAMPLE_RATE)
    pad = [np.zeros(int(rng.uniform(*config.silence) * SAMPLE_RATE), np.float32) for _ in range(2)]
    wave = np.concatenate([pad[0], wave, pad[1]])
    speech_power = np.mean(wave**2) + 1e-10
    snr = rng.uniform(*config.snr_db)
    wave = wave + _noise(nrng, wave.size) * math.sqrt(speech_power / 10 ** (snr / 10))
    wave *= rng.uniform(0.2, 0.9) / (np.abs(wave).max() + 1e-8)
    return text, variant, wave.astype(np.float32)


def _render_chunk(config: SynthConfig, split: str, indices: range, voices: list[str], out: str | None) -> list:
    """Render ``indices`` in order in this (fresh) process; write WAVs under ``out`` or return durations."""
    results = []
    for index in indices:
        text, speaker, wave = render(config, split, index, voices)
        if out is None:
            results.append(wave.size / SAMPLE_RATE)
            continue
        path = Path(out) / "wavs" / split / f"{split}-{index:06d}.wav"
        write_audio(path, wave)
        results.append(Utterance(str(path), round(wave.size / SAMPLE_RATE, 4), text, 0.0, speaker, path.stem))
    return results


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn + one task per process: every chunk starts from eSpeak's initial state
    return ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1)


def _split_sizes(config: SynthConfig, pool: ProcessPoolExecutor) -> dict[str, int]:
    # Average duration from a small deterministic sample, to turn hours into an utterance count.
    voices = split_voices(config.seed, config.held_out_voices)["train"]
    sample = pool.submit(_render_chunk, config, "estimate", range(24), voices, None).result()
    n_train = max(1, round(config.hours * 3600 / float(np.mean(sample))))
    return {
        "train": n_train,
        "dev": max(config.min_eval_utts, round(n_train * config.dev_fraction)),
        "test": max(config.min_eval_utts, round(n_train * config.test_fraction)),
    }


def synthesize_corpus(out: str | Path, config: SynthConfig, workers: int = 2, progress: bool = True) -> dict:
    """Write ``out/{train,dev,test}.jsonl`` plus audio under ``out/wavs``; returns a summary dict.

    Idempotent: if ``out/synth.json`` records the same config, the existing corpus is kept.
    """
    out = Path(out).resolve()
    stamp = out / "synth.json"
    if stamp.is_file():
        previous = json.loads(stamp.read_text())
        same = (previous.get("config") == json.loads(json.dumps(asdict(config)))
                and previous.get("version") == GENERATOR_VERSION)
        if same and all((out / f"{s}.jsonl").is_file() for s in SPLITS):
            return previous["summary"]
    voices = split_voices(config.seed, config.held_out_voices)
    results: dict[str, list[Utterance]] = {}
    with _pool(workers) as pool:
        sizes = _split_sizes(config, pool)
        bar = progress_bar(total=sum(sizes.values()), desc="synthesizing", unit="utt", disable=not progress)
        futures = {}
        for split in SPLITS:
            for start in range(0, sizes[split], CHUNK):
                chunk = range(start, min(start + CHUNK, sizes[split]))
                futures[pool.submit(_render_chunk, config, split, chunk, voices[split], str(out))] = (split, start)
        chunks: dict[tuple[str, int], list[Utterance]] = {}
        for future in as_completed(futures):
            chunks[futures[future]] = future.result()
            bar.update(len(chunks[futures[future]]))
        bar.close()
    for split in SPLITS:
        results[split] = [u for key in sorted(k for k in chunks if k[0] == split) for u in chunks[key]]
    summary = {"domain": config.domain, "voices": voices}
    for split in SPLITS:
        write_manifest(out / f"{split}.jsonl", results[split])
        summary[split] = {"utts": len(results[split]), "hours": round(sum(u.duration for u in results[split]) / 3600, 3),
                          "speakers": len({u.speaker for u in results[split]})}
    stamp.write_text(json.dumps({"version": GENERATOR_VERSION, "config": asdict(config), "summary": summary}, indent=1))
    return summary
