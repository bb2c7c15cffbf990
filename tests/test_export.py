"""``asrforge export``: a Whisper checkpoint or fine-tuning run written as CTranslate2, Hugging Face and OpenAI
files, each read back (by asrforge's readers, which the Whisper tests check against the reference layouts) with the
same weights and the same transcript; and its refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from serve_fixtures import spoken, write_wav

from asrforge.errors import AsrforgeError, ConfigError
from asrforge.export.whisper import export_whisper
from asrforge.inference import load_model
from asrforge.models.whisper import load_whisper_checkpoint


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("export-audio") / "talk.wav", spoken("seven eight nine", seed=3))


def weights(path):
    return load_whisper_checkpoint(path).build().state_dict()


@pytest.mark.parametrize("fmt,quantization", [("ctranslate2", "float32"), ("huggingface", "float32"),
                                              ("openai", "float32"), ("ctranslate2", "float16"),
                                              ("huggingface", "float16"), ("openai", "float16"),
                                              ("ctranslate2", "int8")])
def test_each_format_reads_back_with_the_same_weights_and_text(whisper_pt, recording, tmp_path, fmt, quantization):
    out = tmp_path / "out"
    written = export_whisper(whisper_pt, fmt, out, quantization)
    model_path = written[0] if fmt == "openai" else out
    assert (out / "tokenizer.json").is_file() and all(p.is_file() for p in written)
    theirs, ours = weights(model_path), weights(whisper_pt)
    assert theirs.keys() == ours.keys()
    tolerance = {"float32": 0.0, "float16": 1e-3, "int8": 2e-2}[quantization]
    for name, tensor in ours.items():
        assert torch.allclose(theirs[name], tensor, atol=tolerance * max(1.0, float(tensor.abs().max())), rtol=0), name
    if quantization == "float32":     # greedy only: a fallback to sampling would draw different random numbers
        assert load_model(model_path).transcribe(str(recording), temperature=(0.0,)).text == load_model(
            whisper_pt).transcribe(str(recording), temperature=(0.0,)).text
    if fmt == "huggingface":       # what transformers' generate() needs, beside the alignment heads
        generation = json.loads((out / "generation_config.json").read_text())
        tokenizer = load_model(whisper_pt).tokenizer
        assert generation["decoder_start_token_id"] == tokenizer.sot and generation["eos_token_id"] == tokenizer.eot
        assert generation["no_timestamps_token_id"] == tokenizer.no_timestamps and generation["suppress_tokens"]
        assert generation["alignment_heads"] == [[1, 0], [1, 1]]
    if fmt == "ctranslate2":
        config = json.loads((out / "config.json").read_text())
        assert len(config["lang_ids"]) == 3 and config["suppress_ids"] and len(config["suppress_ids_begin"]) == 2
        assert config["alignment_heads"] == [[1, 0], [1, 1]]


def test_a_fine_tuning_runs_folder_is_exported_and_the_command_says_what_it_wrote(whisper_pt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(whisper_pt, run / "whisper.pt")
    shutil.copy(whisper_pt.parent / "tokenizer.json", run / "tokenizer.json")
    done = subprocess.run([sys.executable, "-m", "asrforge.cli", "export", str(run), "--format", "huggingface",
                           "--out", str(tmp_path / "hf")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'hf' / 'model.safetensors'}" in done.stderr and "--model" in done.stderr
    assert all(torch.equal(a, b) for a, b in zip(weights(tmp_path / "hf").values(), weights(whisper_pt).values()))


def test_refusals_name_the_problem(whisper_pt, trained, tmp_path):
    with pytest.raises(ConfigError, match="is an asrforge model"):
        export_whisper(trained, "ctranslate2", tmp_path / "a")
    with pytest.raises(ConfigError, match="int8 is not offered for openai"):
        export_whisper(whisper_pt, "openai", tmp_path / "b", "int8")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_whisper(whisper_pt, "openai", tmp_path / "full")
    missing = subprocess.run([sys.executable, "-m", "asrforge.cli", "export", str(tmp_path / "nope.pt"), "--format",
                              "openai", "--out", str(tmp_path / "c")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(whisper_pt, lonely / "tiny.pt")          # no tokenizer beside it
    with pytest.raises(AsrforgeError, match="--tokenizer"):
        export_whisper(lonely / "tiny.pt", "openai", tmp_path / "d")
