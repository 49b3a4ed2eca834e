#!/usr/bin/env bash
# Set up (a virtualenv in .venv with every extra the tests need) and run lint + tests.
source "$(dirname "$0")/venv.sh" train,torch,jax,dask,remote,dev
.venv/bin/ruff check .
# The tests on several processes (pytest-xdist; tests/conftest.py says how many, and
# which run first), handed out one at a time to whichever is free (`--dist load` hands
# each process a long run of tests at first: a whole slow module to one; no test has an
# xdist_group mark, which pytest-xdist 3.8 cannot apply under pytest 9). `-n 0` among the
# arguments runs them all in this process.
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q -p no:cacheprovider -n auto \
  --dist loadgroup "$@"
