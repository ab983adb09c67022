#!/usr/bin/env bash
# The main job on a fresh machine: install (if needed), then recognise the bundled sample clips
# with the bundled compact model, print the results and write outputs/outputs_YYYYMMDD_HHMMSS/.
# Usage: bash scripts/demo.sh [more audio files]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
emotion2vec-plus predict src/emotion2vec_plus/samples/*.wav "$@" --embedding --output-dir outputs
