"""Searches that take an utterance's encoder frames as they arrive, for streaming models.

``start_search(model, config, lm)`` gives one utterance's search, chosen by the model's objective (greedy or beam,
as ``config.beam_size`` says); ``advance(model, searches, outputs)`` searches on through each one's next frames,
all of them in one batch where the search allows (the transducer's joint network). An utterance's frames given in
chunks give exactly the hypotheses the offline search gives all its frames: the search's whole state is carried.
"""

from __future__ import annotations

import torch

from asrforge_runtime.search.config import DecodeConfig
from asrforge_runtime.search.ctc import CTCGreedy, CTCPrefixSearch
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.config import ctc_beam_options
from asrforge.decoding.transducer import (TorchTransducer, TransducerOptions, beam_advance, beam_start, greedy_advance,
                                          greedy_start)
from asrforge_runtime.search.word_lm import WordLMScorer
from asrforge.text.special import BLANK_ID


class CTCSearch:
    """One utterance of a CTC model: its log-probabilities so far ``(T, V)`` (word times are aligned to them)."""

    def __init__(self, config: DecodeConfig, lm: WordLMScorer | None):
        self.search = CTCGreedy(BLANK_ID) if config.beam_size <= 1 else CTCPrefixSearch(ctc_beam_options(config), BLANK_ID, lm)
        self.chunks: list[torch.Tensor] = []
        self.frames = 0
        self.last_emission: int | None = None     # one past the last frame whose best symbol is not blank

    @property
    def log_probs(self) -> torch.Tensor:
        return torch.cat(self.chunks) if self.chunks else torch.zeros(0, 0)

    def advance(self, log_probs: torch.Tensor) -> None:
        log_probs = log_probs.float().cpu()
        self.search.advance(log_probs)
        spoken = (log_probs.argmax(-1) != BLANK_ID).nonzero()
        if len(spoken):
            self.last_emission = self.frames + int(spoken[-1]) + 1
        self.chunks.append(log_probs)
        self.frames += log_probs.shape[0]

    def best(self) -> Hypothesis:
        return self.search.best()

    def result(self) -> Hypothesis:
        return self.search.result()[0]


class TransducerSearch:
    """One utterance of a transducer: its greedy or beam state."""

    def __init__(self, model, config: DecodeConfig, lm: WordLMScorer | None):
        self.options = TransducerOptions(beam_size=config.beam_size, max_symbols_per_frame=config.max_symbols_per_frame)
        self.lm = lm
        self.greedy = config.beam_size <= 1
        net = TorchTransducer(model)
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


def start_search(model, config: DecodeConfig, lm: WordLMScorer | None):
    """A new utterance's search for ``model``'s objective (ctc | transducer)."""
    if model.objective == "ctc":
        return CTCSearch(config, lm)
    if model.objective == "transducer":
        return TransducerSearch(model, config, lm)
    raise ValueError(f"no incremental search for objective {model.objective!r}")


@torch.inference_mode()
def advance(model, searches: list, outputs: list[torch.Tensor]) -> None:
    """Each search on through its next frames (``outputs[i]``: ``(T_i, V)`` CTC log-probabilities or ``(T_i, J)``
    projected encoder frames). Transducer searches that share their options are searched in one batch."""
    if model.objective == "ctc":
        for search, out in zip(searches, outputs):
            search.advance(out)
        return
    groups: dict[tuple, list[int]] = {}
    for i, search in enumerate(searches):
        groups.setdefault((search.greedy, search.options, id(search.lm)), []).append(i)
    net = TorchTransducer(model)
    for members in groups.values():
        first = searches[members[0]]
        lens = [outputs[i].shape[0] for i in members]
        enc = torch.nn.utils.rnn.pad_sequence([outputs[i] for i in members], batch_first=True)
        states = [searches[i].state for i in members]
        if first.greedy:
            new = greedy_advance(net, enc, lens, states, first.options)
        else:
            new = beam_advance(net, enc, lens, states, first.options, first.lm)
        for i, state in zip(members, new):
            searches[i].state = state
