#!/usr/bin/env bash
# The benchmarks' own environment with llama.cpp (llama-cpp-python), the engine Ember is compared
# with in bench/generation.py. PyPI has only its source: the build takes 10-15 minutes on 2 cores
# (pip caches the wheel, so later runs are quick). A native build can die with "Illegal instruction"
# on these VMs, hence the explicit instruction sets.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-bench/bin/python ] || "${PYTHON:-python3}" -m venv .venv-bench
if ! .venv-bench/bin/python -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
    .venv-bench/bin/python -m pip install --quiet --disable-pip-version-check "llama-cpp-python==0.3.36" "numpy>=1.26,<3"
fi
echo "llama.cpp bench environment: .venv-bench" >&2
