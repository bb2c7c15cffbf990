"""Conversations for the diarization tests: eSpeak voices far apart in pitch taking turns, with their reference."""

from __future__ import annotations

import numpy as np
from serve_fixtures import SR

from asrforge.inference.diarization import Turn

LOW = ("en-us+m3", 15)       # a low male voice
HIGH = ("en-us+f4", 90)      # a high female voice
LINES = ["hello there, how was your trip to the coast last week",
         "it was wonderful, the weather stayed warm the whole time",
         "did you manage to see the old lighthouse on the hill",
         "yes, we climbed all the way to the top and watched the ships",
         "that sounds like a lovely day out by the sea",
         "it really was, you should go there next summer with your family"]


# eSpeak keeps state from one utterance to the next (asrforge.data.synth.corpus), so speech made in the test process
# would change what later tests in it synthesize: these voices are rendered in a child process
_RENDER = """
import ast, sys, numpy as np, soxr
from asrforge.data.synth.espeak import EspeakEngine
engine, out = EspeakEngine.get(), {}
items = ast.literal_eval(sys.argv[2])
for i, (text, voice, pitch, seed) in enumerate(items):
    engine.seed(seed)
    wave = engine.synthesize(text, voice, pitch=pitch).astype(np.float32) / 32768
    out[str(i)] = soxr.resample(wave, engine.sample_rate, 16000).astype(np.float32)
np.savez(sys.argv[1], **out)
"""


def speak(items: list[tuple[str, tuple[str, int], int]]) -> list[np.ndarray]:
    """``[(text, (voice, pitch), seed), ...]`` -> 16-kHz waveforms, rendered by eSpeak in a child process."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/speech.npz"
        spec = repr([(text, voice[0], voice[1], seed) for text, voice, seed in items])
        subprocess.run([sys.executable, "-c", _RENDER, out, spec], check=True, timeout=300)
        with np.load(out) as saved:
            return [saved[str(i)] for i in range(len(items))]


def say(text: str, voice: tuple[str, int], seed: int = 0) -> np.ndarray:
    return speak([(text, voice, seed)])[0]


def conversation(voices=(LOW, HIGH), lines=LINES, pause_s: float = 0.5) -> tuple[np.ndarray, list[Turn]]:
    """The lines spoken by the voices in turn, ``pause_s`` apart -> (16-kHz samples, the reference turns)."""
    audio, turns, t = [], [], 0.0
    pause = np.zeros(int(pause_s * SR), np.float32)
    waves = speak([(text, voices[i % len(voices)], i) for i, text in enumerate(lines)])
    for i, wave in enumerate(waves):
        voice = voices[i % len(voices)]
        turns.append(Turn(round(t, 3), round(t + len(wave) / SR, 3), voice[0]))
        audio += [wave, pause]
        t += (len(wave) + len(pause)) / SR
    return np.concatenate(audio), turns


def der(reference: list[Turn], hypothesis: list[Turn]) -> float:
    """pyannote.metrics' DER, with a 0.25-s collar on each side of every reference boundary."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        a = Annotation()
        for i, t in enumerate(turns):
            a[Segment(t.start, t.end), i] = t.speaker
        return a
    return DiarizationErrorRate(collar=0.5, skip_overlap=True)(annotation(reference), annotation(hypothesis))
