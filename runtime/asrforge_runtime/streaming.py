"""An exported streaming encoder (``encoder_step.onnx``) run chunk by chunk over many streams at once.

:class:`OnnxStreamingEncoder` offers what a PyTorch streaming model offers asrforge's streaming engine:
``initial_stream(x)`` and ``forward_chunks(chunks, states, finals)``. Each stream's feature frames wait until a whole
step's worth (``stream.chunk_input_frames``, a multiple of the x4 front end) is in, or its input ends; then every
stream with a step due goes through the graph in one call, its state (``stream.states`` in ``asrforge_onnx.json``)
carried from call to call. A stream's outputs over its whole input equal the whole-utterance graph's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepState:
    """One stream's place: its graph states (batch of one), and the feature frames not yet a whole step."""

    states: dict[str, np.ndarray]
    pending: np.ndarray
    outputs: list = field(default_factory=list)


class OnnxStreamingEncoder:
    def __init__(self, session, stream: dict):
        self.session = session
        self.frames = stream["chunk_input_frames"]
        self.shapes = stream["states"]          # name -> shape of one stream's state, in graph order
        self.width = session.get_outputs()[0].shape[-1]     # J or V: what a chunk with no frames out is as wide

    def initial_stream(self, x: np.ndarray) -> StepState:
        """A new stream's state, for feature frames like ``x (T, D)``."""
        states = {name: np.zeros((1, *shape), dtype=bool if name == "cache_valid" else
                                 np.int64 if name == "offset" else np.float32) for name, shape in self.shapes.items()}
        return StepState(states, np.zeros((0, x.shape[-1]), dtype=np.float32))

    def forward_chunks(self, chunks: list[np.ndarray], states: list[StepState], finals: list[bool]) -> list[np.ndarray]:
        """The next feature frames of several streams ``(T_i, D)`` -> the encoder frames they complete
        ``(T_i', J or V)``; ``finals[i]``: stream ``i``'s input ends here."""
        outs: list[list[np.ndarray]] = [[] for _ in chunks]
        for x, s in zip(chunks, states):
            s.pending = np.concatenate([s.pending, np.asarray(x, dtype=np.float32)])
        F = self.frames
        while True:
            due = [i for i, s in enumerate(states) if s.pending.shape[0] >= F or (finals[i] and s.pending.shape[0])]
            if not due:
                break
            dim = states[due[0]].pending.shape[1]
            x = np.zeros((len(due), F, dim), dtype=np.float32)
            valid = np.zeros(len(due), dtype=np.int64)
            for j, i in enumerate(due):
                part = states[i].pending[:F]
                x[j, : part.shape[0]], valid[j] = part, part.shape[0]
                states[i].pending = states[i].pending[F:]
            feeds = {"x": x, "x_valid": valid}
            for name in self.shapes:
                feeds[name] = np.concatenate([states[i].states[name] for i in due])
            out, out_valid, *nxt = self.session.run(None, feeds)
            for j, i in enumerate(due):
                outs[i].append(out[j, : int(out_valid[j])])
                states[i].states = {name: value[j: j + 1] for name, value in zip(self.shapes, nxt)}
        return [np.concatenate(o) if o else np.zeros((0, self.width), np.float32) for o in outs]
