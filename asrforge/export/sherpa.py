"""An asrforge model in the layout sherpa-onnx loads as it is: ``asrforge export EXP --format sherpa-onnx --out DIR``.

sherpa-onnx computes its own features (kaldi-native-fbank: Kaldi's log-mel filterbank, dither 0, unsnipped edges,
low 20 Hz, high 400 Hz below Nyquist) and hands them to the first graph unnormalized. A model trained with
``features.kind: kaldi_fbank`` on those settings gets exactly them; its global CMVN statistics fold into the first
graph, so the folder needs nothing beyond sherpa-onnx's front end:

- a transducer with the stateless predictor: ``encoder.onnx`` (``x (N, T, 80), x_lens -> encoder_out (N, T', J),
  encoder_out_lens``), ``decoder.onnx`` (``y (N, context_size) -> decoder_out (N, J)``, with the ``vocab_size`` and
  ``context_size`` metadata sherpa-onnx reads), ``joiner.onnx``; for ``OfflineRecognizer.from_transducer``.
- a streaming transducer (``model.streaming``, stateless predictor): ``encoder.onnx`` is one chunk step in the
  contract sherpa-onnx's ``OnlineRecognizer.from_transducer`` gives its ``lstm`` encoders (metadata ``model_type:
  lstm``): ``x (N, T, 80), h (1, N, S), c (1, N, 1) -> encoder_out (N, C, J), next_h, next_c``, with ``T =
  decode_chunk_len`` feature frames per call and no overlap. sherpa-onnx only stacks these states along their second
  axis and starts them at zeros, so ``h`` carries every cache of asrforge's step (:mod:`asrforge.export.streaming`:
  front-end frames, attention keys and values with their validity, convolution inputs, positions, recurrent state)
  flattened into ``S`` floats per stream; ``c`` is a one-float placeholder the contract asks for. Such a folder is for
  sherpa-onnx's streaming recognizer; asrforge-runtime streams the ``--format onnx`` export.
- a CTC model: ``model.onnx`` (``x, x_lens -> log_probs (N, T', V), log_prob_lens``); for
  ``OfflineRecognizer.from_zipformer_ctc``, which reads the vocabulary size from the output's shape.
- ``tokens.txt`` (``<blk>`` for the blank, ``▁`` for a space) and ``asrforge_onnx.json``.

What sherpa-onnx cannot reproduce is refused naming the setting to change (:func:`sherpa_problems`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from asrforge.errors import ConfigError
from asrforge.export.onnx import _description, _graphs, open_source, write_graphs
from asrforge.features.cmvn import EPS
from asrforge_runtime.onnx_model import SPACE, TOKENS_FILE

BLANK_SYMBOL = "<blk>"      # what sherpa-onnx's tokens.txt calls the blank
SHERPA_FEATURES = {"sample_rate": 16000, "win_ms": 25.0, "hop_ms": 10.0, "fmin": 20.0, "fmax": None, "deltas": False}


def sherpa_problems(recipe, model) -> list[str]:
    """Each setting of a model that sherpa-onnx cannot run as exported, with what to change."""
    f = recipe.features
    problems = []
    if f.kind != "kaldi_fbank":
        problems.append(f"features.kind is {f.kind}: sherpa-onnx computes Kaldi filterbanks; train with "
                        "features.kind: kaldi_fbank (configs/demo_rnnt_fbank.yaml, configs/demo_ctc_fbank.yaml)")
    for name, wanted in SHERPA_FEATURES.items():
        if getattr(f, name) != wanted:
            problems.append(f"features.{name} is {getattr(f, name)}: sherpa-onnx's front end uses {wanted}")
    if f.cmvn not in ("global", "none"):
        problems.append(f"features.cmvn is {f.cmvn}: sherpa-onnx normalizes nothing, and only global statistics "
                        "fold into the graph; train with features.cmvn: global (or none)")
    if model.objective == "attention":
        problems.append(f"model.family is {recipe.model.family}: sherpa-onnx runs asrforge's ctc and rnnt models")
    if model.objective == "transducer" and model.config.predictor != "stateless":
        problems.append("model.predictor is lstm: sherpa-onnx's transducer decoder is a function of the last "
                        "context_size tokens; train with model.predictor: stateless")
    return problems


class GlobalCMVN(torch.nn.Module):
    """``(x - mean) / (std + EPS)`` with the recipe's global statistics (``features.cmvn: none``: ``x`` as it is), folded
    into a graph so sherpa-onnx's raw filterbanks read as the model was trained on them."""

    def __init__(self, features):
        super().__init__()
        stats = features.cmvn == "global"
        self.register_buffer("mean", torch.tensor(features.global_mean if stats else [0.0]))
        self.register_buffer("scale", 1.0 / (torch.tensor(features.global_std) + EPS) if stats else torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


class Normalized(torch.nn.Module):
    """A graph that normalizes its features first (:class:`GlobalCMVN`), and zeroes frames past ``x_lens`` as
    asrforge pads them (sherpa-onnx pads a batch with -23.03, which normalized would be read by the front end's
    convolution at each utterance's end)."""

    def __init__(self, graph: torch.nn.Module, features):
        super().__init__()
        self.graph, self.cmvn = graph, GlobalCMVN(features)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        real = torch.arange(x.shape[1], device=x.device)[None] < x_lens[:, None]
        return self.graph(self.cmvn(x) * real[..., None], x_lens)


class PackedStreamingEncoder(torch.nn.Module):
    """asrforge's encoder step (:class:`~asrforge.export.streaming.EncoderStep`) in sherpa-onnx's ``lstm`` encoder
    contract: ``x (N, T, D), h (1, N, S), c (1, N, 1) -> encoder_out (N, C, J), next_h, next_c``, features normalized
    by the recipe's global statistics first; every state of the step lives flattened in ``h`` (booleans as 0/1,
    the Transformer's position count as a float, exact below 2^24 frames)."""

    def __init__(self, step: torch.nn.Module, shapes: dict[str, tuple[int, ...]], kinds: dict[str, torch.dtype],
                 features):
        super().__init__()
        self.step, self.shapes, self.kinds = step, shapes, kinds
        self.sizes = [math.prod(shape) for shape in shapes.values()]
        self.cmvn = GlobalCMVN(features)

    @property
    def packed_size(self) -> int:
        return sum(self.sizes)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        N = x.shape[0]
        flat = h[0]                                                     # (N, S)
        states, start = [], 0
        for (name, shape), size in zip(self.shapes.items(), self.sizes):
            part = flat[:, start: start + size].reshape(N, *shape)
            states.append(part > 0.5 if self.kinds[name] == torch.bool else part.to(self.kinds[name]))
            start += size
        x_valid = torch.full((N,), x.shape[1], dtype=torch.long, device=x.device)
        out, _, *following = self.step(self.cmvn(x), x_valid, *states)
        packed = torch.cat([f.reshape(N, -1).to(torch.float32) for f in following], dim=1)
        return out, packed[None], c * 1.0


def _streaming_encoder(model, f) -> tuple[tuple, dict[str, str]]:
    """The packed chunk step as a graph (:func:`asrforge.export.onnx._graphs`' form) and the encoder metadata
    sherpa-onnx's streaming recognizer reads."""
    from asrforge.export.streaming import EncoderStep

    step = EncoderStep(model)
    initial = step.initial_states(1, f.dim)
    shapes = {name: tuple(t.shape[1:]) for name, t in initial.items()}
    kinds = {name: t.dtype for name, t in initial.items()}
    packed = PackedStreamingEncoder(step, shapes, kinds, f)
    frames = 4 * step.chunk
    example = (torch.randn(2, frames, f.dim), torch.zeros(1, 2, packed.packed_size), torch.zeros(1, 2, 1))
    graph = (packed, example, ["x", "h", "c"], ["encoder_out", "next_h", "next_c"],
             {"x": {0: "N"}, "h": {1: "N"}, "c": {1: "N"}, "encoder_out": {0: "N"}, "next_h": {1: "N"},
              "next_c": {1: "N"}})
    metadata = {"model_type": "lstm", "num_encoder_layers": "1", "T": str(frames), "decode_chunk_len": str(frames),
                "d_model": str(packed.packed_size), "rnn_hidden_size": "1"}
    return graph, metadata


def write_sherpa_tokens(tokenizer, path: Path) -> None:
    """``symbol id`` per line: ``<blk>`` for the blank, a space written ``▁``."""
    symbols = [BLANK_SYMBOL if i == tokenizer.blank_id else (tokenizer.piece(i).replace(" ", SPACE) or SPACE)
               for i in range(tokenizer.vocab_size)]
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)), encoding="utf-8")


def export_sherpa_onnx(source: str | Path, out: str | Path, quantization: str = "float32") -> list[Path]:
    """Write ``source`` (an asrforge checkpoint or experiment folder) as a sherpa-onnx model into the new or empty
    folder ``out``; returns the files written."""
    out = Path(out)
    transcriber = open_source(source, out, quantization, "sherpa-onnx")
    recipe, model = transcriber.recipe, transcriber.model
    problems = sherpa_problems(recipe, model)
    if problems:
        raise ConfigError(f"{source} cannot run in sherpa-onnx as exported: " + "; ".join(problems))
    f = recipe.features
    graphs, _ = _graphs(model, f.dim)       # ctc or transducer: nothing to describe beyond the common keys
    streaming = bool(getattr(recipe.model, "streaming", False)) and model.objective == "transducer"
    extra = {"model_type": f"asrforge_{recipe.model.family}"}
    if streaming:
        graphs["encoder"], extra = _streaming_encoder(model, f)
    else:
        first = next(iter(graphs))          # the graph that reads the features: the statistics fold into it
        module, *rest = graphs[first]
        graphs[first] = (Normalized(module, f), *rest)
    layout = "sherpa-onnx-online" if streaming else "sherpa-onnx"
    info = {**_description(transcriber, list(graphs), quantization, None), "layout": layout}
    metadata = {"asrforge": json.dumps(info), "vocab_size": str(info["vocab_size"]), "feature_dim": str(f.dim),
                **extra}
    if model.objective == "transducer":
        metadata["context_size"] = str(model.config.context_size)
    written = write_graphs(out, graphs, metadata, quantization, info)
    write_sherpa_tokens(transcriber.tokenizer, out / TOKENS_FILE)
    return written + [out / TOKENS_FILE]
