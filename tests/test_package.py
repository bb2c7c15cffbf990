"""The package as a new user gets it: a wheel built from the source, installed (not editable) into a fresh
virtual environment with the pinned torch, runs the demo from an empty folder, its recipes shipped inside."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from conftest import REPO


def run(*args, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_wheel_installs_into_a_fresh_environment_and_runs_the_demo_from_an_empty_folder(tmp_path):
    source = tmp_path / "source"              # built from a copy: the build leaves build/ and egg-info behind
    shutil.copytree(REPO / "asrforge", source / "asrforge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "runtime", source / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--quiet", "-w", tmp_path / "dist", cwd=source)
    run(sys.executable, "-m", "pip", "wheel", "./runtime", "--no-deps", "--quiet", "-w", tmp_path / "dist", cwd=source)
    wheel = next((tmp_path / "dist").glob("asrforge-0*.whl"))
    runtime_wheel = next((tmp_path / "dist").glob("asrforge_runtime-*.whl"))

    venv.create(tmp_path / "env", with_pip=True)
    python = tmp_path / "env" / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, "torch==2.13.0", cwd=tmp_path)              # first and pinned, as scripts/setup.sh installs it
    run(*pip, runtime_wheel, cwd=tmp_path)                # then the runtime asrforge depends on
    run(*pip, wheel, cwd=tmp_path)
    asrforge = tmp_path / "env" / "bin" / "asrforge"
    located = run(python, "-c", "import asrforge, torch; print(asrforge.__file__, torch.__version__)", cwd=tmp_path)
    assert str(tmp_path / "env") in located.stdout and "2.13.0" in located.stdout   # the installed copy, not the clone

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "demo_ctc" in run(asrforge, "recipes", cwd=empty).stdout
    demo = run(asrforge, "demo", "--minutes", "0.3", "--hours", "0.05", "--json", "demo.json", cwd=empty)
    assert "[4/4] transcribing one held-out file" in demo.stdout and "held-out-voice WER" in demo.stdout
    assert (empty / "demo.json").is_file() and (empty / "asrforge-demo" / "exp" / "best.pt").is_file()
