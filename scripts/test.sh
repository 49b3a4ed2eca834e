#!/usr/bin/env bash
# Set up (a virtualenv in .venv with every extra the tests need) and run lint + tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train,dev]"
.venv/bin/ruff check .
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
