#!/usr/bin/env bash
# Fresh machine -> test results: set up .venv with the test extras, then run the whole suite.
# Extra arguments go to pytest (e.g. -k metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
