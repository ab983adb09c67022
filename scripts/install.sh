#!/usr/bin/env bash
# Create .venv/ in the repository and install the package with the extras named in $EXTRAS
# (default "test": everything the test suite needs; scripts/demo.sh asks for "webui" only).
# Idempotent: re-running only installs what is missing. Usage: [EXTRAS=webui] bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
EXTRAS=${EXTRAS:-test}
echo "install: pip into .venv/ (emotion2vec-plus[$EXTRAS])"
python -m pip install --quiet --upgrade pip

# torch first and pinned: the CPU build of 2.13.0 (an unpinned torch pulls a multi-GB CUDA build).
echo "install: torch 2.13.0 (CPU build)"
python -m pip install --quiet "torch==2.13.0"
echo "install: emotion2vec-plus[$EXTRAS] and its dependencies"
python -m pip install --quiet -e ".[$EXTRAS]"

# Refuse to go on with a CUDA build of torch or any NVIDIA runtime wheels.
python - <<'PY'
import importlib.metadata as md
import sys

import torch

cuda_wheels = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-"))
if torch.__version__.split("+")[0] != "2.13.0" or torch.version.cuda is not None or cuda_wheels:
    sys.exit(f"wrong torch build: {torch.__version__} (cuda {torch.version.cuda}); CUDA wheels: {cuda_wheels}")
print(f"torch {torch.__version__} (CPU build) ok")
PY
