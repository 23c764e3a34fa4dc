#!/usr/bin/env bash
# GPU check kit, entry point ON THE GPU MACHINE (repository root, .kit and .deps carried):
#   bash scripts/device/kit.sh OUTDIR          (OUTDIR: the device tool's $OUT)
# Runs the stages of scripts/device/run.sh (versions, deps, configure, build, cuda tests,
# sanitizers, benchmarks when asked or time is left) under ONE outer time limit, then packs
# what comes back. Whatever happens (a failing stage, a hang, the limit), OUTDIR holds at
# most 6 files, each far under the device tool's 16 MiB:
#   summary.txt   one line per stage result, written as the stages go; printed last
#   versions.txt  GPU, driver, nvcc, cuDNN, NCCL, cudnn-frontend, PyTorch, cmake, kit
#   kit.log       every stage's output, appended as it comes (capped at 12 MiB)
#   logs.tgz      the same split per stage + GoogleTest XML + the per-test table (<= 12 MiB)
#   dumps.tgz     parity failure dumps, smallest first, at most 8 MiB (list of all inside)
#   bench.tgz     benchmark JSON and the comparison with PyTorch, when benchmarks ran
# Environment:
#   CUSEG_KIT_TIME_S  outer limit of the stages in seconds (default 300; packing adds <= 20)
#   CUSEG_KIT_WORK    build folders (default <repo>/build-kit, git-ignored: a warm machine
#                     keeps it between calls, so a second call rebuilds only what changed)
#   CUSEG_KIT_BENCH=1 benchmarks even when less than 200 s are left for them
#   JOBS, CUSEG_KIT_DIR, CUSEG_KIT_PYTHON: see run.sh
# Exit: 0 every cuda test passed; 1 a test failed, did not run or was not built; 2 setup
# failed (kit, cuDNN, dependencies, configure); 3 tests reported SKIPPED (no device
# answered); 124 the time limit cut the stages (what ran is in kit.log and summary.txt).
#
#   bash scripts/device/kit.sh --pack WORK OUTDIR   only the packing step (dry-run test)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
KIT_LOG_CAP=$((12 << 20))
LOGS_CAP=$((12 << 20))
DUMPS_CAP=$((8 << 20))

# pack WORK OUT: logs.tgz, dumps.tgz, bench.tgz from WORK into OUT, within the caps.
pack() {
  local work=$1 out=$2 tmp
  tmp=$(mktemp -d)
  # Logs: the per-stage logs, XML reports and tables; configure's own error log if any.
  mkdir -p "$tmp/logs"
  [ -d "$work/logs" ] && cp -r "$work/logs/." "$tmp/logs/"
  for f in "$work/build/CMakeFiles/CMakeError.log" "$work/build/CMakeFiles/CMakeConfigureLog.yaml"; do
    [ -f "$f" ] && tail -c 2000000 "$f" >"$tmp/logs/$(basename "$f")"
  done
  tar -czf "$out/logs.tgz" -C "$tmp" logs
  if [ "$(stat -c %s "$out/logs.tgz")" -gt $LOGS_CAP ]; then
    # Too large: keep the last MiB of every file.
    find "$tmp/logs" -type f -size +1M | while read -r f; do
      { echo "[kit: first $(($(stat -c %s "$f") - 1048576)) bytes dropped]"; tail -c 1048576 "$f"; } >"$f.t"
      mv "$f.t" "$f"
    done
    tar -czf "$out/logs.tgz" -C "$tmp" logs
  fi
  # Dumps: never inside logs.tgz; smallest first up to the cap (random floats do not
  # compress, so the cap is on raw bytes); every dump is listed with its size.
  local dumps=() list="$tmp/DUMPS.txt" total=0 kept=0 all=0 sz f
  : >"$list"
  while read -r sz f; do
    [ -n "$f" ] || continue
    all=$((all + 1))
    if [ $((total + sz)) -le $DUMPS_CAP ]; then
      dumps+=("$f")
      total=$((total + sz))
      kept=$((kept + 1))
      echo "$sz $(basename "$f") included" >>"$list"
    else
      echo "$sz $(basename "$f") left out (cap $DUMPS_CAP bytes)" >>"$list"
    fi
  done < <(find "$work/build/tests" -maxdepth 1 -name 'parity_*.bin' -printf '%s %p\n' 2>/dev/null | sort -n)
  if [ $all -gt 0 ]; then
    mkdir -p "$tmp/dumps"
    cp "$list" "$tmp/dumps/"
    for f in "${dumps[@]}"; do cp "$f" "$tmp/dumps/"; done
    tar -czf "$out/dumps.tgz" -C "$tmp" dumps
    echo "dumps: $all parity dumps, $kept in dumps.tgz ($total bytes), list in dumps/DUMPS.txt" >>"$out/summary.txt"
  fi
  if [ -d "$work/bench" ] && [ -n "$(ls -A "$work/bench" 2>/dev/null)" ]; then
    tar -czf "$out/bench.tgz" -C "$work" bench
  fi
  rm -rf "$tmp"
  # What comes back: at most 8 files of at most 16 MiB (the device tool's limits).
  local n big
  n=$(find "$out" -type f | wc -l)
  big=$(find "$out" -type f -size +16M | wc -l)
  echo "returned: $n files, $(du -sb "$out" | cut -f1) bytes$([ "$big" -gt 0 ] && echo ", $big OVER 16 MiB")$([ "$n" -gt 8 ] && echo ", OVER 8 FILES")" >>"$out/summary.txt"
}

if [ "${1:-}" = "--pack" ]; then
  pack "${2:?--pack WORK OUT}" "${3:?--pack WORK OUT}"
  exit 0
fi

out=${1:?usage: scripts/device/kit.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=${CUSEG_KIT_WORK:-$repo/build-kit}
mkdir -p "$work"
work=$(cd "$work" && pwd)
limit=${CUSEG_KIT_TIME_S:-300}
export CUSEG_KIT_TIME_S=$limit  # run.sh scales its stage caps with it
: >"$out/summary.txt"
: >"$out/kit.log"
rm -f "$out/logs.tgz" "$out/dumps.tgz" "$out/bench.tgz"
echo "started" >"$work/stage"
echo "kit: limit ${limit} s, work $work, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$out/summary.txt"

# The stages, bounded from outside. run.sh starts a session of its own (setsid) and writes
# its id to WORK/run.pid: nested `timeout`s move stage commands into process groups of their
# own, out of reach of a group signal, but never out of the session. At the limit `timeout`
# ends run.sh, then every process left in its session is ended (TERM, then KILL), so that
# nothing keeps the GPU or the build busy after the call. Their output is appended to kit.log
# line by line as it comes (up to the cap): a cut loses nothing already printed.
# (A session, not just a group: the device tool ends leftover processes of the call itself,
# but not those of another session, so the kit must end its own.)
kill_session() {
  local sid=$1 sig pids
  [ -n "$sid" ] || return 0
  for sig in TERM KILL; do
    pids=$(ps -e -o pid=,sid= | awk -v s="$sid" '$2 == s { print $1 }')
    [ -n "$pids" ] || return 0
    kill -s $sig $pids 2>/dev/null
    sleep 2
  done
}
t0=$(date +%s)
rm -f "$work/run.pid" "$work/kit.fifo"
mkfifo "$work/kit.fifo"
LC_ALL=C awk -v max=$KIT_LOG_CAP '
  { n += length($0) + 1
    if (n <= max) { print; fflush() }
    else if (!w) { print "[kit.log cap reached: the rest is in logs.tgz]"; fflush(); w = 1 } }' \
  <"$work/kit.fifo" >>"$out/kit.log" &
awk_pid=$!
timeout --kill-after=10 "$limit" setsid bash -c 'echo $$ >"$1"; shift; exec bash "$@"' kit-run \
  "$work/run.pid" "$here/run.sh" "$out" "$work" $((t0 + limit - 5)) >"$work/kit.fifo" 2>&1
rc=$?
kill_session "$(cat "$work/run.pid" 2>/dev/null)"
wait $awk_pid
rm -f "$work/kit.fifo"
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
  echo "CUT: the kit's limit of ${limit} s ended the stages during '$(cat "$work/stage")' (rc $rc)" >>"$out/summary.txt"
  rc=124
fi
pack "$work" "$out"
echo "kit: rc $rc after $(($(date +%s) - t0)) s" >>"$out/summary.txt"
echo "=================== summary.txt"
cat "$out/summary.txt"
exit $rc
