#!/usr/bin/env bash
# The README's test command: set up, build, run every test (labels cpu, cuda, e2e), then the
# reliability stage (scripts/sanitize.sh: the cpu and e2e tests again under ASan + UBSan in a
# clang build, every fuzz target over its committed inputs and a repeatable short fuzzing run).
# CUSEG_SKIP_SANITIZE=1 skips that stage (CI never sets it); so does giving ctest arguments
# (e.g. -R Checkpoint), which select tests of the normal build only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j"${JOBS:-2}" "$@")
if [ $# -eq 0 ] && [ "${CUSEG_SKIP_SANITIZE:-0}" != 1 ]; then
  bash scripts/sanitize.sh
fi
