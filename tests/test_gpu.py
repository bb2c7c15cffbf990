"""The GPU paths (skipped without a CUDA GPU, so CI, which has none, skips them): decoding on a GPU gives what
the CPU gives. A first run on an H100 found Whisper's greedy search mixing CPU and GPU tensors."""

import numpy as np
import pytest
import torch

from asrforge.inference import load_model
from whisper_fixtures import tiny_whisper

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    from asrforge.models.whisper.checkpoints import save_openai

    folder = tmp_path_factory.mktemp("whisper-gpu")
    model, _ = tiny_whisper(folder)
    save_openai(model, folder / "tiny.pt")
    return folder


def test_whisper_transcribes_on_the_gpu_as_on_the_cpu(whisper_folder):
    torch.backends.cudnn.allow_tf32 = False          # float32 convolutions on both, so argmax ties break alike
    audio = np.random.default_rng(0).normal(0, 0.05, 16000 * 3).astype(np.float32)
    cpu, gpu = load_model(whisper_folder / "tiny.pt"), load_model(whisper_folder / "tiny.pt", device="cuda")
    assert next(gpu.model.parameters()).is_cuda
    # temperature 0 alone: a random model repeats itself, and the default fallback would then sample
    for options in ({"language": "en"}, {"language": "en", "beam_size": 3}, {"language": "en", "word_timestamps": True},
                    {"language": "en", "batch_size": 2}, {}):
        options["temperature"] = 0.0
        on_cpu, on_gpu = cpu.transcribe(audio, **options), gpu.transcribe(audio, **options)
        assert on_gpu.text == on_cpu.text, options
        assert on_gpu.language == on_cpu.language
    # sampling with temperature fallback runs there too
    sampled = gpu.transcribe(audio, language="en", temperature=(0.0, 0.5, 1.0), best_of=2,
                             compression_ratio_threshold=0.1)
    assert isinstance(sampled.text, str)


def test_asrforge_models_decode_on_the_gpu_as_on_the_cpu(trained, corpus):
    from asrforge.data.manifest import read_manifest
    from asrforge.inference.transcriber import Transcriber

    utts, _ = read_manifest(corpus / "test.jsonl")
    cpu, gpu = Transcriber.from_checkpoint(trained), Transcriber.from_checkpoint(trained, device="cuda")
    for u in utts[:4]:
        for beam in (1, 4):
            a = cpu.transcribe(u.audio_filepath, beam_size=beam)
            b = gpu.transcribe(u.audio_filepath, beam_size=beam)
            assert a.text == b.text and len(a.segments) == len(b.segments)


def test_bulk_transcription_on_the_gpu_writes_what_the_cpu_writes(babbler, whisper_folder, corpus, tmp_path):
    import json

    from asrforge.cli import main

    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**r, "audio_filepath": str(corpus / r["audio_filepath"])}) + "\n" for r in rows))
    for model, options in ((babbler, []), (whisper_folder / "tiny.pt", ["--language", "en", "--temperature", "0",
                                                                         "--temperature-increment-on-fallback", "0"])):
        texts = {}
        for device in ("cpu", "cuda"):
            out = tmp_path / f"{model.stem}-{device}.jsonl"
            assert main(["transcribe", "--manifest", str(manifest), "--output-manifest", str(out), "--model", str(model),
                         "--device", device, *options]) == 0
            texts[device] = [json.loads(line)["pred_text"] for line in out.read_text().splitlines()]
        assert texts["cuda"] == texts["cpu"] and len(texts["cpu"]) == len(rows)
