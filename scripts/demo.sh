#!/usr/bin/env bash
# Fresh machine -> trained recognizer: set up .venv, then run `asrforge demo` (about 10 minutes on 2 CPU cores).
# Extra arguments go to `asrforge demo` (e.g. --minutes 5 --json demo.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/asrforge demo "$@"
