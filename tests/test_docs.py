"""The README and docs/ stay true: every `asrforge` command shown parses with today's options and names a recipe
that ships, every benchmark flag shown exists, and the README's tour runs as written (with smaller sizes)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_MODEL

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOUR_MARK = "<!-- tests/test_docs.py runs this block"


def blocks(text: str, language: str = "bash") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """The block's command lines, continuations joined, comments and prompts dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(" ".join(shlex.quote(w) for w in words))
    return out


def asrforge_args(command: str) -> list[str] | None:
    """The arguments given to asrforge (directly, after a pipe, or through torchrun -m asrforge.cli), else None."""
    words = shlex.split(command.split(" | ")[-1])
    words = words[:next((i for i, w in enumerate(words) if w in (">", ">>", "&&", "2>")), len(words))]   # redirections
    for i, word in enumerate(words):
        if word == "asrforge" and i == 0:
            return words[1:]
        if word == "asrforge.cli" and i and words[i - 1] == "-m":
            return words[i + 1:]
    return None


SHOWN = [(page.name, command) for page in PAGES for block in blocks(page.read_text()) for command in commands(block)]


def test_the_pages_show_commands():
    assert sum(asrforge_args(c) is not None for _, c in SHOWN) > 60


@pytest.mark.parametrize("page,command", [(p, c) for p, c in SHOWN if asrforge_args(c) is not None])
def test_every_asrforge_command_shown_parses(page, command):
    from asrforge.cli import parse
    from asrforge.recipe import shipped_recipes

    args = [w for w in asrforge_args(command) if w not in ("[", "]")]
    args = [w.strip("[]") if w.startswith("[--") or w.endswith("]") and not w.startswith("[") else w for w in args]
    try:
        parsed = parse(args)
    except SystemExit:
        pytest.fail(f"{page}: `{command}` does not parse")
    if parsed.command == "train" or getattr(parsed, "config", None) and parsed.command == "demo":
        recipe = parsed.config
        assert recipe.endswith(".yaml") or recipe in shipped_recipes(), f"{page}: {recipe} is not a shipped recipe"


def test_every_script_and_benchmark_flag_shown_exists():
    used: dict[str, set[str]] = {}
    for page, command in SHOWN:
        words = shlex.split(command)
        if words[0] == "bash" and words[1].startswith("scripts/"):
            assert (REPO / words[1]).is_file(), f"{page}: {words[1]}"
        if words[0] == "python" and words[1].startswith("benchmarks/"):
            used.setdefault(words[1], set()).update(w.strip("[]") for w in words[2:] if w.lstrip("[").startswith("--"))
    assert len(used) >= 5
    for script, flags in used.items():
        proc = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{script}: {proc.stderr[-500:]}"
        for flag in flags:
            assert flag in proc.stdout, f"{script} has no {flag}"


def test_the_readme_tour_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text()
    tour = blocks(readme[readme.index(TOUR_MARK):])[0]
    smaller = {"--hours 1": "--hours 0.02 --seed 3"}     # minutes of synthesis and training made seconds
    tiny = " ".join([*TINY_MODEL, "train.epochs=1", "train.max_minutes=null", "features.n_mels=40", "train.threads=1"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path)}
    ran = 0
    for command in commands(tour):
        if command.startswith("source "):
            continue                   # the virtual environment is this test's own
        for big, small in smaller.items():
            command = command.replace(big, small)
        if command.startswith("asrforge train "):
            command += " " + tiny
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"`{command}`\n{proc.stdout[-1500:]}\n{proc.stderr[-2500:]}"
        ran += 1
    assert ran == 7
    manifest = (tmp_path / "data" / "digits" / "test.jsonl").read_text().splitlines()
    one, two = (tmp_path / "preds.jsonl").read_text(), (tmp_path / "preds2.jsonl").read_text()
    assert len(one.splitlines()) == len(manifest) and one == two and '"pred_text"' in one

    # and the README's Python, with a recording the tour made
    python = blocks(readme, "python")[0].replace('"a.wav"', repr(str(tmp_path / "data/digits/wavs/test/test-000000.wav")))
    proc = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2500:]
    assert '"segments"' in proc.stdout or "'segments'" in proc.stdout
