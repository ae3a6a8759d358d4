#!/usr/bin/env bash
# Install qsmflow into a virtual environment. Used by the Makefile, CI and the Dockerfile,
# so that the image's install recipe is the one that is tested.
#   bash scripts/install.sh VENV_DIR [EXTRAS]      (EXTRAS default: test)
set -euo pipefail
venv=${1:-.venv}
extras=${2:-test}
here=$(cd "$(dirname "$0")/.." && pwd)
torch_pin=${QSMFLOW_TORCH:-torch==2.13.0}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
"$venv/bin/python" -m pip install --quiet "$torch_pin"
if [ -n "$extras" ]; then
  "$venv/bin/python" -m pip install --quiet -e "$here[$extras]"
else
  "$venv/bin/python" -m pip install --quiet "$here"
fi
"$venv/bin/python" -c "import qsmflow, torch; print('qsmflow', qsmflow.__version__, 'torch', torch.__version__)"
