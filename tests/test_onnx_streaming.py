"""A streaming model's export: ``encoder_step.onnx`` with its caches as graph inputs and outputs equals the whole
utterance's forward pass, and asrforge's streaming engine over the exported folder gives the partial and final
events it gives over the PyTorch model."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import asrforge
from asrforge.checkpoint import save_checkpoint
from asrforge.errors import ConfigError
from asrforge.export.onnx import export_onnx
from asrforge_runtime.native_streaming import NativeStreamingRecognizer
from asrforge_runtime.stream_events import EndpointRules
from asrforge.inference.transcriber import Transcriber
from asrforge.models.build import build_model
from asrforge.recipe import recipe_from_dict
from asrforge.text import CharTokenizer
from serve_fixtures import spoken, write_wav
from test_native_streaming import stream_through, timed_words

SR = 16000
TOKENIZER = CharTokenizer.build(["zero one two three four five six seven eight nine"])
RNN = {"kind": "rnn", "hidden": 32, "layers": 2, "bidirectional": False, "conv_channels": 4, "dropout": 0.0}
GRU = {**RNN, "rnn_type": "gru"}
CONFORMER = {"kind": "conformer", "d_model": 32, "heads": 2, "layers": 2, "ff_mult": 2, "conv_kernel": 5,
             "conv_channels": 4, "dropout": 0.0, "chunk_frames": 3, "left_chunks": 2}
TRANSFORMER = {"kind": "transformer", "d_model": 32, "heads": 2, "layers": 2, "ff": 64, "conv_channels": 4,
               "dropout": 0.0, "chunk_frames": 2, "left_chunks": 3}
NEVER = EndpointRules(silence_after_text_s=1e4, silence_without_text_s=1e4, max_utterance_s=1e4)


def streaming_model(folder, family: str, encoder: dict, seed: int = 0, beam: int = 1):
    """A seeded random streaming model with global CMVN -> (checkpoint, its export, the torch model)."""
    spec = {"family": family, "streaming": True, "dropout": 0.0, "encoder": encoder}
    if family == "rnnt":
        spec.update(pred_hidden=24, joint_dim=32)
    features = {"n_mels": 40, "cmvn": "global", "global_mean": [-4.0] * 40, "global_std": [3.0] * 40}
    recipe = recipe_from_dict({"model": spec, "features": features, "decode": {"beam_size": beam}})
    torch.manual_seed(seed)
    net = build_model(recipe.model, recipe.features.dim, TOKENIZER.vocab_size).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "model.pt", recipe, TOKENIZER, net)
    export_onnx(folder / "model.pt", folder / "onnx")
    return folder / "model.pt", folder / "onnx", net


@pytest.mark.parametrize("family,encoder", [("rnnt", CONFORMER), ("ctc", TRANSFORMER), ("ctc", RNN), ("rnnt", GRU)],
                         ids=["rnnt-conformer", "ctc-transformer", "ctc-lstm", "rnnt-gru"])
def test_the_step_graph_over_chunks_equals_the_whole_utterance(tmp_path, family, encoder):
    _, folder, net = streaming_model(tmp_path, family, encoder)
    info = json.loads((folder / "asrforge_onnx.json").read_text())
    stream = info["stream"]
    assert info["graphs"]["encoder_step"] == "encoder_step.onnx"
    step = ort.InferenceSession(str(folder / "encoder_step.onnx"))
    F, names = stream["chunk_input_frames"], list(stream["states"])
    lengths = [157, 90, 13]                                      # three streams of different lengths, batched
    x = torch.randn(len(lengths), max(lengths), 40, generator=torch.Generator().manual_seed(2))
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    with torch.no_grad():
        whole, whole_lens = (net.encode if family == "rnnt" else net)(x, torch.tensor(lengths))
    states = {n: np.zeros((len(lengths), *shape), dtype=bool if n == "cache_valid" else np.int64 if n == "offset"
                          else np.float32) for n, shape in stream["states"].items()}
    outs = [[] for _ in lengths]
    for start in range(0, max(lengths), F):
        valid = np.array([min(F, max(0, n - start)) for n in lengths], dtype=np.int64)
        chunk = np.zeros((len(lengths), F, 40), np.float32)
        for b in range(len(lengths)):
            chunk[b, : valid[b]] = x[b, start: start + valid[b]].numpy()
        out, out_valid, *nxt = step.run(None, {"x": chunk, "x_valid": valid, **states})
        states = dict(zip(names, nxt))
        for b in range(len(lengths)):
            if valid[b]:
                outs[b].append(out[b, : out_valid[b]])
    for b, n in enumerate(whole_lens.tolist()):
        got = np.concatenate(outs[b])
        assert got.shape[0] == n
        np.testing.assert_allclose(got, whole[b, :n].numpy(), atol=1e-4, rtol=0)


def stream_events(engine, wave: np.ndarray, piece: int):
    """The events of ``wave`` streamed in pieces, as comparable tuples."""
    return [(e.type, e.text, e.start, e.end, timed_words(e.words or [])) for e in stream_through(engine, wave, piece)]


@pytest.mark.parametrize("family,encoder,beam", [("rnnt", CONFORMER, 1), ("rnnt", RNN, 4), ("ctc", CONFORMER, 4),
                                                 ("ctc", RNN, 1)],
                         ids=["rnnt-conformer-greedy", "rnnt-lstm-beam", "ctc-conformer-beam", "ctc-lstm-greedy"])
def test_the_streaming_engine_gives_the_same_events_over_the_export(tmp_path, family, encoder, beam):
    checkpoint, folder, _ = streaming_model(tmp_path, family, encoder, seed=3, beam=beam)
    exported, torch_model = asrforge.load_model(folder), Transcriber.from_checkpoint(checkpoint)
    assert exported.streaming
    wave = (np.random.default_rng(4).standard_normal(int(2.7 * SR)) * 0.05).astype(np.float32)
    rules = EndpointRules(silence_after_text_s=0.5, silence_without_text_s=1.0, max_utterance_s=1.5)
    for chunk_ms, piece in ((320, 1234), (40, 4000)):
        theirs = stream_events(NativeStreamingRecognizer(torch_model, rules, chunk_ms=chunk_ms), wave, piece)
        ours = stream_events(NativeStreamingRecognizer(exported, rules, chunk_ms=chunk_ms), wave, piece)
        assert ours == theirs and any(e[0] == "final" for e in ours) and any(e[0] == "partial" for e in ours)
    whole = stream_events(NativeStreamingRecognizer(exported, NEVER), wave, 2000)
    assert [e[1] for e in whole if e[0] == "final"] == [exported.transcribe(wave).text]


def test_stream_command_runs_an_exported_streaming_model(tmp_path, monkeypatch, capsys):
    from asrforge.cli import main

    checkpoint, folder, _ = streaming_model(tmp_path, "rnnt", CONFORMER, seed=5)
    path = write_wav(tmp_path / "talk.wav", np.concatenate([spoken("seven two", seed=1), np.zeros(SR, np.float32)]))
    lines = {}
    for model in (checkpoint, folder):
        monkeypatch.setattr(sys, "argv", ["asrforge", "stream", "--model", str(model), str(path),
                                          "--output-format", "jsonl", "--chunk-ms", "160"])
        main()
        lines[model] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[folder] == lines[checkpoint] and any(e["type"] == "final" for e in lines[folder])


def test_a_streaming_model_without_a_bounded_cache_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="left_chunks is -1"):
        streaming_model(tmp_path, "ctc", {**CONFORMER, "left_chunks": -1})


def test_the_runtime_streams_where_torch_cannot_be_imported(tmp_path):
    """The streaming engine, the step graph and the searches are the runtime's: a process without torch streams."""
    import subprocess

    checkpoint, folder, _ = streaming_model(tmp_path, "rnnt", CONFORMER, seed=7)
    wave = (np.random.default_rng(8).standard_normal(int(1.9 * SR)) * 0.05).astype(np.float32)
    np.save(tmp_path / "wave.npy", wave)
    expected = [e[1] for e in stream_events(NativeStreamingRecognizer(Transcriber.from_checkpoint(checkpoint), NEVER),
                                            wave, 3000) if e[0] == "final"]
    script = f"""
import sys
sys.modules["torch"] = None
sys.modules["asrforge"] = None
import numpy as np
from asrforge_runtime import load
from asrforge_runtime.native_streaming import NativeStreamingRecognizer
from asrforge_runtime.stream_events import EndpointRules
engine = NativeStreamingRecognizer(load({str(folder)!r}), EndpointRules(1e4, 1e4, 1e4))
wave = np.load({str(tmp_path / "wave.npy")!r})
s = engine.create_stream()
for i in range(0, len(wave), 3000):
    s.accept_waveform(wave[i: i + 3000])
    engine.decode_streams([s])
s.finish()
engine.decode_streams([s])
print("|".join(e.text for e in s.pop_events() if e.type == "final"))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split("|") == expected and expected[0]


def test_the_runtime_command_streams_a_file_and_a_pipe_without_torch(tmp_path):
    """``python -m asrforge_runtime stream``: the events asrforge's engine gives, from a file or raw PCM on a pipe,
    in a process where torch cannot be imported; a folder without a streaming step is refused in one line."""
    import subprocess

    checkpoint, folder, _ = streaming_model(tmp_path, "ctc", CONFORMER, seed=9, beam=4)
    wave = (np.random.default_rng(10).standard_normal(int(2.2 * SR)) * 0.05).astype(np.float32)
    path = write_wav(tmp_path / "talk.wav", wave)
    from asrforge_runtime.audio import load_audio
    from asrforge_runtime.native_streaming import NATIVE_RULES

    expected = stream_events(NativeStreamingRecognizer(Transcriber.from_checkpoint(checkpoint), NATIVE_RULES,
                                                       chunk_ms=160), load_audio(path), int(0.16 * SR))
    blocked = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = ['asrforge_runtime', *sys.argv[1:]]; "
               "runpy.run_module('asrforge_runtime', run_name='__main__')")
    run = [sys.executable, "-c", blocked, "stream", "--model", str(folder), "--chunk-ms", "160", "--output-format", "jsonl"]
    from_file = subprocess.run(run + [str(path)], capture_output=True, text=True, timeout=300)
    assert from_file.returncode == 0, from_file.stderr
    events = [json.loads(line) for line in from_file.stdout.splitlines()]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in events] == [e[:4] for e in expected]
    assert any(e["type"] == "final" for e in events)
    pcm = (np.clip(load_audio(path), -1, 1) * 32767).astype("<i2").tobytes()
    piped = subprocess.run(run + ["-"], input=pcm, capture_output=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    finals = [json.loads(line)["text"] for line in piped.stdout.decode().splitlines() if '"final"' in line]
    assert finals == [e["text"] for e in events if e["type"] == "final"]      # 16-bit samples: the same words
    recipe = recipe_from_dict({"model": {"family": "ctc", "encoder": {**RNN, "bidirectional": True}},
                               "features": {"n_mels": 40}})
    save_checkpoint(tmp_path / "offline.pt", recipe, TOKENIZER, build_model(recipe.model, 40, TOKENIZER.vocab_size))
    export_onnx(tmp_path / "offline.pt", tmp_path / "offline")
    refused = subprocess.run([sys.executable, "-m", "asrforge_runtime", "stream", "--model", str(tmp_path / "offline"),
                              str(path)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "holds no streaming step" in refused.stderr and "Traceback" not in refused.stderr
