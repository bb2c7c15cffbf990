"""``asrforge export --format onnx``: every graph passes onnx.checker and computes what the torch model computes
(within 1e-4) in onnxruntime, for several lengths and padded batches; int8 graphs are quantized; models the
exporter cannot take are refused by name."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from asrforge.checkpoint import save_checkpoint
from asrforge.errors import ConfigError
from asrforge.export.onnx import CONFIG_FILE, export_onnx
from asrforge.models.build import build_model
from asrforge.recipe import recipe_from_dict
from asrforge.text import CharTokenizer

TOKENIZER = CharTokenizer.build(["zero one two three four five six seven eight nine"])
RNN = {"kind": "rnn", "hidden": 24, "layers": 2, "bidirectional": True, "conv_channels": 4, "dropout": 0.0}
GRU = {**RNN, "rnn_type": "gru", "bidirectional": False}
TRANSFORMER = {"kind": "transformer", "d_model": 32, "heads": 2, "layers": 2, "ff": 64, "conv_channels": 4,
               "dropout": 0.0}
CONFORMER = {"kind": "conformer", "d_model": 32, "heads": 2, "layers": 2, "ff_mult": 2, "conv_kernel": 5,
             "conv_channels": 4, "dropout": 0.0}
CHUNKED = {**CONFORMER, "chunk_frames": 3, "left_chunks": 2}
# (T, lengths): the batch padded to its longest, a lone utterance, lengths the export example did not have
SHAPES = [(97, [97, 60, 13]), (203, [203]), (31, [31, 31])]


def save_model(tmp_path, family: str, encoder: dict, seed: int = 0, **model):
    spec = {"family": family, "encoder": encoder, **model}
    if family in ("ctc", "rnnt"):
        spec["dropout"] = 0.0
    if family == "rnnt":
        spec.setdefault("pred_hidden", 24)
        spec.setdefault("joint_dim", 32)
    recipe = recipe_from_dict({"model": spec, "features": {"n_mels": 40, "cmvn": "none"}})
    torch.manual_seed(seed)
    net = build_model(recipe.model, recipe.features.dim, TOKENIZER.vocab_size).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, recipe, TOKENIZER, net)
    return path, net


def run(session: ort.InferenceSession, **inputs) -> list[np.ndarray]:
    return session.run(None, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})


def features(T: int, lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), T, 40, generator=g)
    lens = torch.tensor(lengths)
    x[torch.arange(T)[None] >= lens[:, None]] = 0.0
    return x, lens


def close_frames(onnx_out: np.ndarray, torch_out: torch.Tensor, lens: list[int]) -> float:
    """The largest difference over each utterance's real frames."""
    return max(float(np.abs(onnx_out[b, :n] - torch_out[b, :n].numpy()).max()) for b, n in enumerate(lens))


@pytest.mark.parametrize("encoder", [RNN, GRU, TRANSFORMER, CONFORMER, CHUNKED],
                         ids=["bilstm", "gru", "transformer", "conformer", "chunked-conformer"])
def test_ctc_graph_equals_torch(tmp_path, encoder):
    source, net = save_model(tmp_path, "ctc", encoder)
    out = tmp_path / "onnx"
    written = export_onnx(source, out)
    assert {p.name for p in written} == {"model.onnx", "tokens.txt", CONFIG_FILE}
    graph = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(graph)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert int(meta["vocab_size"]) == TOKENIZER.vocab_size
    assert json.loads(meta["asrforge"])["features"]["n_mels"] == 40
    session = ort.InferenceSession(str(out / "model.onnx"))
    for T, lengths in SHAPES:
        x, lens = features(T, lengths)
        with torch.no_grad():
            ref, ref_lens = net(x, lens)
        log_probs, out_lens = run(session, x=x, x_lens=lens)
        assert out_lens.tolist() == ref_lens.tolist()
        assert close_frames(log_probs, ref, ref_lens.tolist()) < 1e-4


@pytest.mark.parametrize("predictor", ["lstm", "stateless"])
def test_transducer_graphs_equal_torch(tmp_path, predictor):
    source, net = save_model(tmp_path, "rnnt", CONFORMER, predictor=predictor, pred_layers=2, context_size=2)
    out = tmp_path / "onnx"
    export_onnx(source, out)
    sessions = {name: ort.InferenceSession(str(out / f"{name}.onnx")) for name in ("encoder", "decoder", "joiner")}
    info = json.loads((out / CONFIG_FILE).read_text())
    assert info["objective"] == "transducer" and info["predictor"] == predictor
    for T, lengths in SHAPES:
        x, lens = features(T, lengths)
        with torch.no_grad():
            ref, ref_lens = net.encode(x, lens)
        enc, enc_lens = run(sessions["encoder"], x=x, x_lens=lens)
        assert enc_lens.tolist() == ref_lens.tolist()
        assert close_frames(enc, ref, ref_lens.tolist()) < 1e-4
    tokens = torch.tensor([0, 5, 9, 3])
    with torch.no_grad():
        if predictor == "lstm":
            state = net.predictor.initial_state(4, torch.device("cpu"))
            state = {"h": state["h"] + 0.3, "c": state["c"] - 0.2}
            ref_out, ref_state = net.predict_step(tokens, state)
            out_, h, c = run(sessions["decoder"], y=tokens, h=state["h"], c=state["c"])
            assert np.abs(h - ref_state["h"].numpy()).max() < 1e-4
            assert np.abs(c - ref_state["c"].numpy()).max() < 1e-4
        else:
            context = torch.tensor([[0, 5], [5, 9], [9, 3], [0, 0]])
            ref_out = net.pred_proj(net.predictor._mix(context))
            assert info["context_size"] == 2
            (out_,) = run(sessions["decoder"], y=context)
        assert np.abs(out_ - ref_out.numpy()).max() < 1e-4
        e, d = torch.randn(4, 32), torch.randn(4, 32)
        (logits,) = run(sessions["joiner"], encoder_out=e, decoder_out=d)
        assert np.abs(logits - net.joint(e, d).numpy()).max() < 1e-4


def test_int8_graphs_are_quantized_and_near_float(tmp_path):
    source, net = save_model(tmp_path, "ctc", RNN)
    export_onnx(source, tmp_path / "f32")
    export_onnx(source, tmp_path / "int8", "int8")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger"}, ops
    assert not list((tmp_path / "int8").glob("*.float32.onnx"))         # the float graph quantization read is gone
    x, lens = features(97, [97, 60])
    f32, _ = run(ort.InferenceSession(str(tmp_path / "f32" / "model.onnx")), x=x, x_lens=lens)
    q8, q8_lens = run(ort.InferenceSession(str(tmp_path / "int8" / "model.onnx")), x=x, x_lens=lens)
    assert q8_lens.tolist() == [25, 15]
    assert np.isfinite(q8).all()
    # quantization moves the log-probabilities a little, not to another distribution
    assert 0 < np.abs(np.exp(q8) - np.exp(f32)).max() < 0.2


def test_tokens_and_description(tmp_path):
    source, _ = save_model(tmp_path, "ctc", RNN)
    export_onnx(source, tmp_path / "onnx")
    rows = (tmp_path / "onnx" / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert len(rows) == TOKENIZER.vocab_size
    assert [int(r.rsplit(" ", 1)[1]) for r in rows] == list(range(TOKENIZER.vocab_size))
    assert rows[1] == "\u2581 1"                  # the space: the character vocabulary's second symbol
    assert rows[TOKENIZER.encode("z")[0]] == f"z {TOKENIZER.encode('z')[0]}"
    info = json.loads((tmp_path / "onnx" / CONFIG_FILE).read_text())
    assert info["graphs"] == {"model": "model.onnx"} and info["blank_id"] == 0


def test_refusals_name_the_part(tmp_path):
    ctc, _ = save_model(tmp_path, "ctc", RNN)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        export_onnx(ctc, tmp_path / "full")


def test_cli_writes_onnx(tmp_path):
    source, _ = save_model(tmp_path, "rnnt", RNN, predictor="stateless")
    done = subprocess.run([sys.executable, "-m", "asrforge.cli", "export", str(source), "--format", "onnx",
                           "--quantization", "int8", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [CONFIG_FILE, "decoder.onnx", "encoder.onnx",
                                                                     "joiner.onnx", "tokens.txt"]
    assert "exported" in done.stderr
