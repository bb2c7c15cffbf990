"""Inputs decoded as pieces in batches and joined back into results: what asrforge's recognizers of utterance
models (the PyTorch one and the exported one) share.

A piece is a span ``(input, start, end)``: a sample range of one input (the whole of a short one, a stretch of a
long one). Pieces are decoded in batches of similar lengths (:func:`length_batches`), their word times moved to the
input's clock (:func:`placed_words`), and each input's non-empty pieces become the segments of its result
(:func:`join_pieces`).
"""

from __future__ import annotations

import numpy as np

from asrforge_runtime.audio import SAMPLE_RATE
from asrforge_runtime.errors import ConfigError
from asrforge_runtime.result import Result, Segment, Word
from asrforge_runtime.search.config import DecodeConfig
from asrforge_runtime.search.word_lm import WordLMScorer

BATCH_SECONDS = 200.0   # padded audio seconds decoded at once

Span = tuple[int, int, int]


def length_batches(spans: list[Span], seconds: float = BATCH_SECONDS) -> list[list[int]]:
    """Indices of ``spans`` in batches of similar lengths whose padded size stays within ``seconds`` of audio."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][2] - spans[i][1])
    batches, current = [], []
    for i in order:     # sorted by length, so ``len(current) * this length`` is the padded size
        if current and (len(current) + 1) * (spans[i][2] - spans[i][1]) > seconds * SAMPLE_RATE:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def placed_words(found: list[Word], offset_s: float, end_s: float) -> list[Word]:
    """A piece's words (seconds from its first feature frame) moved by ``offset_s`` to the input's clock; the last
    frame can reach a little past the piece, so a word ends where its audio does (``end_s``) at the latest."""
    return [Word(w.word, round(min(w.start + offset_s, end_s), 3), round(min(w.end + offset_s, end_s), 3))
            for w in found]


def join_pieces(waves: list[np.ndarray], spans: list[Span], segments: list[Segment]) -> list[Result]:
    """Each input's pieces that said something, in order, as its result's segments (numbered from 0)."""
    per_wave: list[list[Segment]] = [[] for _ in waves]
    for (w, _, _), segment in zip(spans, segments):
        if segment.text:
            segment.id = len(per_wave[w])
            per_wave[w].append(segment)
    return [Result(" ".join(s.text for s in segments), segments, None, round(wave.size / SAMPLE_RATE, 3))
            for wave, segments in zip(waves, per_wave)]


def refuse_other_tasks(options: dict) -> None:
    """Take ``language``, ``task`` and ``temperature`` out of ``options``, refusing any value but the defaults: an
    asrforge model reads one language, transcribes, and searches rather than samples."""
    if options.pop("language", None) not in (None, "", "auto"):
        raise ConfigError("language: an asrforge model reads the one language it was trained on and takes no "
                          "language option; leave it out (or auto)")
    if options.pop("task", None) not in (None, "transcribe"):
        raise ConfigError("task: an asrforge model transcribes only; translation needs a multilingual Whisper checkpoint")
    if options.pop("temperature", None) not in (None, 0, 0.0, (0.0,), [0.0]):
        raise ConfigError("temperature: an asrforge model decodes by search, not by sampling; "
                          "choose its beam_size instead (1 is greedy)")


def word_times_wanted(options: dict, offered: bool, family: str) -> bool:
    """Take ``word_timestamps`` out of ``options``: whether results carry word times (``offered``: whether the model
    can time words, the default when not asked), refusing them where a ``family`` model's decoder cannot."""
    asked = options.pop("word_timestamps", None)
    if asked and not offered:
        raise ConfigError(f"word_timestamps: a {family} model's attention decoder has no alignment to the audio, so "
                          "it gives no word times (CTC, joint CTC/attention and transducer models do)")
    return offered if asked is None else bool(asked)


def describe_search(config: DecodeConfig, lm: WordLMScorer | None, adds_word_bonus: bool) -> str:
    """How a model decodes with ``config``, for people: ``greedy``, ``beam 8``, or ``beam 8, 2-gram LM weight 0.5 bonus
    1`` (``, no word bonus in attention search`` where the search adds none; ``, closed vocabulary``)."""
    if config.beam_size <= 1:
        return "greedy"
    if lm is None:
        return f"beam {config.beam_size}"
    bonus = f" bonus {lm.word_bonus:g}" if adds_word_bonus else ", no word bonus in attention search"
    return (f"beam {config.beam_size}, {lm.lm.order}-gram LM weight {lm.weight:g}{bonus}"
            + (", closed vocabulary" if lm.closed_vocabulary else ""))
