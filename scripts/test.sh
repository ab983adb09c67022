#!/usr/bin/env bash
# Install (if needed) and run the whole test suite, slow tests included.
# Usage: bash scripts/test.sh [extra pytest arguments]
#
# The browser tests need Debian's chromium: installed here when missing and running as root
# (scripts/install_browser.sh), otherwise skipped with that reason. The numeric tests then run a
# second time with PyTorch forced to lower CPU kernels (AVX2, then none), because tolerances
# must hold on every x86-64 CPU, not only this one (scripts/test_lower_isa.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_browser.sh
. .venv/bin/activate
python -m pytest "$@"
options=()
for arg in "$@"; do [[ "$arg" == -* ]] && options+=("$arg"); done   # flags such as -q, not test paths
bash scripts/test_lower_isa.sh "${options[@]}"
