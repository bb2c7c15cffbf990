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


def say(text: str, voice: tuple[str, int], seed: int = 0) -> np.ndarray:
    import soxr

    from asrforge.data.synth.espeak import EspeakEngine

    engine = EspeakEngine.get()
    engine.seed(seed)
    wave = engine.synthesize(text, voice[0], pitch=voice[1]).astype(np.float32) / 32768
    return soxr.resample(wave, engine.sample_rate, SR).astype(np.float32)


def conversation(voices=(LOW, HIGH), lines=LINES, pause_s: float = 0.5) -> tuple[np.ndarray, list[Turn]]:
    """The lines spoken by the voices in turn, ``pause_s`` apart -> (16-kHz samples, the reference turns)."""
    audio, turns, t = [], [], 0.0
    pause = np.zeros(int(pause_s * SR), np.float32)
    for i, text in enumerate(lines):
        voice = voices[i % len(voices)]
        wave = say(text, voice, seed=i)
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
