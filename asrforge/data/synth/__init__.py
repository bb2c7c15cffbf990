"""Synthetic speech corpus from eSpeak NG: the built-in data for the demo and the tests."""

from asrforge.data.synth.corpus import SynthConfig, synthesize_corpus

__all__ = ["SynthConfig", "synthesize_corpus"]
