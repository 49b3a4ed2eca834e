#!/usr/bin/env bash
# Set up (a virtualenv in .venv with every extra the tests need) and run lint + tests.
source "$(dirname "$0")/venv.sh" train,torch,jax,dask,dev
.venv/bin/ruff check .
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
