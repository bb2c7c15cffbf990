#!/usr/bin/env bash
# Create .venv and install asrforge into it (editable). Idempotent; safe to re-run.
# Usage: bash scripts/setup.sh [extra]   e.g. "test" installs the test dependencies too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned, so no dependency can pull in another build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
# the torch-free runtime (runtime/) first: asrforge depends on it, and it is not on a package index
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ./runtime
target="."
[ -n "${1:-}" ] && target=".[$1]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
.venv/bin/python -c "import torch, asrforge; assert torch.__version__.startswith('2.13.0'), torch.__version__"
