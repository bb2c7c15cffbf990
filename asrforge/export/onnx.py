"""An asrforge model as ONNX graphs: ``asrforge export EXP --format onnx [--quantization int8] --out DIR``.

The folder holds, for each family:

- CTC (every encoder): ``model.onnx``: ``x (N, T, D) float32, x_lens (N,) int64 -> log_probs (N, T', V),
  log_prob_lens (N,)``.
- transducer: ``encoder.onnx`` (``x, x_lens -> encoder_out (N, T', J), encoder_out_lens``, already projected for
  the joiner), ``decoder.onnx`` (one prediction-network step; an LSTM predictor: ``y (N,), h, c -> decoder_out
  (N, J), next_h, next_c`` with ``h, c (N, layers, H)``; a stateless one: ``y (N, context_size) -> decoder_out``),
  ``joiner.onnx`` (``encoder_out (N, J), decoder_out (N, J) -> logits (N, V)``).
- ``tokens.txt`` (``piece id`` per line; a space is written ``▁``) and ``asrforge_onnx.json``: the graphs, the front
  end (the recipe's ``features`` section), the decoding defaults (``decode``), the text normalization scoring uses
  (``text``) and the LM settings (``lm``). Each graph carries the same JSON as ONNX metadata (``asrforge``), with
  ``vocab_size`` and, for a stateless predictor, ``context_size``.
- ``lm.arpa`` (or ``lm.arpa.gz``): the word n-gram the model decodes with, when it has one.

``asrforge_runtime`` runs the folder without PyTorch; ``asrforge.load_model(DIR)`` takes it as any model.

Batch and time axes are dynamic, and padding never changes a real frame's output (the encoders' contract), so one
graph serves any batch. ``--quantization int8`` runs onnxruntime's dynamic quantization (int8 weights, activations
quantized per call) over every graph. The exported graphs compute the full-utterance forward pass; a streaming
encoder's chunk step is ``encoder_step.onnx`` (:mod:`asrforge.export.streaming`); an attention model's encoder and
decoder step are :mod:`asrforge.export.attention`'s.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from asrforge.checkpoint import load_checkpoint, open_checkpoint
from asrforge.errors import ConfigError
from asrforge.inference.transcriber import Transcriber, recipe_lm_file
from asrforge_runtime.onnx_model import CONFIG_FILE, FORMAT, FORMAT_VERSION, SPACE, TOKENS_FILE
from asrforge_runtime.recognizer import LM_FILE

OPSET = 17
QUANTIZATIONS = ("float32", "int8")
class _Graph(nn.Module):
    """One exported graph over ``model``: its ``forward`` is what the graph computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model


class CTCGraph(_Graph):
    """``x (N, T, D), x_lens (N,) -> log_probs (N, T', V), log_prob_lens (N,)``."""

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        return self.model(x, x_lens)


class TransducerEncoderGraph(_Graph):
    """``x (N, T, D), x_lens (N,) -> encoder_out (N, T', J), encoder_out_lens (N,)``."""

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        return self.model.encode(x, x_lens)


class LSTMDecoderGraph(_Graph):
    """One LSTM predictor step: ``y (N,), h (N, L, H), c (N, L, H) -> decoder_out (N, J), next_h, next_c``."""

    def forward(self, y: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        out, state = self.model.predict_step(y, {"h": h, "c": c})
        return out, state["h"], state["c"]


class StatelessDecoderGraph(_Graph):
    """A stateless predictor on its last tokens: ``y (N, context_size) -> decoder_out (N, J)`` (sherpa-onnx's
    decoder contract). A negative id is "before the first token" (sherpa-onnx starts from ``[-1, ..., -1, blank]``,
    icefall's convention), which asrforge's predictor spells as blanks."""

    def forward(self, y: torch.Tensor):
        return self.model.pred_proj(self.model.predictor._mix(y.clamp(min=0)))


class JoinerGraph(_Graph):
    """``encoder_out (N, J), decoder_out (N, J) -> logits (N, V)`` (unnormalized)."""

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor):
        return self.model.joint(encoder_out, decoder_out)


def _graphs(model: nn.Module, input_dim: int, streaming: bool = False) -> tuple[dict, dict]:
    """``name -> (module, example inputs, input names, output names, dynamic axes)`` for each graph of ``model``
    (with ``streaming``, its ``encoder_step`` too), and what ``asrforge_onnx.json`` says of the graphs beyond the
    common description (``decoder``, ``stream``)."""
    graphs, described = _whole_graphs(model, input_dim)
    if streaming:
        graphs["encoder_step"], described["stream"] = _step_graph(model, input_dim)
    return graphs, described


def _whole_graphs(model: nn.Module, input_dim: int) -> tuple[dict, dict]:
    """The graphs of whole utterances (see :func:`_graphs`)."""
    x, x_lens = torch.randn(2, 64, input_dim), torch.tensor([64, 41])
    frames = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}}
    if model.objective == "ctc":
        return {"model": (CTCGraph(model), (x, x_lens), ["x", "x_lens"], ["log_probs", "log_prob_lens"],
                          {**frames, "log_probs": {0: "N", 1: "T_out"}, "log_prob_lens": {0: "N"}})}, {}
    if model.objective == "attention":
        from asrforge.export.attention import attention_graphs

        graphs, decoder = attention_graphs(model, input_dim)
        return graphs, {"decoder": decoder}
    J = model.config.joint_dim
    rows = {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}}
    graphs = {"encoder": (TransducerEncoderGraph(model), (x, x_lens), ["x", "x_lens"],
                          ["encoder_out", "encoder_out_lens"],
                          {**frames, "encoder_out": {0: "N", 1: "T_out"}, "encoder_out_lens": {0: "N"}})}
    if model.config.predictor == "lstm":
        state = model.predictor.initial_state(3, torch.device("cpu"))
        graphs["decoder"] = (LSTMDecoderGraph(model), (torch.tensor([0, 1, 2]), state["h"] + 0.1, state["c"] - 0.1),
                             ["y", "h", "c"], ["decoder_out", "next_h", "next_c"],
                             {"y": {0: "N"}, "h": {0: "N"}, "c": {0: "N"}, "decoder_out": {0: "N"},
                              "next_h": {0: "N"}, "next_c": {0: "N"}})
    else:
        context = torch.zeros(3, model.config.context_size, dtype=torch.long)
        graphs["decoder"] = (StatelessDecoderGraph(model), (context,), ["y"], ["decoder_out"],
                             {"y": {0: "N"}, "decoder_out": {0: "N"}})
    graphs["joiner"] = (JoinerGraph(model), (torch.randn(3, J), torch.randn(3, J)), ["encoder_out", "decoder_out"],
                        ["logits"], {**rows, "logits": {0: "N"}})
    return graphs, {}


def _step_graph(model: nn.Module, input_dim: int) -> tuple[tuple, dict]:
    """A streaming model's ``encoder_step`` graph (:mod:`asrforge.export.streaming`), as :func:`_graphs` gives one,
    and its description: frames in and out per call, the states' shapes."""
    from asrforge.export.streaming import EncoderStep

    step = EncoderStep(model)
    frames = 4 * step.chunk
    states = step.initial_states(2, input_dim)
    names = list(states)
    example = (torch.randn(2, frames, input_dim), torch.tensor([frames, frames - 3]), *states.values())
    axes = {"x": {0: "N"}, "x_valid": {0: "N"}, "out": {0: "N"}, "out_valid": {0: "N"}}
    axes.update({n: {0: "N"} for n in names} | {f"next_{n}": {0: "N"} for n in names})
    graph = (step, example, ["x", "x_valid", *names], ["out", "out_valid", *[f"next_{n}" for n in names]], axes)
    described = {"graph": "encoder_step.onnx", "chunk_output_frames": step.chunk, "chunk_input_frames": frames,
                 "states": {name: list(shape) for name, shape in step.state_shapes(input_dim).items()}}
    return graph, described


def _lm_name(lm_file: Path | None) -> str | None:
    """What the copied n-gram is called in the folder (gzipped ARPA stays gzipped)."""
    if lm_file is None:
        return None
    return LM_FILE + (".gz" if lm_file.suffix == ".gz" else "")


def _description(transcriber: Transcriber, graphs: list[str], quantization: str, lm_file: Path | None) -> dict:
    recipe, model = transcriber.recipe, transcriber.model
    info = {"format": FORMAT, "version": FORMAT_VERSION, "objective": model.objective, "family": recipe.model.family,
            "graphs": {name: f"{name}.onnx" for name in graphs}, "quantization": quantization,
            "vocab_size": transcriber.tokenizer.vocab_size, "blank_id": 0,
            "features": asdict(recipe.features), "decode": asdict(recipe.decode), "text": asdict(recipe.text),
            "lm": {"weight": recipe.lm.weight, "word_bonus": recipe.lm.word_bonus,
                   "closed_vocabulary": recipe.lm.closed_vocabulary, "file": _lm_name(lm_file)},
            "source": str(transcriber.source)}
    if model.objective == "transducer":
        info["predictor"] = model.config.predictor
        if model.config.predictor == "stateless":
            info["context_size"] = model.config.context_size
        else:
            info["predictor_state"] = [model.config.pred_layers, model.config.pred_hidden]
    return info


def write_tokens(tokenizer, path: Path) -> None:
    """``piece id`` per line, every id of the vocabulary in order; a space is written ``▁``."""
    lines = [f"{tokenizer.piece(i).replace(' ', SPACE) or SPACE} {i}" for i in range(tokenizer.vocab_size)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _export_graph(module: nn.Module, inputs: tuple, names: list[str], outputs: list[str], axes: dict,
                  path: Path, metadata: dict[str, str], quantization: str) -> None:
    import onnx

    # eval before exporting: the exporter restores the wrapper's own mode onto every child afterwards
    module.eval()
    raw = path if quantization == "float32" else path.with_suffix(".float32.onnx")
    with torch.no_grad():
        torch.onnx.export(module, inputs, str(raw), dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
    if quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        try:
            quantize_dynamic(str(raw), str(path), weight_type=QuantType.QInt8)
        finally:
            raw.unlink(missing_ok=True)
    graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def open_source(source: str | Path, out: Path, quantization: str, fmt: str) -> Transcriber:
    """The asrforge model ``source`` names, loaded on the CPU, once ``quantization`` and the empty ``out`` are checked."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--format {fmt} writes {' or '.join(QUANTIZATIONS)} graphs, not {quantization}")
    if open_checkpoint(source).kind != "asrforge":
        raise ConfigError(f"{source} is a Whisper checkpoint; --format {fmt} writes asrforge's own models (ctc, rnnt). "
                          "Write Whisper for another runtime with --format ctranslate2, huggingface or openai")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; give a new or empty folder")
    transcriber = Transcriber.from_state(load_checkpoint(source), "cpu", lm=False)
    transcriber.model.eval()
    return transcriber


def write_graphs(out: Path, graphs: dict, metadata: dict[str, str], quantization: str, info: dict) -> list[Path]:
    """Each of ``graphs`` (see :func:`_graphs`) as ``out/<name>.onnx`` with ``metadata``, and ``info`` as
    ``asrforge_onnx.json``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (module, inputs, names, outputs, axes) in graphs.items():
        path = out / f"{name}.onnx"
        _export_graph(module, inputs, names, outputs, axes, path, metadata, quantization)
        written.append(path)
    (out / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return written + [out / CONFIG_FILE]


def export_onnx(source: str | Path, out: str | Path, quantization: str = "float32") -> list[Path]:
    """Write ``source`` (an asrforge checkpoint or experiment folder) as ONNX graphs into the new or empty folder
    ``out``; returns the files written."""
    out = Path(out)
    transcriber = open_source(source, out, quantization, "onnx")
    streaming = bool(getattr(transcriber.recipe.model, "streaming", False))
    graphs, described = _graphs(transcriber.model, transcriber.recipe.features.dim, streaming)
    lm_file = recipe_lm_file(transcriber.recipe, Path(transcriber.source))
    lm_file = lm_file if lm_file is not None and lm_file.is_file() else None     # one named but missing: decode without
    info = {**_description(transcriber, list(graphs), quantization, lm_file), **described}
    metadata = {"asrforge": json.dumps(info), "vocab_size": str(info["vocab_size"]), "model_type": info["family"]}
    if "context_size" in info:
        metadata["context_size"] = str(info["context_size"])
    written = write_graphs(out, graphs, metadata, quantization, info)
    write_tokens(transcriber.tokenizer, out / TOKENS_FILE)
    written.append(out / TOKENS_FILE)
    if lm_file is not None:         # the n-gram the model decodes with travels with it
        shutil.copyfile(lm_file, out / _lm_name(lm_file))
        written.append(out / _lm_name(lm_file))
    return written
