#!/usr/bin/env bash
# GPU check kit, the stages (ON THE GPU MACHINE). Started by scripts/device/kit.sh, which
# bounds it with an outer time limit and packs what it wrote; not meant to be run alone.
#   run.sh OUT WORK DEADLINE
# OUT: the returned folder (summary.txt and versions.txt are written here as they go; all
# output also reaches OUT/kit.log through kit.sh). WORK: build folders and per-stage logs
# (WORK/logs). DEADLINE: unix time by which every stage must have ended.
#
# Stages, each with its own time limit taken from what is left:
#   versions    driver, GPU, nvcc, cuDNN and NCCL (found in the Python environment, as
#               PyTorch ships them), cudnn-frontend headers in .deps, PyTorch, cmake
#   deps        GoogleTest, yaml-cpp (+ zlib / libpng when missing) from .kit sources, once
#               per kit (a warm machine keeps WORK between calls)
#   configure   cuseg: CUDA on, sm_90, no ITK / DCMTK / giflib, no apps, no benchmarks,
#               refblas fallback
#   build       everything left (libraries and every test executable), keep going on errors
#   cuda tests  every ctest test labelled cuda (scripts/device/cuda_tests.py)
#   sanitizers  compute-sanitizer memcheck / initcheck / racecheck on short subsets (parity
#               ops, the fused conv's output, the training-patch kernels, one training step),
#               only when a device answered and time is left
#   benchmarks  only with CUSEG_KIT_BENCH=1, or when a device answered and >= 200 s are left:
#               engine_bench step in bf16 and fp32, data --pipeline device, bench/compare.sh
#               quick (ours in bf16 and fp32 vs PyTorch AMP / compile / eager: step, forward,
#               volume), bench_kernels (bf16 cases included)
# Environment: JOBS (default: all cores), CUSEG_KIT_DIR (default <repo>/.kit),
# CUSEG_KIT_PYTHON (default python3), CUSEG_KIT_BENCH (1: benchmarks even when short of time).
set -uo pipefail
out=${1:?usage: run.sh OUT WORK DEADLINE}
work=${2:?usage: run.sh OUT WORK DEADLINE}
deadline=${3:?usage: run.sh OUT WORK DEADLINE}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kit=${CUSEG_KIT_DIR:-$repo/.kit}
py=${CUSEG_KIT_PYTHON:-python3}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 8)}
logs=$work/logs
build=$work/build
prefix=$work/prefix
pyprefix=$work/pyprefix
summary=$out/summary.txt
rm -rf "$logs"  # a warm machine keeps WORK: no log of an earlier call may pass for this one
mkdir -p "$logs" "$prefix"
t0=$(date +%s)

note() { echo "$*" | tee -a "$summary"; }
left() { echo $((deadline - $(date +%s))); }
# Stage caps below are written for the device call (300 s, 16 cores) and scale with the
# kit's limit (a dry run on 2 cores gets a longer limit, and its stages longer caps).
scale_pct=$(( ${CUSEG_KIT_TIME_S:-300} * 100 / 300 ))
# limit WANT: seconds a stage may take: WANT (scaled), or what is left minus a 5 s margin.
limit() {
  local l=$(($(left) - 5)) w=$(($1 * scale_pct / 100))
  [ "$w" -lt "$l" ] && l=$w
  echo $((l < 1 ? 1 : l))
}
# stage NAME SECONDS CMD...: runs CMD under its own time limit; output to WORK/logs/NAME.log
# and to stdout (kit.log). Returns CMD's status (124 when it hit its limit).
stage() {
  local name=$1 secs=$2
  shift 2
  echo "$name" >"$work/stage"
  echo "=================== [$(($(date +%s) - t0)) s] $name (limit $secs s)"
  timeout --kill-after=5 "$secs" "$@" 2>&1 | tee "$logs/$name.log"
  return "${PIPESTATUS[0]}"
}

[ -d "$kit/googletest" ] || { note "FAIL: $kit missing (run scripts/device/pack.sh here and carry .kit)"; exit 2; }

# ---------------------------------------------------------------- versions
export PATH=/usr/local/cuda/bin:$PATH
# cuDNN and NCCL as the Python environment ships them (nvidia-cudnn-*, nvidia-nccl-* wheels,
# or PyTorch's own folder); the system's when Python has none.
find_libs() {
  timeout 60 "$py" - <<'PY'
import glob, os, shlex, site
roots = []
for get in (site.getsitepackages, lambda: [site.getusersitepackages()]):
    try:
        roots += get()
    except Exception:
        pass
for mod in ("nvidia.cudnn", "nvidia.nccl", "torch"):
    try:
        m = __import__(mod, fromlist=["x"])
        roots += list(getattr(m, "__path__", [])) or [os.path.dirname(m.__file__)]
    except Exception:
        pass
def first(names, dirs):
    for r in dirs:
        for n in names:
            hits = sorted(glob.glob(os.path.join(r, "**", n), recursive=True))
            if hits:
                return hits[0]
    return ""
roots = [r for r in dict.fromkeys(roots) if os.path.isdir(r)]
system = ["/usr/local/cuda/include", "/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/include",
          "/usr/lib/x86_64-linux-gnu", "/usr/local/include", "/usr/local/lib"]
found = {
    "cudnn_h": first(["cudnn_version.h"], roots) or first(["cudnn_version.h"], system),
    "cudnn_so": first(["libcudnn.so.9", "libcudnn.so"], roots) or first(["libcudnn.so.9", "libcudnn.so"], system),
    "nccl_h": first(["nccl.h"], [r for r in roots if "torch" not in r]) or first(["nccl.h"], system),
    "nccl_so": first(["libnccl.so.2", "libnccl.so"], roots) or first(["libnccl.so.2", "libnccl.so"], system),
}
for k, v in found.items():
    print("%s=%s" % (k, shlex.quote(v)))
PY
}
echo versions >"$work/stage"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '? (no .git here)'); source hash $(bash "$here/tree_hash.sh" "$repo" 2>/dev/null) (pack.sh records the hash of its commit in .kit/MANIFEST.txt)"
  if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    timeout 30 nvidia-smi -q 2>/dev/null | grep -m1 -i "CUDA Version" | sed 's/^ */driver /'
  else
    echo "gpu: nvidia-smi not found"
  fi
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
} 2>&1 | tee "$out/versions.txt"
cudnn_h="" cudnn_so="" nccl_h="" nccl_so=""
eval "$(find_libs 2>/dev/null)"
cudnn_inc=${cudnn_h:+$(dirname "$cudnn_h")}
nccl_inc=${nccl_h:+$(dirname "$nccl_h")}
hver() {  # hver FILE PREFIX: MAJOR.MINOR.PATCH from #defines
  grep -hE "#define ${2}(MAJOR|MINOR|PATCH|PATCHLEVEL) +[0-9]+" "$1" 2>/dev/null | awk '{print $3}' | paste -sd.
}
# A prefix of links with the names CMake's find_library expects (wheels carry only
# libX.so.N, no libX.so).
rm -rf "$pyprefix"
mkdir -p "$pyprefix/include" "$pyprefix/lib"
[ -n "$cudnn_inc" ] && ln -sf "$cudnn_inc"/cudnn*.h "$pyprefix/include/"
[ -n "$cudnn_so" ] && ln -sf "$cudnn_so" "$pyprefix/lib/libcudnn.so"
[ -n "$nccl_inc" ] && ln -sf "$nccl_h" "$pyprefix/include/nccl.h"
[ -n "$nccl_so" ] && ln -sf "$nccl_so" "$pyprefix/lib/libnccl.so"
fe=$repo/.deps/cudnn_frontend/include
{
  echo "cudnn: ${cudnn_inc:-not found} $(hver "$cudnn_h" CUDNN_) / ${cudnn_so:-not found}"
  echo "nccl: ${nccl_inc:-headers not found} $(hver "$nccl_h" NCCL_) / ${nccl_so:-library not found}"
  if [ -d "$fe" ]; then
    echo "cudnn-frontend: .deps/cudnn_frontend/include $(hver "$(ls "$fe"/cudnn_frontend_version.h 2>/dev/null)" CUDNN_FRONTEND_)"
  else
    echo "cudnn-frontend: .deps/cudnn_frontend/include absent (not carried)"
  fi
  timeout 60 "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'devices', torch.cuda.device_count())" 2>&1 | tail -1
  echo "compute-sanitizer: $(compute-sanitizer --version 2>/dev/null | grep -m1 -i version || echo 'not found')"
  echo "cmake: $(cmake --version | head -1); ninja: $(ninja --version 2>/dev/null || echo no); cores: $(nproc)"
  echo "kit: $(head -1 "$kit/MANIFEST.txt" 2>/dev/null)"
} 2>&1 | tee -a "$out/versions.txt"
if [ -z "$cudnn_inc" ] || [ -z "$cudnn_so" ]; then
  note "FAIL: cuDNN headers or library not found (Python environment and system)"
  exit 2
fi
if [ -z "$nccl_inc" ] || [ -z "$nccl_so" ]; then
  note "note: NCCL not found (headers ${nccl_inc:-missing}, library ${nccl_so:-missing}): code that needs it is configured without it or fails to configure (configure.log); its tests then report SKIPPED or are not built"
fi
export LD_LIBRARY_PATH=$(dirname "$cudnn_so")${nccl_so:+:$(dirname "$nccl_so")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_ROOT=$pyprefix CUDNN_ROOT=$pyprefix
gpu_answers=0
nvidia-smi -L >/dev/null 2>&1 && gpu_answers=1

# ---------------------------------------------------------------- dependencies from the kit
gen=()
keep_going=(-k)
if command -v ninja >/dev/null; then
  gen=(-G Ninja)
  keep_going=(-k 0)
fi
stamp=$prefix/.kit-$(cksum <"$kit/MANIFEST.txt" | cut -d' ' -f1)
build_deps() {
  set -e
  cmake -S "$kit/googletest" -B "$work/gtest" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
        -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  cmake --build "$work/gtest" -j"$jobs" --target install
  cmake -S "$kit/yaml-cpp" -B "$work/yaml" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DYAML_CPP_BUILD_TESTS=OFF \
        -DYAML_CPP_BUILD_TOOLS=OFF -DYAML_BUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX="$prefix"
  cmake --build "$work/yaml" -j"$jobs" --target install
  # libpng (+ zlib) only when the machine lacks their headers.
  if [ ! -f /usr/include/zlib.h ]; then
    cmake -S "$kit/zlib" -B "$work/zlib" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$work/zlib" -j"$jobs" --target install
  fi
  if [ ! -f /usr/include/png.h ] && [ ! -f /usr/include/libpng16/png.h ]; then
    cmake -S "$kit/libpng" -B "$work/png" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DPNG_TESTS=OFF -DPNG_STATIC=OFF \
          -DPNG_EXECUTABLES=OFF -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$work/png" -j"$jobs" --target install
  fi
  touch "$stamp"
}
if [ -f "$stamp" ]; then
  note "deps: already built for this kit (warm machine)"
else
  stage deps "$(limit 120)" bash -c "$(declare -f build_deps); $(declare -p work kit prefix jobs stamp gen); build_deps"
  rc=$?
  [ $rc -eq 0 ] || { note "FAIL: dependency build (rc $rc$([ $rc -eq 124 ] && echo ', time limit'); deps.log)"; exit 2; }
  note "deps: ok ($(($(date +%s) - t0)) s)"
fi
export LD_LIBRARY_PATH=$prefix/lib:$prefix/lib64:$LD_LIBRARY_PATH

# ---------------------------------------------------------------- configure + build
cfg=(-DCMAKE_BUILD_TYPE=Release -DCUSEG_CUDA=ON -DCUSEG_WITH_ITK=OFF -DCUSEG_WITH_DCMTK=OFF
     -DCUSEG_WITH_GIF=OFF -DCUSEG_BUILD_APPS=OFF
     -DCUSEG_BUILD_BENCH=OFF -DCUSEG_REFBLAS_FALLBACK=ON -DCMAKE_CUDA_ARCHITECTURES=90
     "-DCMAKE_PREFIX_PATH=$prefix;$kit/cmake;$pyprefix" "-Dnlohmann_json_DIR=$kit/cmake/nlohmann_json"
     "-DCLI11_ROOT=$kit" "-DCUDNN_INCLUDE_DIR=$cudnn_inc" "-DCUDNN_LIBRARY=$cudnn_so")
[ -n "$nccl_inc" ] && [ -n "$nccl_so" ] && cfg+=("-DNCCL_ROOT=$pyprefix" "-DNCCL_INCLUDE_DIR=$nccl_inc" "-DNCCL_LIBRARY=$nccl_so")
[ -f "$build/CMakeCache.txt" ] && gen=()  # the generator of an existing build stays
stage configure "$(limit 90)" cmake -S "$repo" -B "$build" "${gen[@]}" "${cfg[@]}"
rc=$?
[ $rc -eq 0 ] || { note "FAIL: configure (rc $rc$([ $rc -eq 124 ] && echo ', time limit'); configure.log)"; exit 2; }
# Every target (libraries and all test executables, so that cuda-labelled tests in any
# folder are built), keeping going past errors so that what compiles can still run.
stage build "$(limit 240)" cmake --build "$build" -j"$jobs" -- "${keep_going[@]}"
rc=$?
if [ $rc -eq 0 ]; then
  note "build: ok ($(($(date +%s) - t0)) s)"
else
  note "FAIL: build (rc $rc$([ $rc -eq 124 ] && echo ', time limit'); build.log): running what was built"
  grep -E "error|Error" "$logs/build.log" | grep -v "^-- " | head -20 | tee -a "$summary"
fi

# ---------------------------------------------------------------- cuda tests
rm -f "$build"/tests/parity_*.bin  # dumps of an earlier run on a warm machine
echo cuda-tests >"$work/stage"
echo "=================== [$(($(date +%s) - t0)) s] cuda tests"
# Sanitizers get the last 30 s at least; the tests come first.
"$py" "$here/cuda_tests.py" --build "$build" --logs "$logs" --deadline $((deadline - 30)) 2>&1 \
  | tee -a "$logs/cuda-tests.log"
tests_rc=${PIPESTATUS[0]}
grep -E "^cuda_tests: (summary|  |skipped)" "$logs/cuda-tests.log" | head -60 >>"$summary"
# Every test file of tests/cuda must have become an executable (a test that was never built
# lists no cases, and would otherwise pass unnoticed).
for src in "$repo"/tests/cuda/*.cpp; do
  exe=cuda_$(basename "$src" .cpp)
  if [ ! -x "$build/tests/$exe" ]; then
    note "FAIL: $exe not built"
    tests_rc=1
  fi
done
grep -hE "^(cuseg-timing|cuseg-conv-algo|cuseg-fused-conv|cuseg-maxpool-nan|derived bounds|measured:)" \
  "$logs"/*.log 2>/dev/null | sort -u | head -80 >>"$summary"
device_ran=0
case $tests_rc in
  0) note "cuda tests: all passed" && device_ran=1 ;;
  1) note "RESULT: cuda tests FAILED or did not run (see above)" && device_ran=1 ;;
  3) note "WARNING: cuda tests were SKIPPED: did the device answer? (nvidia-smi: $([ $gpu_answers = 1 ] && echo answers || echo no answer))" ;;
  *) note "FAIL: the cuda test runner (rc $tests_rc)" ;;
esac
# A skipped run on a machine whose GPU answers is a failure of the kit, not a pass.
[ $tests_rc -eq 3 ] && [ $gpu_answers = 1 ] && tests_rc=1

# ---------------------------------------------------------------- compute-sanitizer
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
# sanitize NAME TOOL WANT_S BINARY FILTER
sanitize() {
  local name=$1 tool=$2 want=$3 bin=$4 filter=$5 secs
  secs=$(limit "$want")
  if [ "$secs" -lt 15 ]; then
    note "$name: not run (time left $(left) s)"
    return 1
  fi
  if [ ! -x "$build/tests/$bin" ]; then
    note "$name: $bin not built"
    return 1
  fi
  (cd "$build/tests" && stage "$name" "$secs" "$cs" --tool "$tool" --error-exitcode 9 --print-limit 30 \
     "./$bin" --gtest_filter="$filter")
  local rc=$? lg=$logs/$name.log
  local ran
  ran=$(grep -m1 -oE "^\[==========\] [0-9]+ tests? from [0-9]+ test suites? ran" "$lg")
  note "$name: rc $rc$([ $rc -eq 124 ] && echo ' (time limit)'); ${ran:-no tests ran}; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$lg" | tail -1)"
  if grep -qE "Device not supported|Target application terminated before first instrumented API call|unable to (load|initialize)" "$lg"; then
    note "$name: compute-sanitizer cannot work on this machine (e.g. a gVisor runtime): remaining sanitizer runs skipped"
    return 2
  fi
  return 0
}
if [ $device_ran = 0 ]; then
  note "sanitizers: skipped (no device ran the tests)"
elif [ -z "$cs" ]; then
  note "sanitizers: compute-sanitizer not found"
else
  # memcheck: every hand-written kernel and the cuDNN paths on small shapes, plus the pool's
  # stream tests; initcheck: does the fused conv read its never-written output
  # (Parity.Conv3dFusedOutputUnread); racecheck: the kernels with shared-memory reductions.
  memcheck_filter='Parity.Conv3dBackward:Parity.BiasRelu:Parity.MaxPool:Parity.MaxPoolNaN:Parity.Upsample2x:Parity.AdamMultiTensor:Parity.CropOrPad:Parity.GridAggregate:Parity.LabelHistogram:Parity.RescaleIntensity'
  sanitize memcheck-parity memcheck 90 cuda_test_parity "$memcheck_filter"
  [ $? -eq 2 ] || {
    sanitize initcheck-fused-conv initcheck 60 cuda_test_parity 'Parity.Conv3dFusedOutputUnread'
    sanitize racecheck racecheck 60 cuda_test_parity \
      'Parity.WeightedCrossEntropy:Parity.RescaleIntensity:Parity.LabelHistogram'
    # The fused training-patch kernels: memcheck, and racecheck of the presence scan's shared
    # minimum.
    sanitize memcheck-patches memcheck 60 cuda_test_affine_patch \
      'AffinePatchCuda.PresenceAndCentres*:AffinePatchCuda.Streamed*'
    sanitize racecheck-patches racecheck 40 cuda_test_affine_patch 'AffinePatchCuda.PresenceAndCentres*'
    sanitize memcheck-train-step memcheck 60 cuda_test_train_step 'TrainStep.OneStepLossAndEveryGradient'
  }
fi

# ---------------------------------------------------------------- benchmarks
bench_out=$work/bench
if [ $device_ran = 1 ] && { [ "${CUSEG_KIT_BENCH:-0}" = 1 ] || [ "$(left)" -ge 200 ]; }; then
  rm -rf "$bench_out"
  mkdir -p "$bench_out"
  bench_deps() {
    set -e
    cmake -S "$kit/benchmark" -B "$work/gbench" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DBENCHMARK_ENABLE_TESTING=OFF \
          -DBENCHMARK_ENABLE_GTEST_TESTS=OFF -DBENCHMARK_ENABLE_WERROR=OFF -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$work/gbench" -j"$jobs" --target install
    cmake -S "$repo" -B "$build" -DCUSEG_BUILD_BENCH=ON
    cmake --build "$build" -j"$jobs" --target engine_bench bench_kernels
  }
  stage bench-build "$(limit 90)" bash -c "$(declare -f bench_deps); $(declare -p work kit prefix jobs gen repo build); bench_deps"
  note "bench build: rc $?"
  # The reference training step (96^3, batch 2) in bf16 (the issue's target) and in fp32.
  for prec in bf16 fp32; do
    if [ -x "$build/bench/engine_bench" ] && [ "$(left)" -ge 30 ]; then
      stage engine-bench-$prec "$(limit 60)" "$build/bench/engine_bench" step --device cuda --precision $prec \
        --json "$bench_out/engine_bench_step_$prec.json"
      note "engine_bench step --precision $prec: rc $?; $(grep -m4 -E '"median"|"pct_of_bf16_peak"|"refused"' "$logs/engine-bench-$prec.log" | tr -s ' \n' ' ')"
    fi
  done
  if [ -x "$build/bench/engine_bench" ] && [ "$(left)" -ge 30 ]; then
    # Training patches/s of the device pipeline (issue target: >= 1000 patches/s of 96^3).
    stage engine-bench-data "$(limit 60)" "$build/bench/engine_bench" data --pipeline device --patches 200 \
      --warmup-patches 20 --json "$bench_out/engine_bench_data_device.json"
    note "engine_bench data --pipeline device: rc $?; $(grep -E '"patches_per_s"|"device_bytes"' "$logs/engine-bench-data.log" | tr -s ' \n' ' ')"
  fi
  if [ -x "$build/bench/engine_bench" ] && [ "$(left)" -ge 30 ]; then
    # The data-parallel step on NCCL at world size 1 (--comm always): reference network, batch 2,
    # 96^3, 25 MiB buckets; step time and the blocking allreduce time of each bucket.
    stage engine-bench-dist "$(limit 45)" "$build/bench/engine_bench" dist --device cuda --comm always \
      --patch 96 --batch 2 --warmup 3 --iters 10 \
      --json "$bench_out/engine_bench_dist_nccl.json"
    note "engine_bench dist (NCCL, world 1): rc $?; $(grep -m4 -E 'step|allreduce' "$logs/engine-bench-dist.log" | tr -s ' \n' ' ')"
  fi
  if [ -x "$build/bench/engine_bench" ] && [ "$(left)" -ge 120 ]; then
    # Ours in bf16 and fp32 vs PyTorch (AMP bf16 channels-last, torch.compile of it, eager fp32,
    # torch.compile): step, forward and volume, same run, same device. The most wanted rows run
    # first and compare.py rewrites its results after every process, so a stage cut by its
    # limit still returns what finished (marked partial).
    export CUSEG_ENGINE_BENCH="$build/bench/engine_bench" CUSEG_BENCH_PYTHON="$py"
    stage compare "$(limit 200)" "$repo/bench/compare.sh" --device cuda --profile quick \
      --benchmarks step,forward,volume --precisions bf16,fp32 --modes amp,compile-amp,eager,compile \
      --out-dir "$bench_out"
    note "compare (ours vs PyTorch): rc $?"
    grep -E "^\|" "$logs/compare.log" | tail -12 | tee -a "$summary"
  fi
  if [ -x "$build/bench/bench_kernels" ] && [ "$(left)" -ge 40 ]; then
    stage bench-kernels "$(limit 60)" "$build/bench/bench_kernels" --cuda_only --benchmark_min_time=0.1 \
      --benchmark_out="$bench_out/bench_kernels_cuda.json" --benchmark_out_format=json
    note "bench_kernels cuda: rc $?"
  fi
else
  note "benchmarks: not run ($([ $device_ran = 1 ] && echo "time left $(left) s; CUSEG_KIT_BENCH=1 asks for them" || echo 'no device ran the tests'))"
fi

echo done >"$work/stage"
note "stages: $(($(date +%s) - t0)) s"
exit $tests_rc
