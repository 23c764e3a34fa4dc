#!/usr/bin/env bash
# Prints a hash of the source tree (every file under the folders and files below, as they
# are on disk), so that a GPU run can be tied to a commit even where the copy of the
# working tree has no .git: pack.sh records it with the commit here, run.sh prints it there.
# Usage: scripts/device/tree_hash.sh [REPO]
set -euo pipefail
cd "${1:-$(dirname "$0")/../..}"
find CMakeLists.txt cmake core kernels engine data model pipeline apps tests bench scripts configs \
     -type f ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null \
  | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-16
