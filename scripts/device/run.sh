#!/usr/bin/env bash
# GPU check kit, step 2 (run ON THE GPU MACHINE, from the repository root, with .kit carried):
#   scripts/device/run.sh OUTDIR
# Builds GoogleTest / Google Benchmark from .kit sources, then cuseg against the machine's
# own CUDA and the cuDNN inside PyTorch's Python environment (CUSEG_WITH_ITK=OFF, sm_90),
# runs the cuda-labelled test binaries, compute-sanitizer memcheck + racecheck + initcheck on a filtered subset, and the
# train-step benchmark (engine_bench when built; the TrainStep.TimedReferenceStep test
# prints its own timing too). Every log goes to OUTDIR; a summary table is printed last.
# Budget: about 6 minutes from a bare machine (16 cores).
set -uo pipefail
out=${1:?usage: scripts/device/run.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
kit=$repo/.kit
work=${CUSEG_DEVICE_WORK:-/tmp/cuseg-device}
jobs=${JOBS:-16}
mkdir -p "$work"
summary=$out/summary.txt
: >"$summary"
t0=$(date +%s)
note() { echo "$*" | tee -a "$summary"; }
stage() { echo "== $(($(date +%s) - t0))s: $*"; }
[ -d "$kit/googletest" ] || { note "FAIL: $kit missing (run scripts/device/pack.sh here and carry .kit)"; exit 2; }

# ---------------------------------------------------------------- versions
stage versions
export PATH=/usr/local/cuda/bin:$PATH
py=$(command -v python3)
cudnn_dirs=$($py - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()])
try:
    import nvidia.cudnn as m
    roots.update(m.__path__)
except Exception:
    pass
try:
    import torch
    roots.add(os.path.dirname(torch.__file__))
except Exception:
    pass
hdr = lib = None
for r in sorted(roots):
    for h in glob.glob(os.path.join(r, "**", "cudnn_version.h"), recursive=True):
        hdr = hdr or os.path.dirname(h)
    for l in glob.glob(os.path.join(r, "**", "libcudnn.so*"), recursive=True):
        if os.path.basename(l) in ("libcudnn.so", "libcudnn.so.9"):
            lib = lib or l
print(hdr or "", lib or "")
PY
)
cudnn_inc=${cudnn_dirs% *}
cudnn_lib=${cudnn_dirs#* }
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?') (working tree as carried)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  nvcc --version | tail -1 | sed 's/^/nvcc: /'
  echo "cudnn headers: $cudnn_inc ($(grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$cudnn_inc/cudnn_version.h" 2>/dev/null | awk '{print $3}' | paste -sd.))"
  echo "cudnn library: $cudnn_lib (cudnnGetVersion $($py -c "import ctypes,sys; print(ctypes.CDLL(sys.argv[1]).cudnnGetVersion())" "$cudnn_lib" 2>&1))"
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1
  cmake --version | head -1
  cat "$kit/MANIFEST.txt"
} | tee "$out/versions.txt"
[ -n "$cudnn_inc" ] && [ -n "$cudnn_lib" ] || { note "FAIL: cuDNN headers/library not found in the Python environment"; exit 2; }
export LD_LIBRARY_PATH=$(dirname "$cudnn_lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# ---------------------------------------------------------------- dependencies from the kit
stage "deps (googletest, benchmark, blas)"
prefix=$work/prefix
(
  set -e
  cmake -S "$kit/googletest" -B "$work/gtest" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
        -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  cmake --build "$work/gtest" -j"$jobs" --target install
  cmake -S "$kit/benchmark" -B "$work/gbench" -DCMAKE_BUILD_TYPE=Release -DBENCHMARK_ENABLE_TESTING=OFF \
        -DBENCHMARK_ENABLE_GTEST_TESTS=OFF -DBENCHMARK_ENABLE_WERROR=OFF -DCMAKE_INSTALL_PREFIX="$prefix"
  cmake --build "$work/gbench" -j"$jobs" --target install
  cmake -S "$kit/yaml-cpp" -B "$work/yaml" -DCMAKE_BUILD_TYPE=Release -DYAML_CPP_BUILD_TESTS=OFF \
        -DYAML_CPP_BUILD_TOOLS=OFF -DYAML_BUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX="$prefix"
  cmake --build "$work/yaml" -j"$jobs" --target install
  # libpng (+ zlib) only when the machine lacks their headers.
  if [ ! -f /usr/include/zlib.h ]; then
    cmake -S "$kit/zlib" -B "$work/zlib" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$work/zlib" -j"$jobs" --target install
  fi
  if [ ! -f /usr/include/png.h ] && [ ! -f /usr/include/libpng16/png.h ]; then
    cmake -S "$kit/libpng" -B "$work/png" -DCMAKE_BUILD_TYPE=Release -DPNG_TESTS=OFF -DPNG_STATIC=OFF \
          -DPNG_EXECUTABLES=OFF -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$work/png" -j"$jobs" --target install
  fi
) >"$out/deps.log" 2>&1 || note "WARN: dependency build failed (see deps.log)"
export LD_LIBRARY_PATH=$prefix/lib:$prefix/lib64:$LD_LIBRARY_PATH
blas_args=()
if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so'; then
  (cmake -S "$repo/scripts/device/refblas" -B "$work/refblas" -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_INSTALL_PREFIX="$prefix" && cmake --build "$work/refblas" --target install) >>"$out/deps.log" 2>&1
  blas_args=(-DCUSEG_OPENBLAS="$prefix/lib/libcuseg_refblas.so" -DCBLAS_INCLUDE_DIR="$prefix/include")
  note "note: no OpenBLAS on this machine: CPU oracle uses scripts/device/refblas (reference sgemm)"
fi

# ---------------------------------------------------------------- build
stage "configure + build cuseg"
build=$work/build
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCUSEG_CUDA=ON -DCUSEG_WITH_ITK=OFF \
      -DCUSEG_WITH_DCMTK=OFF -DCUSEG_WITH_GIF=OFF -DCUSEG_BUILD_APPS=OFF -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_PREFIX_PATH="$prefix;$kit/cmake" -Dnlohmann_json_DIR="$kit/cmake/nlohmann_json" \
      -DCLI11_ROOT="$kit" -DCUDNN_INCLUDE_DIR="$cudnn_inc" -DCUDNN_LIBRARY="$cudnn_lib" \
      "${blas_args[@]}" >"$out/configure.log" 2>&1 || { note "FAIL: configure (configure.log)"; tail -30 "$out/configure.log"; exit 1; }
targets=$(cd "$build" && cmake --build . --target help 2>/dev/null | awk '/\.\.\. cuda_/{print $2}' | tr '\n' ' ')
for t in engine_bench bench_kernels; do
  grep -q "\.\.\. $t\$" <(cmake --build "$build" --target help 2>/dev/null) && targets="$targets $t"
done
echo "targets: $targets" | tee -a "$out/build.log"
cmake --build "$build" -j"$jobs" --target $targets >>"$out/build.log" 2>&1 \
  || { note "FAIL: build (build.log)"; grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
note "build: ok ($(($(date +%s) - t0))s)"

# ---------------------------------------------------------------- tests
# The cuda-labelled tests are the cuda_test_* GoogleTest binaries; each runs once as one process
# (ctest would start one process per test case and pay CUDA + cuDNN start-up ~20 times).
# A run where tests report SKIPPED means no device answered: flagged, never read as a pass.
budget=${CUSEG_KIT_BUDGET_S:-480}
left() { echo $((budget - ($(date +%s) - t0))); }
tests_rc=0
# Distinct test names on gtest's "[  SKIPPED ] Name" / "[  FAILED  ] Name" lines (each test
# appears twice: when it ends and in the final list).
count_named() { grep -E "^\[  $1 *\] [A-Za-z]" "$2" | awk '{print $4}' | sort -u | wc -l; }
for bin in $(cd "$build/tests" && ls cuda_test_* 2>/dev/null); do
  stage "$bin"
  (cd "$build/tests" && timeout 200 "./$bin" --gtest_output=xml:"$out/$bin.xml") >"$out/$bin.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && tests_rc=$rc
  note "$bin: rc $rc; $(grep -E '^\[  PASSED  \]' "$out/$bin.log" | tail -1) $(count_named SKIPPED "$out/$bin.log") skipped, $(count_named FAILED "$out/$bin.log") failed"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$out/$bin.log" | sort -u | head -20 | tee -a "$summary"
  grep -qE '^\[  SKIPPED \]' "$out/$bin.log" && note "WARNING: $bin skipped tests: did the device answer?"
done
grep -hE "cuseg-timing|peak device" "$out"/cuda_test_*.log | tee -a "$summary"
ls "$build/tests"/parity_*.bin >/dev/null 2>&1 && tar -czf "$out/parity_dumps.tgz" -C "$build/tests" $(cd "$build/tests" && ls parity_*.bin | head -50)

# ---------------------------------------------------------------- compute-sanitizer
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$cs" ] && [ "$(left)" -gt 240 ]; then
  stage compute-sanitizer
  small='Parity.Conv3dBackward:Parity.ReluAdd:Parity.MaxPool:Parity.Upsample2x:Parity.AdamMultiTensor:Parity.CropOrPad:Parity.GridAggregate:Parity.LabelHistogram'
  (cd "$build/tests" && timeout 150 "$cs" --tool memcheck --error-exitcode 9 ./cuda_test_parity --gtest_filter="$small") >"$out/memcheck_parity.log" 2>&1
  note "memcheck parity subset: rc $? ($(grep -E 'ERROR SUMMARY' "$out/memcheck_parity.log" | tail -1))"
  (cd "$build/tests" && timeout 90 "$cs" --tool memcheck --error-exitcode 9 ./cuda_test_train_step --gtest_filter='TrainStep.OneStep*') >"$out/memcheck_train.log" 2>&1
  note "memcheck train step: rc $? ($(grep -E 'ERROR SUMMARY' "$out/memcheck_train.log" | tail -1))"
  (cd "$build/tests" && timeout 90 "$cs" --tool racecheck --error-exitcode 9 ./cuda_test_parity \
       --gtest_filter='Parity.WeightedCrossEntropy:Parity.RescaleIntensity:Parity.LabelHistogram') >"$out/racecheck.log" 2>&1
  note "racecheck (shared-memory reductions): rc $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/racecheck.log" | tail -1))"
  # The fused patch kernels: memcheck, and racecheck of the presence scan's shared minimum.
  (cd "$build/tests" && timeout 90 "$cs" --tool memcheck --error-exitcode 9 ./cuda_test_affine_patch \
       --gtest_filter='AffinePatchCuda.PresenceAndCentres*:AffinePatchCuda.Streamed*') >"$out/memcheck_patches.log" 2>&1
  note "memcheck patch kernels: rc $? ($(grep -E 'ERROR SUMMARY' "$out/memcheck_patches.log" | tail -1))"
  (cd "$build/tests" && timeout 60 "$cs" --tool racecheck --error-exitcode 9 ./cuda_test_affine_patch \
       --gtest_filter='AffinePatchCuda.PresenceAndCentres*') >"$out/racecheck_patches.log" 2>&1
  note "racecheck patch kernels: rc $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/racecheck_patches.log" | tail -1))"
  # initcheck: does the fused conv + bias + ReLU read its output (z aliased to y, alpha2 = 0)?
  (cd "$build/tests" && timeout 60 "$cs" --tool initcheck --error-exitcode 9 ./cuda_test_parity --gtest_filter='Parity.Conv3dForward') >"$out/initcheck_conv.log" 2>&1
  note "initcheck conv forward: rc $? ($(grep -E 'ERROR SUMMARY' "$out/initcheck_conv.log" | tail -1))"
else
  note "compute-sanitizer: ${cs:-not found}; skipped (time left $(left)s)"
fi

# ---------------------------------------------------------------- train-step benchmark
stage benchmark
if [ -x "$build/bench/engine_bench" ] && [ "$(left)" -gt 60 ]; then
  (timeout 120 "$build/bench/engine_bench" step --device cuda --json "$out/engine_bench_step.json") >"$out/engine_bench.log" 2>&1
  note "engine_bench step: rc $? ; $(tail -3 "$out/engine_bench.log" | tr '\n' ' ')"
  # Training patches/s of the device pipeline (issue target: >= 1000 patches/s of 96^3).
  (timeout 90 "$build/bench/engine_bench" data --pipeline device --patches 200 --warmup-patches 20 \
     --json "$out/engine_bench_data_device.json") >"$out/engine_bench_data.log" 2>&1
  note "engine_bench data --pipeline device: rc $? ; $(grep -E '"patches_per_s"|"device_bytes"' "$out/engine_bench_data.log" | tr -s ' \n' ' ')"
else
  note "engine_bench not built: see TrainStep.TimedReferenceStep in ctest.log"
fi

# ---------------------------------------------------------------- peers and micro suite
# Ours vs PyTorch (eager fp32, AMP bf16 channels-last, torch.compile) in the same run on the
# same device (bench/README.md). Skipped when the time budget is already spent.
if [ -x "$build/bench/engine_bench" ] && [ $(($(date +%s) - t0)) -lt $((budget - 200)) ]; then
  stage "bench/compare.sh --profile quick"
  (CUSEG_ENGINE_BENCH="$build/bench/engine_bench" CUSEG_BENCH_PYTHON="$py" timeout 200 \
     "$repo/bench/compare.sh" --device cuda --profile quick --out-dir "$out/bench") >"$out/compare.log" 2>&1
  note "compare (ours vs PyTorch): rc $? ; results in bench/ of the logs"
  grep -E "^\|" "$out/compare.log" | tail -12 | tee -a "$summary"
fi
if [ -x "$build/bench/bench_kernels" ] && [ $(($(date +%s) - t0)) -lt $((budget - 90)) ]; then
  stage "bench_kernels --cuda_only"
  (timeout 90 "$build/bench/bench_kernels" --cuda_only --benchmark_min_time=0.1 \
     --benchmark_out="$out/bench_kernels_cuda.json" --benchmark_out_format=json) >"$out/bench_kernels.log" 2>&1
  note "bench_kernels cuda: rc $?"
fi
note "total: $(($(date +%s) - t0))s"
[ $tests_rc -eq 0 ] || note "RESULT: cuda tests FAILED (rc $tests_rc)"
echo "=================== summary"; cat "$summary"
exit $tests_rc
