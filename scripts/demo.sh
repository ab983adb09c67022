#!/usr/bin/env bash
# The main job on a fresh machine: install (if needed), recognise the bundled sample clips with the
# bundled compact model (printing the results and writing outputs/outputs_YYYYMMDD_HHMMSS/), then
# start the WebUI on the same model at http://127.0.0.1:7860 (Ctrl+C to stop).
# Usage: bash scripts/demo.sh [more audio files]     (WEBUI_PORT=7861 for another port, NO_WEBUI=1 to skip it)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-webui} bash scripts/install.sh   # the package and the WebUI only, not the test tools
. .venv/bin/activate
emotion2vec-plus predict src/emotion2vec_plus/samples/*.wav "$@" --embedding --output-dir outputs
if [ "${NO_WEBUI:-0}" != "1" ]; then
    echo "starting the WebUI at http://127.0.0.1:${WEBUI_PORT:-7860} (Ctrl+C to stop)"
    exec emotion2vec-plus webui --host 127.0.0.1 --port "${WEBUI_PORT:-7860}" --outputs outputs
fi
