#!/usr/bin/env bash
# The numeric tests (network, parity with FunASR, ONNX export check, compute types) again with
# PyTorch, oneDNN, MKL and FBGEMM (the int8 linear) forced to lower instruction sets in the same process: AVX2 (an AMD EPYC
# without AVX-512 runs these kernels), then no vector kernels at all. Tolerances that only hold
# on one CPU's kernels fail here. Usage: bash scripts/test_lower_isa.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
NUMERIC_TESTS=(tests/test_model.py tests/test_whisper.py tests/test_parity.py tests/test_onnx_backend.py
               tests/test_compute.py tests/test_layers.py tests/test_checkpoint.py tests/test_compact.py tests/test_vad.py)
for level in avx2 default; do
    echo "== numeric tests with ATEN_CPU_CAPABILITY=$level ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2"
    ATEN_CPU_CAPABILITY=$level ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        python -m pytest "${NUMERIC_TESTS[@]}" -m "not browser" "$@"
done
# bf16 on AVX512-BF16 without AMX (AMD Zen 4): oneDNN's packed bf16 products take other kernels there.
echo "== bf16/int8 numeric tests with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16"
ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python -m pytest tests/test_layers.py tests/test_onnx_backend.py tests/test_compute.py \
    -m "not browser" "$@"
