"""Device names from the command line and recipes: what this PyTorch can use, or a clear error."""

import pytest
import torch

from asrforge.cli import main
from asrforge.devices import resolve_device
from asrforge.errors import ConfigError


def test_cpu_and_auto_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device("auto") == torch.device("cpu")
    for asked in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=f"--device {asked}: this PyTorch .* sees no CUDA GPU; use cpu"):
            resolve_device(asked)
    with pytest.raises(ConfigError, match="train.device cuda: "):
        resolve_device("cuda", option="train.device")
    with pytest.raises(ConfigError, match="'gpu' is not a device; use cpu, cuda, cuda:N, mps or auto"):
        resolve_device("gpu")


def test_gpu_choice_follows_the_local_rank_and_the_gpu_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda:1") and resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="there are only 2 GPU"):
        resolve_device("cuda:2")
    # torchrun starting more processes than there are GPUs: say so, instead of CUDA's invalid device ordinal
    for asked in ("auto", "cuda"):
        with pytest.raises(ConfigError, match=r"process 2 on this machine .* only 2: start at most 2 per machine "
                                              r"\(--nproc_per_node 2\), or set train.device=cpu"):
            resolve_device(asked, local_rank=2, option="train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU gives")
def test_commands_name_an_unusable_device(trained, corpus, capsys):
    assert main(["evaluate", "--model", str(trained), "--manifest", str(corpus / "dev.jsonl"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: this PyTorch" in err and "bug in asrforge" not in err
