#!/usr/bin/env bash
# Dry run of the GPU check kit on a machine WITHOUT a GPU: the ctest `kit_dryrun` (label
# kit). Everything the device call does except the GPU itself:
#   1. pack the kit (scripts/device/pack.sh) into WORK/kit (Debian source tarballs come from
#      a download cache after the first run; without network and cache: exit 77, skipped)
#   2. a Python package tree that looks like the pip wheels of cuDNN and NCCL
#      (nvidia/cudnn/{include,lib}, nvidia/nccl/{include,lib}) made of links to this
#      machine's files, on PYTHONPATH, as the GPU machine's PyTorch environment has them
#   3. a run cut by a 20 s limit: rc 124, "CUT" in summary.txt, kit.log holds what ran
#   4. a full run (ITK-less build from the kit's sources, every cuda-labelled test): rc 3,
#      every cuda test SKIPPED and counted (as many as this build's ctest lists),
#      sanitizers and benchmarks skipped with the reason, logs in place
#   5. the packing caps: planted oversized dumps and logs stay within the limits and dumps
#      stay out of logs.tgz
#   and after every run: at most 8 files come back, each under 16 MiB, with plain names.
# Usage: dryrun.sh WORK CUDNN_INCLUDE_DIR CUDNN_LIBRARY HOST_BUILD_DIR
# Cost on 2 cores: see scripts/device/README.md ("Dry run").
set -uo pipefail
W=${1:?usage: dryrun.sh WORK CUDNN_INCLUDE_DIR CUDNN_LIBRARY HOST_BUILD_DIR}
cudnn_inc=${2:?}
cudnn_lib=${3:?}
host_build=${4:?}
here=$(cd "$(dirname "$0")" && pwd)
fails=0
check() {  # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "dryrun: ok   $1"; else echo "dryrun: FAIL $1"; fails=$((fails + 1)); fi
}
# returned OUT: the device tool's limits on what comes back from $OUT.
returned() {
  local o=$1 n
  n=$(find "$o" -type f | wc -l)
  [ "$n" -le 8 ] || { echo "  $n files"; return 1; }
  [ -z "$(find "$o" -type f -size +16M)" ] || { echo "  a file over 16 MiB"; return 1; }
  [ -z "$(find "$o" -mindepth 3 -type f)" ] || { echo "  a file more than 2 folders down"; return 1; }
  [ -z "$(find "$o" -mindepth 1 -printf '%f\n' | grep -v '^[A-Za-z0-9._-]*$')" ] || { echo "  odd names"; return 1; }
}
has() { grep -qE "$2" "$1"; }

mkdir -p "$W"
W=$(cd "$W" && pwd)
export JOBS=${JOBS:-2}

# 1. pack
CUSEG_KIT_DIR=$W/kit bash "$here/pack.sh" >"$W/pack.log" 2>&1
rc=$?
cat "$W/pack.log"
if [ $rc -eq 3 ]; then
  echo "dryrun: SKIPPED: the kit could not be packed (no network and no cached sources)"
  exit 77
fi
[ $rc -eq 0 ] || { echo "dryrun: FAIL pack (rc $rc)"; exit 1; }
export CUSEG_KIT_DIR=$W/kit

# 2. the wheel-like Python tree
py=$W/py
rm -rf "$py"
mkdir -p "$py/nvidia/cudnn/include" "$py/nvidia/cudnn/lib"
: >"$py/nvidia/__init__.py"
: >"$py/nvidia/cudnn/__init__.py"
ln -s "$cudnn_inc"/cudnn*.h "$py/nvidia/cudnn/include/"
for f in "$(dirname "$cudnn_lib")"/libcudnn*.so.*; do ln -s "$(readlink -f "$f")" "$py/nvidia/cudnn/lib/$(basename "$f")"; done
nccl_h=$(ls /usr/local/cuda/include/nccl.h /usr/include/nccl.h 2>/dev/null | head -1)
nccl_so=$(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 /{print $NF; exit}')
if [ -n "$nccl_h" ] && [ -n "$nccl_so" ]; then
  mkdir -p "$py/nvidia/nccl/include" "$py/nvidia/nccl/lib"
  : >"$py/nvidia/nccl/__init__.py"
  ln -s "$nccl_h" "$py/nvidia/nccl/include/nccl.h"
  ln -s "$(readlink -f "$nccl_so")" "$py/nvidia/nccl/lib/libnccl.so.2"
fi
export PYTHONPATH=$py${PYTHONPATH:+:$PYTHONPATH}

# 3. a run that hangs (a Python that never answers, as `import torch` can on a wedged GPU)
#    and is cut by the kit's outer limit of 20 s
out=$W/out-cut
rm -rf "$out" "$W/work-cut"
printf '#!/bin/sh\nsleep 1000\n' >"$W/hanging-python"
chmod +x "$W/hanging-python"
t=$(date +%s)
CUSEG_KIT_PYTHON=$W/hanging-python CUSEG_KIT_WORK=$W/work-cut CUSEG_KIT_TIME_S=20 \
  bash "$here/kit.sh" "$out" >"$W/cut.log" 2>&1
rc=$?
took=$(($(date +%s) - t))
check "cut run: rc 124 (got $rc)" test $rc -eq 124
check "cut run: ended within the limit + kill + packing ($took s <= 45)" test $took -le 45
check "cut run: summary says where it was cut" has "$out/summary.txt" "^CUT: .*during 'versions'"
check "cut run: kit.log holds what ran before the hang" has "$out/kit.log" "^date: "
check "cut run: versions.txt written as it went" has "$out/versions.txt" "^nvcc: "
check "cut run: logs.tgz packed" test -s "$out/logs.tgz"
check "cut run: what comes back fits the limits" returned "$out"
check "cut run: no process left behind" bash -c "! pgrep -f '[h]anging-python' >/dev/null"

# 4. the full run
out=$W/out
rm -rf "$out"
t=$(date +%s)
CUSEG_KIT_WORK=$W/work CUSEG_KIT_TIME_S=${DRYRUN_LIMIT_S:-3000} bash "$here/kit.sh" "$out" >"$W/full.log" 2>&1
rc=$?
echo "dryrun: full run rc $rc in $(($(date +%s) - t)) s"
tail -40 "$W/full.log"
s=$out/summary.txt
expected=$(ctest --test-dir "$host_build" -L cuda -N 2>/dev/null | sed -n 's/^Total Tests: //p')
check "full run: rc 3, tests skipped without a device (got $rc)" test $rc -eq 3
check "full run: build ok" has "$s" "^build: ok"
check "full run: every one of the $expected cuda tests of this build reported SKIPPED" \
  has "$s" "^cuda_tests: summary: ${expected:-?} skipped$"
check "full run: skips flagged" has "$s" "^WARNING: cuda tests were SKIPPED"
check "full run: skip reason named" has "$s" "^cuda_tests: skipped [0-9]+ x: no CUDA device"
check "full run: sanitizers skipped with the reason" has "$s" "^sanitizers: skipped \(no device"
check "full run: benchmarks skipped with the reason" has "$s" "^benchmarks: not run \(no device"
check "full run: versions name cuDNN from the Python tree" has "$out/versions.txt" "^cudnn: $py/nvidia/cudnn/include"
check "full run: versions say what of NCCL was found" has "$out/versions.txt" "^nccl: "
check "full run: kit.log has the test stage" has "$out/kit.log" "^cuda_tests: == cuda_test_parity"
tar -tzf "$out/logs.tgz" >"$W/logs.list" 2>/dev/null
check "full run: logs.tgz has the build log, XML reports, the test table" \
  bash -c "grep -q logs/build.log '$W/logs.list' && grep -q 'logs/cuda_test_parity.xml' '$W/logs.list' && grep -q logs/cuda_tests.json '$W/logs.list'"
check "full run: what comes back fits the limits" returned "$out"

# 5. packing caps, with planted oversized dumps and logs
tests_dir=$W/work/build/tests
mkdir -p "$tests_dir" "$W/work/logs"
head -c $((20 << 20)) /dev/urandom >"$tests_dir/parity_planted_big.bin"
for i in 1 2 3 4 5; do head -c $((1 << 20)) /dev/urandom >"$tests_dir/parity_planted_$i.bin"; done
head -c $((30 << 20)) /dev/urandom | base64 >"$W/work/logs/planted_big.log"
out=$W/out-pack
rm -rf "$out"
mkdir -p "$out"
: >"$out/summary.txt"
bash "$here/kit.sh" --pack "$W/work" "$out"
check "pack: dumps.tgz within 8.5 MiB" test "$(stat -c %s "$out/dumps.tgz")" -le $((17 << 19))
check "pack: the oversized dump listed as left out" \
  bash -c "tar -xzOf '$out/dumps.tgz' dumps/DUMPS.txt | grep -q 'parity_planted_big.bin left out'"
check "pack: no dump inside logs.tgz" bash -c "! tar -tzf '$out/logs.tgz' | grep -q parity_"
check "pack: logs.tgz within 12 MiB" test "$(stat -c %s "$out/logs.tgz")" -le $((12 << 20))
check "pack: what comes back fits the limits" returned "$out"
rm -f "$tests_dir"/parity_planted_*.bin "$W/work/logs/planted_big.log"

echo "dryrun: $fails check(s) failed"
[ $fails -eq 0 ]
