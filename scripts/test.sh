#!/usr/bin/env bash
# The README's test command: set up, build, run every test (labels cpu, cuda, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"${JOBS:-2}" "$@"
