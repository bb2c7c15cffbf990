"""One place that turns a device name from the command line or a recipe into a ``torch.device``.

``auto`` picks the GPU when this PyTorch can see one, else the CPU. A GPU asked for by name that this PyTorch
cannot use (a CPU-only build, no GPU visible, an index past the last one) is a clear error naming the option,
not an assertion from deep inside torch.
"""

from __future__ import annotations

import torch

from asrforge.errors import ConfigError


def resolve_device(preference: str | torch.device, local_rank: int = 0, option: str = "--device") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` -> a device this PyTorch can use; ``cuda`` alone means
    the local rank's GPU under torchrun. ``option`` names the setting in errors."""
    if isinstance(preference, torch.device):
        preference = str(preference)
    if preference == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        preference = "cuda"
    try:
        device = torch.device(f"cuda:{local_rank}" if preference == "cuda" else preference)
    except RuntimeError:
        raise ConfigError(f"{option} {preference!r} is not a device; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ConfigError(f"{option} {preference}: this PyTorch ({torch.__version__}, {build}) sees no CUDA GPU; "
                              "use cpu (or auto), or install a CUDA build of torch on a machine with a GPU")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count and preference == "cuda":
            raise ConfigError(f"this is process {local_rank} on this machine (torchrun's LOCAL_RANK), and each takes "
                              f"its own GPU, but there are only {count}: start at most {count} per machine "
                              f"(--nproc_per_node {count}), or set {option}=cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{option} {preference}: there are only {count} GPU(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} {preference}: Apple's Metal (mps) is not available here; use cpu or auto")
    return device
