#!/usr/bin/env bash
# Set up (a virtualenv in .venv with every extra the tests need) and run lint + tests.
source "$(dirname "$0")/venv.sh" train,torch,jax,dask,remote,dev
.venv/bin/ruff check .
# The tests hold up to about 0.8 GB of datasets at once in the temp directory; with less
# free, most of them would fail one by one on a full disk. Say so once instead.
.venv/bin/python -c '
import shutil, sys, tempfile
tmp, need = tempfile.gettempdir(), 1 << 30
free = shutil.disk_usage(tmp).free
if free < need:
    sys.exit(f"scripts/test.sh: the tests need about {need / 2**30:.1f} GB free in {tmp}, "
             f"and {free / 2**30:.1f} GB are; free some space there (or set TMPDIR)")
'
# The tests on several processes (pytest-xdist; tests/conftest.py says how many, and
# which run first), handed out one at a time to whichever is free (`--dist load` hands
# each process a long run of tests at first: a whole slow module to one; no test has an
# xdist_group mark, which pytest-xdist 3.8 cannot apply under pytest 9). `-n 0` among the
# arguments runs them all in this process.
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q -p no:cacheprovider -n auto \
  --dist loadgroup "$@"
