"""``asrforge export --format sherpa-onnx``: sherpa-onnx loads the folder as it is and decodes the tokens asrforge's
own runtime decodes; ``features.kind: kaldi_fbank`` is what sherpa-onnx feeds the model; what sherpa-onnx cannot
reproduce is refused naming the setting."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from asrforge.checkpoint import save_checkpoint
from asrforge.errors import ConfigError
from asrforge.export.onnx import export_onnx
from asrforge.export.sherpa import export_sherpa_onnx
from asrforge.models.build import build_model
from asrforge.recipe import recipe_from_dict
from asrforge.text import CharTokenizer
from asrforge_runtime.audio import load_audio, write_audio
from asrforge_runtime.features import FeatureConfig, FrontEnd
from asrforge_runtime.errors import CheckpointError
from asrforge_runtime.recognizer import OnnxRecognizer
from conftest import REPO

sherpa_onnx = pytest.importorskip("sherpa_onnx")     # in the test extra: skipped only outside it

TOKENIZER = CharTokenizer.build(["zero one two three four five six seven eight nine"])
CONFORMER = {"kind": "conformer", "d_model": 32, "heads": 2, "layers": 2, "ff_mult": 2, "conv_kernel": 5,
             "conv_channels": 4, "dropout": 0.0}
KALDI = {"kind": "kaldi_fbank", "fmin": 20.0, "n_mels": 80}
STATELESS = {"family": "rnnt", "encoder": CONFORMER, "dropout": 0.0, "pred_hidden": 24, "joint_dim": 32,
             "predictor": "stateless", "context_size": 2}
CTC = {"family": "ctc", "encoder": CONFORMER, "dropout": 0.0}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(1)
    paths = []
    for n, seconds in enumerate([0.7, 1.4, 2.3]):
        t = np.arange(int(16000 * seconds)) / 16000
        wave = sum(np.sin(2 * np.pi * k * (100 + 50 * rng.random()) * t) / k for k in range(1, 8))
        wave *= np.clip(np.sin(2 * np.pi * (0.9 + rng.random()) * t), 0, None)
        paths.append(folder / f"r{n}.wav")
        write_audio(paths[-1], (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return paths


def save_model(folder, model: dict, features: dict, recordings, seed: int = 0):
    """A seeded random model with global statistics measured on ``recordings``. Its output bias keeps it from
    emitting ``<unk>``, as a trained model never does (no transcript holds it): sherpa-onnx's searches treat an
    emitted ``<unk>`` as nothing emitted, asrforge's as a token."""
    frames = np.concatenate([FrontEnd(FeatureConfig(**features, cmvn="none"))(load_audio(p)) for p in recordings])
    features = {**features, "cmvn": "global", "global_mean": frames.mean(0).tolist(),
                "global_std": frames.std(0).tolist()}
    recipe = recipe_from_dict({"model": model, "features": features, "decode": {"beam_size": 1,
                                                                                "max_symbols_per_frame": 1}})
    torch.manual_seed(seed)
    net = build_model(recipe.model, recipe.features.dim, TOKENIZER.vocab_size).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
        output = net.joint_out if recipe.model.family == "rnnt" else net.head
        output.bias[TOKENIZER.unk_id] = -100.0
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "model.pt", recipe, TOKENIZER, net)
    return folder / "model.pt"


def sherpa_tokens(recognizer, paths) -> list[list[str]]:
    """sherpa-onnx's tokens for each recording, all decoded in one batch (sherpa-onnx pads the shorter ones)."""
    streams = []
    for path in paths:
        streams.append(recognizer.create_stream())
        streams[-1].accept_waveform(16000, load_audio(path))
    recognizer.decode_streams(streams)
    return [list(s.result.tokens) for s in streams]


def runtime_tokens(runtime: OnnxRecognizer, paths) -> list[list[str]]:
    """Our runtime's greedy tokens, as sherpa-onnx names them (its results spell ``▁`` as a space). Decoded as one
    batch, as sherpa-onnx decodes them: int8 graphs quantize each call's activations with the call's own range."""
    symbols = [line.rsplit(" ", 1)[0].replace("▁", " ")
               for line in (runtime.folder.path / "tokens.txt").read_text().splitlines()]
    config = runtime.decode_config(beam_size=1, max_symbols_per_frame=1)
    hyps = runtime.decode([runtime.features(load_audio(p)) for p in paths], config)[0]     # one padded batch too
    return [[symbols[t] for t in h.tokens] for h in hyps]


@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_sherpa_onnx_runs_a_stateless_transducer_as_asrforge_runs_it(tmp_path, recordings, quantization):
    checkpoint = save_model(tmp_path, STATELESS, KALDI, recordings, seed=4)
    files = export_sherpa_onnx(checkpoint, tmp_path / "sherpa", quantization)
    assert sorted(p.name for p in files) == ["asrforge_onnx.json", "decoder.onnx", "encoder.onnx", "joiner.onnx",
                                             "tokens.txt"]
    folder = tmp_path / "sherpa"
    assert (folder / "tokens.txt").read_text().splitlines()[:2] == ["<blk> 0", "▁ 1"]
    recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
        str(folder / "encoder.onnx"), str(folder / "decoder.onnx"), str(folder / "joiner.onnx"),
        str(folder / "tokens.txt"), num_threads=1, decoding_method="greedy_search")
    theirs = sherpa_tokens(recognizer, recordings)
    assert sum(map(len, theirs)) > 5                     # the model says something
    assert runtime_tokens(OnnxRecognizer.load(folder, threads=1), recordings) == theirs
    if quantization == "float32":       # the same checkpoint exported for asrforge's runtime: the same tokens
        export_onnx(checkpoint, tmp_path / "ours")
        assert runtime_tokens(OnnxRecognizer.load(tmp_path / "ours", threads=1), recordings) == theirs


def test_sherpa_onnx_runs_a_ctc_model_as_asrforge_runs_it(tmp_path, recordings):
    checkpoint = save_model(tmp_path, CTC, KALDI, recordings, seed=2)
    export_sherpa_onnx(checkpoint, tmp_path / "sherpa")
    recognizer = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
        str(tmp_path / "sherpa" / "model.onnx"), str(tmp_path / "sherpa" / "tokens.txt"), num_threads=1)
    theirs = sherpa_tokens(recognizer, recordings)
    assert sum(map(len, theirs)) > 5
    assert runtime_tokens(OnnxRecognizer.load(tmp_path / "sherpa", threads=1), recordings) == theirs


def test_what_sherpa_onnx_cannot_reproduce_is_refused_by_name(tmp_path, recordings):
    lstm = save_model(tmp_path / "lstm", {**STATELESS, "predictor": "lstm"},
                      {"kind": "fbank", "n_mels": 80}, recordings)
    with pytest.raises(ConfigError) as refused:
        export_sherpa_onnx(lstm, tmp_path / "out")
    for named in ("features.kind is fbank", "features.fmin is 0.0", "model.predictor is lstm: ", "stateless"):
        assert named in str(refused.value)
    assert not (tmp_path / "out").exists()
    cli = subprocess.run([sys.executable, "-m", "asrforge.cli", "export", str(lstm), "--format", "sherpa-onnx",
                          "--out", str(tmp_path / "cli")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert cli.returncode == 2 and "features.kind: kaldi_fbank" in cli.stderr and "Traceback" not in cli.stderr


def test_kaldi_fbank_recipes_ship_and_refuse_what_cannot_work():
    from asrforge.recipe import load_recipe

    for name in ("demo_rnnt_fbank", "demo_ctc_fbank"):
        recipe = load_recipe(name)
        assert recipe.features.kind == "kaldi_fbank" and recipe.features.cmvn == "global"
    with pytest.raises(ConfigError, match="augment.vtlp"):
        load_recipe("demo_rnnt_fbank", ["augment.vtlp=[0.9,1.1]"])
    assert load_recipe("demo_rnnt_streaming", ["features.kind=kaldi_fbank", "features.fmin=20"]).model.streaming


def test_kaldi_fbank_computed_as_audio_arrives_is_the_whole_waveform_s(recordings):
    """Both online front ends (the runtime's and the PyTorch one) give kaldi-native-fbank's offline frames, whatever
    the pieces the audio arrives in."""
    from asrforge.features.extractor import FeatureExtractor
    from asrforge.features.online import OnlineFeatures
    from asrforge_runtime.features import OnlineFrontEnd

    config = FeatureConfig(**KALDI, cmvn="global", global_mean=[1.0] * 80, global_std=[2.0] * 80)
    wave = load_audio(recordings[2])
    whole = FrontEnd(config)(wave)
    rng = np.random.default_rng(0)
    for online in (OnlineFrontEnd(FrontEnd(config)), OnlineFeatures(FeatureExtractor(config))):
        cuts = np.sort(rng.integers(0, wave.size, 9))
        frames = [online.accept(piece) for piece in np.split(wave, cuts)] + [online.finish()]
        got = np.concatenate([np.asarray(f) for f in frames])
        assert got.shape == whole.shape
        np.testing.assert_allclose(got, whole, atol=1e-5)


def test_sherpa_onnx_streams_a_streaming_transducer_as_asrforge_runs_it(tmp_path, recordings):
    """``OnlineRecognizer.from_transducer`` loads a streaming model's folder (asrforge's chunk step in sherpa-onnx's
    ``lstm`` encoder contract) and, fed the audio in pieces, decodes the tokens asrforge's runtime decodes from the
    same frames."""
    spec = {**STATELESS, "streaming": True, "encoder": {**CONFORMER, "chunk_frames": 3, "left_chunks": 2}}
    checkpoint = save_model(tmp_path, spec, KALDI, recordings, seed=6)
    files = export_sherpa_onnx(checkpoint, tmp_path / "sherpa")
    assert sorted(p.name for p in files) == ["asrforge_onnx.json", "decoder.onnx", "encoder.onnx", "joiner.onnx",
                                             "tokens.txt"]
    folder = tmp_path / "sherpa"
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        str(folder / "tokens.txt"), str(folder / "encoder.onnx"), str(folder / "decoder.onnx"),
        str(folder / "joiner.onnx"), num_threads=1, decoding_method="greedy_search")
    export_onnx(checkpoint, tmp_path / "ours")
    ours = OnnxRecognizer.load(tmp_path / "ours", threads=1)
    chunk = ours.info["stream"]["chunk_input_frames"]       # sherpa-onnx decodes whole chunks of this many frames
    symbols = [line.rsplit(" ", 1)[0].replace("▁", " ") for line in (folder / "tokens.txt").read_text().splitlines()]
    config = ours.decode_config(beam_size=1, max_symbols_per_frame=1)
    said = 0
    for path in recordings:
        wave = np.concatenate([load_audio(path), np.zeros(8000, np.float32)])   # tail padding, as sherpa-onnx's users add
        stream = recognizer.create_stream()
        for piece in np.array_split(wave, 5):
            stream.accept_waveform(16000, piece)
            while recognizer.is_ready(stream):
                recognizer.decode_stream(stream)
        stream.input_finished()
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
        theirs = list(recognizer.get_result_all(stream).tokens)
        online = ours.online_features()
        frames = np.concatenate([online.accept(wave), online.finish()])
        decoded = (frames.shape[0] - 1) // chunk * chunk     # a chunk is decoded once a frame past it is in
        hyp = ours.decode([frames[:decoded]], config)[0][0]
        assert [symbols[t] for t in hyp.tokens] == theirs, path
        said += len(theirs)
    assert said > 5                                      # the model says something
    with pytest.raises(CheckpointError, match="OnlineRecognizer"):
        OnnxRecognizer.load(folder)
