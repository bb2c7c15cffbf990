"""The torch-free runtime: an exported folder transcribes to what the PyTorch model gives (same tokens, same word
times, LM fusion included), runs where ``import torch`` fails, and is what ``asrforge.load_model(DIR)`` returns."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from asrforge.checkpoint import save_checkpoint
from asrforge.decoding.kneser_ney import write_lm
from asrforge.export.onnx import export_onnx
from asrforge.inference.exported import ExportedModel
from asrforge.inference.transcriber import Transcriber
from asrforge.models.build import build_model
from asrforge.recipe import recipe_from_dict
from asrforge.text import CharTokenizer
from asrforge_runtime.audio import write_audio
from asrforge_runtime.errors import CheckpointError, ConfigError
from asrforge_runtime.recognizer import OnnxRecognizer
from conftest import REPO, write_manifest_lines

WORDS = "zero one two three four five six seven eight nine"
TOKENIZER = CharTokenizer.build([WORDS])
RNN = {"kind": "rnn", "hidden": 32, "layers": 2, "bidirectional": True, "conv_channels": 4, "dropout": 0.0}
CONFORMER = {"kind": "conformer", "d_model": 32, "heads": 2, "layers": 2, "ff_mult": 2, "conv_kernel": 5,
             "conv_channels": 4, "dropout": 0.0}
MODELS = {
    "ctc-bilstm": {"family": "ctc", "encoder": RNN, "dropout": 0.0},
    "ctc-conformer": {"family": "ctc", "encoder": CONFORMER, "dropout": 0.0},
    "rnnt-lstm": {"family": "rnnt", "encoder": RNN, "dropout": 0.0, "pred_hidden": 24, "joint_dim": 32},
    "rnnt-stateless": {"family": "rnnt", "encoder": CONFORMER, "dropout": 0.0, "pred_hidden": 24, "joint_dim": 32,
                       "predictor": "stateless", "context_size": 2},
}


def make_model(folder, spec: dict, seed: int = 0, lm: str | None = None, **sections):
    """A seeded random model saved as a checkpoint -> (checkpoint, exported folder). Untrained, it emits a different
    string of letters for every recording, so a wrong token anywhere shows."""
    recipe = recipe_from_dict({"model": spec, "features": {"n_mels": 40},
                               "decode": {"beam_size": 1, **sections.pop("decode", {})},
                               "lm": {"path": lm} if lm else {}, **sections})
    torch.manual_seed(seed)
    net = build_model(recipe.model, recipe.features.dim, TOKENIZER.vocab_size).eval()
    with torch.no_grad():       # larger output weights: confident, varied emissions instead of blanks everywhere
        for p in net.parameters():
            p.mul_(3.0)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint, recipe, TOKENIZER, net)
    export_onnx(checkpoint, folder / "onnx")
    return checkpoint, folder / "onnx"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> list:
    """Four speech-like recordings of different lengths (one past the long-form limit)."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    paths = []
    for n, seconds in enumerate([0.6, 1.3, 2.2, 24.0]):
        t = np.arange(int(16000 * seconds)) / 16000
        f0 = 110 + 40 * rng.random()
        wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.random()) / k for k in range(1, 9))
        wave *= np.clip(np.sin(2 * np.pi * (0.8 + rng.random()) * t), 0, None)
        path = folder / f"rec{n}.wav"
        write_audio(path, (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
        paths.append(path)
    return paths


def results_as_tuples(results):
    return [(r.text, [(s.start, s.end, s.text, [(w.word, w.start, w.end) for w in s.words or []])
                      for s in r.segments]) for r in results]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("beam_size", [1, 4])
def test_runtime_transcribes_what_torch_transcribes(tmp_path, recordings, name, beam_size):
    checkpoint, folder = make_model(tmp_path, MODELS[name], seed=len(name))
    torch_model = Transcriber.from_checkpoint(checkpoint, lm=False)
    runtime = OnnxRecognizer.load(folder, threads=1)
    # the long recording is cut differently (VAD against quiet points); both decode the short ones whole
    short = recordings[:3]
    theirs = torch_model.transcribe_batch(short, beam_size=beam_size, word_timestamps=True)
    ours = runtime.transcribe_batch(short, beam_size=beam_size, word_timestamps=True)
    assert results_as_tuples(ours) == results_as_tuples(theirs)
    assert sum(len(r.text) for r in ours) > 10          # the model does say something
    assert [r.source for r in ours] == [str(p) for p in short]


def test_word_lm_fusion_is_the_same_and_travels_with_the_export(tmp_path, recordings):
    arpa = tmp_path / "digits.arpa"
    write_lm([WORDS, "one two three", "nine eight seven"], 2, arpa)
    options = {"weight": 2.0, "word_bonus": 0.5}
    for name in ("ctc-bilstm", "rnnt-lstm"):
        checkpoint, folder = make_model(tmp_path / name, MODELS[name], seed=3, lm=str(arpa))
        described = json.loads((folder / "asrforge_onnx.json").read_text())
        assert described["lm"]["file"] == "lm.arpa" and (folder / "lm.arpa").read_text() == arpa.read_text()
        torch_model = Transcriber.from_checkpoint(checkpoint, lm_weight=options["weight"],
                                                  word_bonus=options["word_bonus"])
        runtime = OnnxRecognizer.load(folder, threads=1, lm_weight=options["weight"], word_bonus=options["word_bonus"])
        assert runtime.lm is not None and runtime.lm.lm.order == 2
        theirs = torch_model.transcribe_batch(recordings[:3], beam_size=6)
        ours = runtime.transcribe_batch(recordings[:3], beam_size=6)
        assert results_as_tuples(ours) == results_as_tuples(theirs)
        plain = runtime.transcribe_batch(recordings[:3], beam_size=6, word_timestamps=False)
        assert OnnxRecognizer.load(folder, lm=False).lm is None and plain


def test_long_input_is_cut_into_pieces_at_quiet_moments(tmp_path, recordings):
    _, folder = make_model(tmp_path, MODELS["ctc-bilstm"], seed=5)
    result = OnnxRecognizer.load(folder).transcribe(recordings[3], max_segment_s=8)
    assert result.duration == 24.0
    assert len(result.segments) >= 3 and all(s.end - s.start <= 8.0 for s in result.segments)
    assert all(a.end <= b.start for a, b in zip(result.segments, result.segments[1:]))
    assert all(s.start <= w.start <= w.end <= s.end for s in result.segments for w in s.words)


def test_bad_options_and_folders_are_named(tmp_path):
    _, folder = make_model(tmp_path, MODELS["ctc-bilstm"])
    runtime = OnnxRecognizer.load(folder)
    with pytest.raises(ConfigError, match="language"):
        runtime.check_options(language="de")
    with pytest.raises(ConfigError, match="temperature"):
        runtime.check_options(temperature=0.4)
    with pytest.raises(ConfigError, match=r"\['patience'\] do not apply"):
        runtime.check_options(patience=2.0)
    with pytest.raises(ConfigError, match="beam_size"):
        runtime.check_options(beam_size=0)
    with pytest.raises(CheckpointError, match="holds no asrforge_onnx.json"):
        OnnxRecognizer.load(tmp_path)
    (folder / "joiner.onnx").write_bytes(b"")
    (folder / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(CheckpointError, match="model.onnx cannot be loaded by onnxruntime"):
        OnnxRecognizer.load(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(CheckpointError, match="lacks the graph model.onnx"):
        OnnxRecognizer.load(folder)


BLOCK_TORCH = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['asrforge'] = None; "
               "sys.argv = ['asrforge_runtime', *sys.argv[1:]]; runpy.run_module('asrforge_runtime', run_name='__main__')")


def test_the_runtime_runs_where_torch_cannot_be_imported(tmp_path, recordings):
    checkpoint, folder = make_model(tmp_path, MODELS["rnnt-stateless"], seed=2)
    expected = [r.text for r in Transcriber.from_checkpoint(checkpoint, lm=False).transcribe_batch(recordings[:2])]
    probe = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None\ntry:\n import torch\n"
                            "except ImportError:\n print('blocked')"], capture_output=True, text=True)
    assert probe.stdout.strip() == "blocked"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "transcribe", "--model", str(folder),
                           *map(str, recordings[:2]), "--output-format", "json", "--output-dir", str(out),
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    texts = [json.loads((out / f"{p.stem}.json").read_text())["text"] for p in recordings[:2]]
    assert texts == expected
    printed = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "transcribe", "--model", str(folder),
                              str(recordings[0]), "--output-format", "srt"], capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("1\n00:00:00,") and expected[0] in printed.stdout


def test_the_runtime_cli_skips_and_reports_bad_files(tmp_path, recordings):
    _, folder = make_model(tmp_path, MODELS["ctc-bilstm"])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    done = subprocess.run([sys.executable, "-m", "asrforge_runtime", "transcribe", "--model", str(folder),
                           str(broken), str(recordings[0]), "--output-dir", str(tmp_path / "out"),
                           "--output-format", "all"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"skipped {broken}" in done.stderr and "1 of 2 file(s) could not be transcribed" in done.stderr
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".json", ".srt", ".tsv", ".txt", ".vtt"]
    missing = subprocess.run([sys.executable, "-m", "asrforge_runtime", "transcribe", "--model", str(tmp_path),
                              str(recordings[0])], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr


def test_load_model_takes_an_exported_folder_for_every_command(tmp_path, recordings):
    import asrforge

    checkpoint, folder = make_model(tmp_path, MODELS["ctc-bilstm"], seed=4)
    model = asrforge.load_model(folder)
    assert isinstance(model, ExportedModel) and model.word_timestamps and model.beam_size == 1
    torch_model = asrforge.load_model(checkpoint)
    manifest = write_manifest_lines(tmp_path / "test.jsonl", [
        {"audio_filepath": str(p), "duration": 1.0, "text": "One two"} for p in recordings[:3]]
        + [{"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": "x"}])
    ours, theirs = model.evaluate(manifest, progress=False), torch_model.evaluate(manifest, progress=False)
    assert ours.report.summary() == theirs.report.summary()
    assert [b.id for b in ours.bad] == [b.id for b in theirs.bad] and len(ours.bad) == 1
    with pytest.raises(ConfigError, match="exported ONNX model"):
        asrforge.load_model(folder, device="cuda")
    cli = subprocess.run([sys.executable, "-m", "asrforge.cli", "transcribe", str(recordings[0]), "--model",
                          str(folder)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == model.transcribe(recordings[0]).text


def test_the_server_serves_an_exported_folder(tmp_path, recordings):
    import httpx

    from asrforge.serve.app import ServerConfig
    from serve_fixtures import RunningServer

    _, folder = make_model(tmp_path, MODELS["rnnt-lstm"], seed=6)
    expected = OnnxRecognizer.load(folder).transcribe(recordings[1]).text
    with RunningServer(ServerConfig(models={"exported": str(folder)})) as server:
        server.wait_ready()
        with open(recordings[1], "rb") as f:
            reply = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": f},
                               data={"model": "exported", "response_format": "verbose_json",
                                     "timestamp_granularities[]": "word"}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["text"].strip() == expected and body["words"]
