# Sourced by main.sh and test.sh: create .venv if needed and install the project with
# the extras given as arguments (e.g. `train` or `train,dev`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The torch extra asks for torch>=2.1. On our CI machines the CPU build of torch 2.13.0
# lies on local disk: installing it first keeps pip from fetching a CUDA build of several GB.
case ",$1," in
  *,torch,*) .venv/bin/python -m pip install -q "torch==2.13.0" ;;
esac
.venv/bin/python -m pip install -q -e ".[$1]"
