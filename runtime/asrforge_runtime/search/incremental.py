"""Searches that take an utterance's encoder frames as they arrive, for streaming models.

``start_search(objective, config, lm, net)`` gives one utterance's search (greedy or beam, as ``config.beam_size``
says); ``advance(objective, net, searches, outputs)`` searches on through each one's next frames, all of them in one
batch where the search allows (the transducer's joint network). An utterance's frames given in chunks give exactly
the hypotheses the offline search gives all its frames: the search's whole state is carried. ``net`` is a
transducer's :class:`~asrforge_runtime.search.transducer.TransducerNetwork` (a PyTorch model's or the exported
graphs'), which also batches frames (``pad``); CTC searches read log-probabilities as arrays.
"""

from __future__ import annotations

import numpy as np

from asrforge_runtime.search.config import DecodeConfig, ctc_beam_options
from asrforge_runtime.search.ctc import CTCGreedy, CTCPrefixSearch
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.transducer import (BLANK_ID, TransducerOptions, beam_advance, beam_start, greedy_advance,
                                                greedy_start)
from asrforge_runtime.search.word_lm import WordLMScorer


class CTCSearch:
    """One utterance of a CTC model: its log-probabilities so far ``(T, V)`` (word times are aligned to them)."""

    def __init__(self, config: DecodeConfig, lm: WordLMScorer | None):
        self.search = CTCGreedy(BLANK_ID) if config.beam_size <= 1 else CTCPrefixSearch(ctc_beam_options(config), BLANK_ID, lm)
        self.chunks: list[np.ndarray] = []
        self.frames = 0
        self.last_emission: int | None = None     # one past the last frame whose best symbol is not blank

    @property
    def log_probs(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0, 0), np.float32)

    def advance(self, log_probs) -> None:
        log_probs = np.asarray(log_probs, dtype=np.float32)
        self.search.advance(log_probs)
        spoken = np.flatnonzero(log_probs.argmax(-1) != BLANK_ID)
        if spoken.size:
            self.last_emission = self.frames + int(spoken[-1]) + 1
        self.chunks.append(log_probs)
        self.frames += log_probs.shape[0]

    def best(self) -> Hypothesis:
        return self.search.best()

    def result(self) -> Hypothesis:
        return self.search.result()[0]


class TransducerSearch:
    """One utterance of a transducer: its greedy or beam state."""

    def __init__(self, net, config: DecodeConfig, lm: WordLMScorer | None):
        self.options = TransducerOptions(beam_size=config.beam_size, max_symbols_per_frame=config.max_symbols_per_frame)
        self.lm = lm
        self.greedy = config.beam_size <= 1
        self.state = greedy_start(net) if self.greedy else beam_start(net, lm)

    @property
    def frames(self) -> int:
        return self.state.searched

    @property
    def last_emission(self) -> int | None:
        frames = self.best().frames
        return frames[-1] + 1 if frames else None

    def best(self) -> Hypothesis:
        return self.state.hypothesis() if self.greedy else self.state.best()

    def result(self) -> Hypothesis:
        return self.state.hypothesis() if self.greedy else self.state.ranked(self.lm)[0]


def start_search(objective: str, config: DecodeConfig, lm: WordLMScorer | None, net=None):
    """A new utterance's search for a model of ``objective`` (ctc | transducer; a transducer's ``net``)."""
    if objective == "ctc":
        return CTCSearch(config, lm)
    if objective == "transducer":
        return TransducerSearch(net, config, lm)
    raise ValueError(f"no incremental search for objective {objective!r}")


def advance(objective: str, net, searches: list, outputs: list) -> None:
    """Each search on through its next frames (``outputs[i]``: ``(T_i, V)`` CTC log-probabilities or ``(T_i, J)``
    projected encoder frames). Transducer searches that share their options are searched in one batch."""
    if objective == "ctc":
        for search, out in zip(searches, outputs):
            search.advance(out)
        return
    groups: dict[tuple, list[int]] = {}
    for i, search in enumerate(searches):
        groups.setdefault((search.greedy, search.options, id(search.lm)), []).append(i)
    for members in groups.values():
        first = searches[members[0]]
        lens = [outputs[i].shape[0] for i in members]
        enc = net.pad([outputs[i] for i in members])
        states = [searches[i].state for i in members]
        if first.greedy:
            new = greedy_advance(net, enc, lens, states, first.options)
        else:
            new = beam_advance(net, enc, lens, states, first.options, first.lm)
        for i, state in zip(members, new):
            searches[i].state = state
