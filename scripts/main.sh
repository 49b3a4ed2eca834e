#!/usr/bin/env bash
# Set up (a virtualenv in .venv) and run the main job: generate the default dataset and a
# held-out one, then train the seed's model on it with the seed's settings.
source "$(dirname "$0")/venv.sh" train
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

.venv/bin/seqdata generate data/default --num-sequences 100000 --seed 0 --overwrite
.venv/bin/seqdata generate data/heldout --num-sequences 10000 --seed 1 --overwrite
.venv/bin/trainer train --data data/default --validation-data data/heldout \
  --out runs/seed --preset seed --overwrite "$@"
