"""A PyTorch transducer as the network the transducer searches run over (``asrforge_runtime.search.transducer``).

Its tables are the predictor's projected output ``(R, J)`` and its state (a dict of ``(R, ...)`` tensors), on the
model's device; the joint network's log-probabilities come back to the CPU for the search, one ``(H, V)`` block per
frame and symbol. The searches themselves are the runtime's: the exported ONNX graphs are searched by the same code.
"""

from __future__ import annotations

import numpy as np
import torch

from asrforge.text.special import BLANK_ID
from asrforge_runtime.search.hypothesis import Hypothesis
from asrforge_runtime.search.transducer import TransducerOptions, beam_advance, beam_start, greedy_advance, greedy_start
from asrforge_runtime.search.transducer import transducer_beam_search as _beam_search
from asrforge_runtime.search.transducer import transducer_greedy as _greedy
from asrforge_runtime.search.word_lm import WordLMScorer

__all__ = ["TorchTransducer", "TransducerOptions", "beam_advance", "beam_start", "greedy_advance", "greedy_start",
           "transducer_beam_search", "transducer_greedy"]


class TorchTransducer:
    """A :class:`~asrforge_runtime.search.transducer.TransducerNetwork` over a model's ``predict_step`` and
    ``joint`` (``asrforge.models.transducer.TransducerModel``)."""

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device

    def _index(self, rows: list[int]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def start(self) -> tuple[torch.Tensor, dict]:
        state = self.model.predictor.initial_state(1, self.device)
        return self.model.predict_step(torch.full((1,), BLANK_ID, dtype=torch.long, device=self.device), state)

    @torch.inference_mode()
    def joint(self, enc: torch.Tensor, owners: list[int], t: int, table, rows: list[int]) -> np.ndarray:
        pred, _ = table
        logits = self.model.joint(enc[self._index(owners), t], pred.index_select(0, self._index(rows)))
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def step(self, table, rows: list[int], tokens: list[int]):
        _, state = table
        index = self._index(rows)
        return self.model.predict_step(self._index(tokens), {k: v.index_select(0, index) for k, v in state.items()})

    def select(self, table, rows: list[int]):
        pred, state = table
        index = self._index(rows)
        return pred.index_select(0, index), {k: v.index_select(0, index) for k, v in state.items()}

    def concat(self, tables: list):
        return (torch.cat([p for p, _ in tables]),
                {k: torch.cat([s[k] for _, s in tables]) for k in tables[0][1]})

    def pad(self, frames: list[torch.Tensor]) -> torch.Tensor:
        return torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)


def transducer_greedy(model, enc: torch.Tensor, lens: torch.Tensor,
                      options: TransducerOptions = TransducerOptions()) -> list[Hypothesis]:
    """``enc (B, T, J)`` projected encoder output -> best-path tokens, with the frame each token was emitted on."""
    return _greedy(TorchTransducer(model), enc, lens.tolist(), options)


def transducer_beam_search(model, enc: torch.Tensor, lens: torch.Tensor, options: TransducerOptions = TransducerOptions(),
                           lm: WordLMScorer | None = None) -> list[list[Hypothesis]]:
    """Modified beam search over ``B`` utterances at once; up to ``nbest`` hypotheses each, best first."""
    return _beam_search(TorchTransducer(model), enc, lens.tolist(), options, lm)
