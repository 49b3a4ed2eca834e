#!/usr/bin/env bash
# Set up (a virtualenv in .venv) and run the main job: generate the default dataset and a
# held-out one, then train the seed's model on it with the seed's settings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train]"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

.venv/bin/seqdata generate data/default --num-sequences 100000 --seed 0 --overwrite
.venv/bin/seqdata generate data/heldout --num-sequences 10000 --seed 1 --overwrite
.venv/bin/trainer train --data data/default --validation-data data/heldout \
  --out runs/seed --preset seed --overwrite "$@"
