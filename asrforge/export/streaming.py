"""A streaming encoder as one ONNX step graph with its state as explicit inputs and outputs.

A model trained with ``model.streaming`` exports, beside its whole-utterance graphs, ``encoder_step.onnx``: one
encoder chunk of ``N`` streams at once, every cache a fixed-size tensor, so onnxruntime (or any runtime) carries a
stream's state between calls without knowing the model:

    x (N, 4C, D), x_valid (N,), state_1 .. state_k -> out (N, C, J or V), out_valid (N,), next_state_1 .. next_state_k

``C`` is the encoder's chunk in output frames (``model.encoder.chunk_frames``; 1 for a recurrent encoder), ``4C`` the
feature frames that make it (the x4 front end), ``x_valid`` how many of them are real (fewer only in a stream's last
call; the rest zeros). ``out`` is what the whole-utterance graph gives for those frames: a transducer's projected
encoder frames, a CTC model's log-probabilities. The states, in ``asrforge_onnx.json``'s ``stream.states`` order
(each ``(N, ...)``, zeros at a stream's start):

- ``sub0``, ``sub1``: each front-end convolution's last input frame (its time padding at the start);
- chunked attention: ``cache_valid (N, K)`` (which of the ``K = left_chunks x C`` cached frames are real), then per
  layer ``key_i``, ``value_i (N, H, K, Dh)`` and, for a Conformer, ``conv_i (N, kernel - 1, D)``; a Transformer adds
  ``offset (N, 1)``, the frames before the chunk (its absolute positions);
- a recurrent encoder: ``h``, ``c (N, layers, H)`` (``c`` only for an LSTM).

The step equals the encoder's own ``forward_chunks`` (and so the whole-utterance forward pass under its chunk mask)
within float rounding; ``tests/test_onnx_streaming.py`` holds it there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from asrforge.errors import ConfigError
from asrforge.models.encoders import ChunkedAttentionEncoder, ConformerEncoder, RNNEncoder, TransformerEncoder

RNN_CHUNK = 1           # output frames per step for a recurrent encoder: each as soon as its 4 feature frames are in


def _halve(valid: torch.Tensor) -> torch.Tensor:
    """Real output frames of a kernel-3, stride-2, padding-1 convolution over ``valid`` real input frames."""
    return torch.div(valid + 1, 2, rounding_mode="floor")


def _positions(offset: torch.Tensor, c: int, dim: int) -> torch.Tensor:
    """``offset (N, 1)`` -> the sinusoidal encodings ``(N, c, dim)`` of positions ``offset .. offset + c - 1``
    (:func:`asrforge.nn.transformer.sinusoidal_positions`, computed for any position rather than read off a table)."""
    pos = (offset + torch.arange(c, device=offset.device)[None]).float()[..., None]          # (N, c, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=offset.device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = pos * freq                                                                      # (N, c, dim / 2)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)


class EncoderStep(nn.Module):
    """The step graph over ``model`` (a ctc or rnnt model with a streaming encoder); see the module docstring."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        encoder = model.encoder
        if isinstance(encoder, ChunkedAttentionEncoder):
            if not encoder.chunk_frames:
                raise ConfigError("model.encoder.chunk_frames is 0: the encoder attends over whole utterances and "
                                  "cannot stream; train it with chunk_frames > 0")
            if encoder.keep < 0:
                raise ConfigError("model.encoder.left_chunks is -1 (every chunk before): a stream's cache would grow "
                                  "without bound; train with a number of left chunks to export a streaming step")
            self.chunk = encoder.chunk_frames
        elif isinstance(encoder, RNNEncoder):
            self.chunk = RNN_CHUNK
        else:
            raise ConfigError(f"a {type(encoder).__name__} does not stream")
        self.encoder = encoder

    # ---- the states -------------------------------------------------------------------------------------------
    def state_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        """Each state's shape for one stream, in graph order."""
        front = self.encoder.frontend
        freq1 = (input_dim - 1) // 2 + 1
        shapes = {"sub0": (1, 1, input_dim), "sub1": (front.conv1.out_channels, 1, freq1)}
        e = self.encoder
        if isinstance(e, ChunkedAttentionEncoder):
            attn = e.layers[0].attn
            shapes["cache_valid"] = (e.keep,)
            for i, layer in enumerate(e.layers):
                shapes[f"key_{i}"] = shapes[f"value_{i}"] = (attn.heads, e.keep, attn.head_dim)
                if isinstance(e, ConformerEncoder):
                    shapes[f"conv_{i}"] = (layer.conv.kernel - 1, e.out_dim)
            if isinstance(e, TransformerEncoder):
                shapes["offset"] = (1,)
        else:
            rnn = e.rnn.rnn
            shapes["h"] = (rnn.num_layers, rnn.hidden_size)
            if isinstance(rnn, nn.LSTM):
                shapes["c"] = (rnn.num_layers, rnn.hidden_size)
        return shapes

    def initial_states(self, batch: int, input_dim: int) -> dict[str, torch.Tensor]:
        return {name: torch.zeros(batch, *shape, dtype=torch.bool if name == "cache_valid" else
                                  torch.long if name == "offset" else torch.float32)
                for name, shape in self.state_shapes(input_dim).items()}

    # ---- the step ---------------------------------------------------------------------------------------------
    def _frontend(self, x: torch.Tensor, x_valid: torch.Tensor, sub0: torch.Tensor, sub1: torch.Tensor):
        """``x (N, 4C, D)`` -> ``(N, C, out_dim)``, its real frames ``(N,)`` and the convolutions' next caches."""
        front = self.encoder.frontend
        h = x.unsqueeze(1)                                          # (N, 1, 4C, D)
        valid = x_valid
        kept = []
        for (conv, pool), cache in zip(front._layers(), (sub0, sub1)):
            h = torch.cat([cache, h], dim=2)
            kept.append(h[:, :, -1:])
            h = pool(torch.relu(nn.functional.conv2d(h, conv.weight, conv.bias, stride=2, padding=(0, 1))))
            valid = _halve(valid)
            h = h * (torch.arange(h.shape[2], device=h.device)[None] < valid[:, None])[:, None, :, None]
        N, C, T, F = h.shape
        return front.norm(front.proj(h.transpose(1, 2).reshape(N, T, C * F))), valid, kept

    def _attention_layers(self, h: torch.Tensor, valid: torch.Tensor, states: dict) -> tuple[torch.Tensor, dict]:
        e = self.encoder
        c = h.shape[1]
        frame_valid = torch.arange(c, device=h.device)[None] < valid[:, None]         # (N, c)
        cache_valid = states["cache_valid"]
        keys_valid = torch.cat([cache_valid, frame_valid], dim=1)                     # (N, K + c)
        attend = keys_valid[:, None, :]
        K = cache_valid.shape[1]
        nxt = {"cache_valid": keys_valid[:, c:]}
        if isinstance(e, TransformerEncoder):
            h = h + _positions(states["offset"], c, h.shape[-1])
            nxt["offset"] = states["offset"] + valid[:, None]
        for i, layer in enumerate(e.layers):
            conformer = isinstance(e, ConformerEncoder)
            if conformer:
                h = h + 0.5 * layer.ff1(layer.ff1_norm(h))
                q = layer.attn_norm(h)
            else:
                q = layer.norm1(h)
            k_new, v_new = layer.attn.project_kv(q)
            k = torch.cat([states[f"key_{i}"], k_new], dim=2)
            v = torch.cat([states[f"value_{i}"], v_new], dim=2)
            nxt[f"key_{i}"], nxt[f"value_{i}"] = k[:, :, c:], v[:, :, c:]
            h = h + layer.attn.attend(q, k, v, attend, query_start=K)
            if conformer:
                conv = layer.conv
                g = torch.cat([states[f"conv_{i}"], conv._gated(h, frame_valid)], dim=1)
                nxt[f"conv_{i}"] = g[:, c:]
                h = h + conv._output(conv.depthwise(g.transpose(1, 2)).transpose(1, 2))
                h = layer.out_norm(h + 0.5 * layer.ff2(layer.ff2_norm(h)))
            else:
                h = h + layer.ff(layer.norm2(h))
        return e._finish(h), nxt

    def _recurrent_layers(self, h: torch.Tensor, valid: torch.Tensor, states: dict) -> tuple[torch.Tensor, dict]:
        rnn = self.encoder.rnn.rnn
        h0 = states["h"].transpose(0, 1).contiguous()
        if isinstance(rnn, nn.LSTM):
            out, (hn, cn) = rnn(h, (h0, states["c"].transpose(0, 1).contiguous()))
            return out, {"h": hn.transpose(0, 1), "c": cn.transpose(0, 1)}
        out, hn = rnn(h, h0)
        return out, {"h": hn.transpose(0, 1)}

    def forward(self, x: torch.Tensor, x_valid: torch.Tensor, *states: torch.Tensor):
        names = list(self.state_shapes(x.shape[-1]))
        state = dict(zip(names, states))
        h, valid, (sub0, sub1) = self._frontend(x, x_valid, state["sub0"], state["sub1"])
        if isinstance(self.encoder, ChunkedAttentionEncoder):
            h, nxt = self._attention_layers(h, valid, state)
        else:
            h, nxt = self._recurrent_layers(h, valid, state)
        nxt.update(sub0=sub0, sub1=sub1)
        model = self.model
        out = model.enc_proj(h) if model.objective == "transducer" else torch.log_softmax(model.head(h).float(), -1)
        return (out, valid, *[nxt[n] for n in names])
