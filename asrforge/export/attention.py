"""An attention encoder-decoder (``las``, ``transformer``, ``joint``) as two ONNX graphs: the encoder with what the
decoder reads of it, and one decoder step with its state as explicit inputs and outputs.

- ``encoder.onnx``: ``x (N, T, D), x_lens (N,) -> memory_lens (N,), memory (N, T', M)`` and the decoder's per-utterance
  precomputation (the Transformer decoder's cross-attention keys and values per layer, ``(N, H, T', Dh)``; LAS's
  projected memory ``(N, T', A)``), then, for a model with a CTC head (``joint``), ``ctc_log_probs (N, T', V)``.
- ``decoder_step.onnx``: ``history (N, L)`` (the tokens so far, ``<sos>`` first; the step reads the last and, for
  positions, how many), ``memory_lens``, the encoder outputs above, and the state -> ``logits (N, V)`` and the next
  state. The Transformer decoder's state is its self-attention cache, ``key_i``, ``value_i (N, H, L - 1, Dh)`` per
  layer (empty at the start; one position longer after each step); LAS's is its attention context and weights and
  its LSTM cells' ``h``, ``c``. The names and shapes are listed in ``asrforge_onnx.json`` (``decoder.state``: each
  state's shape past the batch axis at the start, its dynamic dims named ``L`` (0 then) or ``T_out`` (the memory's
  frames)).

The graphs compute what the PyTorch decoder's ``prepare`` and ``step`` compute (equal within 1e-4 in
``tests/test_onnx_attention.py``); asrforge-runtime searches them with the searches the PyTorch model is searched
with (``asrforge_runtime.search.attention``).
"""

from __future__ import annotations

import torch
from torch import nn

from asrforge.models.decoders import DecoderMemory
from asrforge.nn.masks import valid_mask
from asrforge.text.special import SOS_ID


def memory_names(model: nn.Module, h: torch.Tensor, h_lens: torch.Tensor) -> list[str]:
    """The decoder's per-utterance precomputation, in graph order."""
    return sorted(model.prepare(h, h_lens).extra)


class AttentionEncoderGraph(nn.Module):
    def __init__(self, model: nn.Module, extras: list[str]):
        super().__init__()
        self.model, self.extras = model, extras

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        h, h_lens = self.model.encode(x, x_lens)
        mem = self.model.prepare(h, h_lens)
        outs = [h_lens, mem.memory, *[mem.extra[k] for k in self.extras]]
        ctc = self.model.ctc_log_probs(h)
        return tuple(outs + ([ctc] if ctc is not None else []))


class DecoderStepGraph(nn.Module):
    def __init__(self, model: nn.Module, extras: list[str], states: list[str]):
        super().__init__()
        self.model, self.extras, self.states = model, extras, states

    def forward(self, history: torch.Tensor, memory_lens: torch.Tensor, memory: torch.Tensor, *rest: torch.Tensor):
        extra = dict(zip(self.extras, rest[: len(self.extras)]))
        state = dict(zip(self.states, rest[len(self.extras):]))
        mem = DecoderMemory(memory, memory_lens, valid_mask(memory_lens, memory.shape[1]), extra)
        logits, new = self.model.decoder.step(mem, state, history)
        return (logits, *[new[k] for k in self.states])


def _example(model: nn.Module, input_dim: int, frames: int, steps: int):
    """What the graphs read after ``steps`` decoder steps over 2 utterances of up to ``frames`` feature frames."""
    x, x_lens = torch.randn(2, frames, input_dim), torch.tensor([frames, frames - 23])
    with torch.no_grad():
        h, h_lens = model.encode(x, x_lens)
        mem = model.prepare(h, h_lens)
        state = model.decoder.initial_state(mem)
        history = torch.full((2, 1), SOS_ID, dtype=torch.long)
        for k in range(steps):          # steps in: the example has a cache to grow
            _, state = model.decoder.step(mem, state, history)
            history = torch.cat([history, torch.full((2, 1), 5 + k, dtype=torch.long)], dim=1)
    return x, x_lens, h, h_lens, mem, state, history


def _axes(a: torch.Tensor, b: torch.Tensor, frames_a: int, length: str) -> dict[int, str]:
    """Dynamic axes of one tensor seen in two examples: the batch, and each dim that differs between them (the
    encoder frames where it equals ``frames_a``, else the decoded ``length``)."""
    axes = {0: "N"}
    for d in range(1, a.dim()):
        if a.shape[d] != b.shape[d]:
            axes[d] = "T_out" if a.shape[d] == frames_a else length
    return axes


def _initial_shape(initial: torch.Tensor, axes: dict[int, str]) -> list:
    """A state's shape past the batch axis before the first step, a dynamic dim named by its axis: ``T_out`` (the
    encoder frames, as LAS's attention weights) or ``L`` (the tokens so far: 0 at the start, as a cache)."""
    return [axes.get(d, size) for d, size in enumerate(initial.shape) if d > 0]


def attention_graphs(model: nn.Module, input_dim: int) -> tuple[dict, dict]:
    """``name -> (module, example inputs, input names, output names, dynamic axes)`` for the encoder and the
    decoder step (as :func:`asrforge.export.onnx._graphs` gives them), and the ``decoder`` description."""
    x, x_lens, h, h_lens, mem, state, history = _example(model, input_dim, 64, 1)
    _, _, h2, _, mem2, state2, _ = _example(model, input_dim, 96, 3)
    _, _, _, _, _, after, _ = _example(model, input_dim, 64, 2)        # the state one step later: the outputs
    T = h.shape[1]
    extras, states = sorted(mem.extra), list(state)
    per_memory = {"memory": _axes(mem.memory, mem2.memory, T, "L"),
                  **{f"memory_{k}": _axes(mem.extra[k], mem2.extra[k], T, "L") for k in extras}}
    ctc = model.ctc_log_probs(h) is not None
    encoder_outputs = ["memory_lens", "memory", *[f"memory_{k}" for k in extras]] + (["ctc_log_probs"] if ctc else [])
    encoder_axes = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "memory_lens": {0: "N"}, **per_memory}
    if ctc:
        encoder_axes["ctc_log_probs"] = {0: "N", 1: "T_out"}
    step_axes = {"history": {0: "N", 1: "L_in"}, "memory_lens": {0: "N"}, **per_memory, "logits": {0: "N"}}
    step_axes.update({f"state_{k}": _axes(state[k], state2[k], T, "L") for k in states})
    step_axes.update({f"next_state_{k}": _axes(after[k], state2[k], T, "L_next") for k in states})
    step_inputs = (history, h_lens, mem.memory, *[mem.extra[k] for k in extras], *[state[k] for k in states])
    graphs = {
        "encoder": (AttentionEncoderGraph(model, extras), (x, x_lens), ["x", "x_lens"], encoder_outputs, encoder_axes),
        "decoder_step": (DecoderStepGraph(model, extras, states), step_inputs,
                         ["history", "memory_lens", "memory", *[f"memory_{k}" for k in extras],
                          *[f"state_{k}" for k in states]],
                         ["logits", *[f"next_state_{k}" for k in states]], step_axes),
    }
    initial = model.decoder.initial_state(mem)
    description = {"graph": "decoder_step.onnx", "memory": ["memory", *[f"memory_{k}" for k in extras]],
                   "ctc_head": ctc, "sos_id": SOS_ID,
                   "state": {f"state_{k}": _initial_shape(initial[k], step_axes[f"state_{k}"]) for k in states}}
    return graphs, description
