#!/usr/bin/env bash
# Benchmark step of the GPU kit and the CPU comparison: runs engine_bench and the PyTorch
# peers in the same run on the same device; writes bench/results/<date>_<device>_<profile>.{json,md}.
# All arguments go to bench/compare.py (see bench/README.md). Environment:
#   CUSEG_BENCH_PYTHON  Python with torch (default: .venv-bench, .venv-ref, then python3)
#   CUSEG_ENGINE_BENCH  engine_bench binary (default: build-bench/, build/, build-bench-cpu/)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${CUSEG_BENCH_PYTHON:-}"
if [[ -z "$py" ]]; then
  for cand in "$root/.venv-bench/bin/python" "$root/.venv-ref/bin/python" "$(command -v python3 || true)"; do
    if [[ -n "$cand" && -x "$cand" ]] && "$cand" -c 'import torch' 2>/dev/null; then py="$cand"; break; fi
  done
fi
[[ -n "$py" ]] || { echo "compare.sh: no Python with torch found (set CUSEG_BENCH_PYTHON)" >&2; exit 2; }
exec "$py" "$here/compare.py" --python "$py" "$@"
