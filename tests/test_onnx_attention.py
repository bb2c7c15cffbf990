"""Attention families (las, transformer, joint) export their encoder and a decoder step whose state (the
self-attention cache, LAS's cells and attention) is graph input and output: onnxruntime computes what the PyTorch
decoder computes, step after step, for padded batches, and the runtime's searches over the graphs transcribe what
the PyTorch model transcribes (greedy, beam, joint CTC/attention in one pass and by rescoring, LM fusion)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from asrforge.decoding.kneser_ney import write_lm
from asrforge.export.onnx import export_onnx
from asrforge.inference import load_model
from asrforge.inference.transcriber import Transcriber
from asrforge.text.special import SOS_ID
from asrforge_runtime.errors import ConfigError
from asrforge_runtime.recognizer import OnnxRecognizer
from test_onnx_export import features, save_model
import test_runtime
from test_runtime import WORDS, make_model, results_as_tuples

recordings = test_runtime.recordings        # the fixture: four recordings of different lengths

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


# each family with the searches it has: (decode overrides, beam sizes)
SEARCHES = {
    "las": [({}, [1, 4])],
    "transformer": [({}, [1, 4])],
    "joint": [({"ctc_weight": 0.0}, [1, 4]), ({"ctc_weight": 0.4}, [4]),
              ({"ctc_weight": 0.4, "joint_search": "rescore"}, [4])],
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_runtime_searches_give_what_torch_gives(tmp_path, recordings, name):
    family, encoder, extra = FAMILIES[name]
    # at most one token per two encoder frames: an untrained decoder runs to the bound, and the test stays quick
    checkpoint, folder = make_model(tmp_path, {"family": family, "encoder": encoder, **extra}, seed=7,
                                    decode={"max_len_ratio": 0.5, "min_len": 2})
    torch_model = Transcriber.from_checkpoint(checkpoint, lm=False)
    runtime = OnnxRecognizer.load(folder, threads=1)
    assert runtime.word_timestamps == (family == "joint")       # a CTC head times the decoder's words
    for overrides, beams in SEARCHES[name]:
        for beam in beams:
            theirs = torch_model.transcribe_batch(recordings[:3], beam_size=beam, **overrides)
            ours = runtime.transcribe_batch(recordings[:3], beam_size=beam, **overrides)
            assert results_as_tuples(ours) == results_as_tuples(theirs), (overrides, beam)
            assert sum(len(r.text) for r in ours) > 10
            if family == "joint":
                assert all(s.words for r in ours for s in r.segments)
    if family != "joint":
        with pytest.raises(ConfigError, match="has no alignment to the audio"):
            runtime.transcribe(recordings[0], word_timestamps=True)
    # asrforge.load_model takes the folder as any model
    assert load_model(folder).transcribe(recordings[0]).text == torch_model.transcribe(recordings[0]).text


def test_lm_fusion_over_the_exported_decoder_is_torch_s(tmp_path, recordings):
    arpa = tmp_path / "digits.arpa"
    write_lm([WORDS, "one two three", "nine eight seven"], 2, arpa)
    family, encoder, extra = FAMILIES["joint"]
    checkpoint, folder = make_model(tmp_path, {"family": family, "encoder": encoder, **extra}, seed=8, lm=str(arpa),
                                    decode={"max_len_ratio": 0.5, "min_len": 2})
    torch_model = Transcriber.from_checkpoint(checkpoint, lm_weight=2.0, word_bonus=0.5)
    runtime = OnnxRecognizer.load(folder, threads=1, lm_weight=2.0, word_bonus=0.5)
    for search in ("one_pass", "rescore"):
        config = runtime.decode_config(4, joint_search=search)
        assert runtime.search_description(config) == torch_model.search_description(config)
        theirs = torch_model.transcribe_batch(recordings[:3], beam_size=4, joint_search=search)
        ours = runtime.transcribe_batch(recordings[:3], beam_size=4, joint_search=search)
        assert results_as_tuples(ours) == results_as_tuples(theirs), search
