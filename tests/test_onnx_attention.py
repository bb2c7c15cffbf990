"""Attention families (las, transformer, joint) export their encoder and a decoder step whose state (the
self-attention cache, LAS's cells and attention) is graph input and output: onnxruntime computes what the PyTorch
decoder computes, step after step, for padded batches; the runtime refuses such a folder by name."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from asrforge.export.onnx import export_onnx
from asrforge.text.special import SOS_ID
from asrforge_runtime.errors import CheckpointError
from asrforge_runtime.recognizer import OnnxRecognizer
from test_onnx_export import features, save_model

PYRAMID = {"kind": "pyramid", "hidden": 16, "layers": 1, "pyramid_layers": 1, "dropout": 0.0}
TRANSFORMER = {"kind": "transformer", "d_model": 32, "heads": 2, "layers": 2, "ff": 64, "conv_channels": 4,
               "dropout": 0.0}
CONFORMER = {"kind": "conformer", "d_model": 32, "heads": 2, "layers": 2, "ff_mult": 2, "conv_kernel": 5,
             "conv_channels": 4, "dropout": 0.0}
DECODER = {"kind": "transformer", "d_model": 32, "heads": 2, "layers": 2, "ff": 64, "dropout": 0.0}
FAMILIES = {
    "las": ("las", PYRAMID, {"decoder": {"kind": "lstm", "hidden": 24, "embed": 16, "attn_dim": 16,
                                         "location_channels": 4, "location_kernel": 5, "dropout": 0.0}}),
    "transformer": ("transformer", TRANSFORMER, {"decoder": DECODER}),
    "joint": ("joint", CONFORMER, {"decoder": DECODER}),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_encoder_and_decoder_steps_equal_torch(tmp_path, name):
    family, encoder, extra = FAMILIES[name]
    checkpoint, net = save_model(tmp_path, family, encoder, **extra)
    export_onnx(checkpoint, tmp_path / "onnx")
    info = json.loads((tmp_path / "onnx" / "asrforge_onnx.json").read_text())
    decoder = info["decoder"]
    assert info["graphs"] == {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    assert decoder["ctc_head"] == (family == "joint") and decoder["sos_id"] == SOS_ID
    enc = ort.InferenceSession(str(tmp_path / "onnx" / "encoder.onnx"))
    step = ort.InferenceSession(str(tmp_path / "onnx" / "decoder_step.onnx"))
    x, lens = features(131, [131, 77, 20], seed=4)
    outs = enc.run(None, {"x": x.numpy(), "x_lens": lens.numpy()})
    names = ["memory_lens", *decoder["memory"]] + (["ctc_log_probs"] if decoder["ctc_head"] else [])
    got = dict(zip(names, outs))
    with torch.no_grad():
        h, h_lens = net.encode(x, lens)
        mem = net.prepare(h, h_lens)
        assert got["memory_lens"].tolist() == h_lens.tolist()
        for b, n in enumerate(h_lens.tolist()):
            np.testing.assert_allclose(got["memory"][b, :n], mem.memory[b, :n].numpy(), atol=1e-4, rtol=0)
        state = net.decoder.initial_state(mem)
        onnx_state = {f"state_{k}": v.numpy() for k, v in state.items()}
        assert sorted(onnx_state) == sorted(decoder["state"])
        history = torch.full((3, 1), SOS_ID, dtype=torch.long)
        rng = np.random.default_rng(0)
        for _ in range(6):          # six steps of three hypotheses, each fed its own next token
            logits, state = net.decoder.step(mem, state, history)
            feeds = {"history": history.numpy(), "memory_lens": got["memory_lens"],
                     **{k: got[k] for k in decoder["memory"]}, **onnx_state}
            ours, *nxt = step.run(None, feeds)
            np.testing.assert_allclose(ours, logits.numpy(), atol=1e-4, rtol=0)
            onnx_state = dict(zip(decoder["state"], nxt))
            for k in state:
                assert onnx_state[f"state_{k}"].shape == tuple(state[k].shape)
            history = torch.cat([history, torch.from_numpy(rng.integers(4, 12, (3, 1)))], dim=1)
        if decoder["ctc_head"]:
            ctc = net.ctc_log_probs(h)
            for b, n in enumerate(h_lens.tolist()):
                np.testing.assert_allclose(got["ctc_log_probs"][b, :n], ctc[b, :n].numpy(), atol=1e-4, rtol=0)
    with pytest.raises(CheckpointError, match="objective 'attention' is not one this runtime decodes"):
        OnnxRecognizer.load(tmp_path / "onnx")
