#!/usr/bin/env bash
# Formats every C++/CUDA source with the committed .clang-format (--check: report only).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=(-i)
[ "${1:-}" = "--check" ] && mode=(--dry-run -Werror)
git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs clang-format "${mode[@]}"
