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
