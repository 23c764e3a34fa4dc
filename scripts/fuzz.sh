#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, README "Reliability") for SECONDS each, default 60, one after
# the other, each on a working copy of its committed seeds and regression inputs (the committed
# corpus is never changed). Needs the sanitized clang tree; builds it when missing.
#   bash scripts/fuzz.sh [SECONDS] [TARGET ...]      # targets: nifti nrrd mha dicom safetensors config dataset
# Environment: SAN_BUILD_DIR (default build-san); FUZZ_RECORD=FILE appends the results (date,
# commit, command, machine load, per-target executions) to FILE. FUZZ_RUNS=N stops each target
# after N inputs instead of SECONDS (SECONDS then only caps it) and FUZZ_SEED=S fixes
# libFuzzer's random seed: together they make a run repeatable, which is how the test command
# fuzzes (scripts/sanitize.sh), so that CI's verdict does not depend on luck or machine speed.
# Limits per input: 10 s (-timeout), 2048 MiB RSS (-rss_limit_mb, also the largest single
# allocation). Exit status 1 when any target reports a crash, leak, timeout or out-of-memory;
# its input is kept in $SAN_BUILD_DIR/fuzz_work/<target>/ and the log next to it.
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
ALL=(nifti nrrd mha dicom safetensors config dataset)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
B=${SAN_BUILD_DIR:-build-san}
source scripts/sanitizer_env.sh
if [ ! -x "$B/fuzz/fuzz_${TARGETS[0]}" ]; then
  bash scripts/sanitize.sh build || exit 1
fi

total=0
bad=0
rows=""
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for t in "${TARGETS[@]}"; do
  w="$B/fuzz_work/$t"
  rm -rf "$w"
  mkdir -p "$w/corpus" "$w/artifacts"
  cp fuzz/corpus/"$t"/* "$w/corpus/"
  [ -d "fuzz/regressions/$t" ] && cp fuzz/regressions/"$t"/* "$w/corpus/"
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  start=$(date +%s)
  extra=()
  [ -n "${FUZZ_RUNS:-}" ] && extra+=(-runs="$FUZZ_RUNS")
  [ -n "${FUZZ_SEED:-}" ] && extra+=(-seed="$FUZZ_SEED")
  "$B/fuzz/fuzz_$t" "$w/corpus" "${dict[@]}" "${extra[@]}" -max_total_time="$SECS" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=3 -artifact_prefix="$w/artifacts/" \
    >"$w/log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -1)
  execs=${execs:-0}
  ncorpus=$(ls "$w/corpus" | wc -l)
  found=$(ls "$w/artifacts" | wc -l)
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    result="FINDING (exit $rc; $w/artifacts, $w/log)"
    bad=1
  else
    result="clean"
  fi
  total=$((total + execs))
  row=$(printf '| %-11s | %5d s | %10d | %7d | %6d | %s |' "$t" "$secs" "$execs" \
    "$((execs / (secs > 0 ? secs : 1)))" "$ncorpus" "$result")
  echo "[fuzz] $row"
  rows+="$row"$'\n'
done
echo "[fuzz] $total executions in all, $([ $bad -eq 0 ] && echo "no findings" || echo "FINDINGS")"

if [ -n "${FUZZ_RECORD:-}" ]; then
  {
    echo "## $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' ':!fuzz/results' || echo ' (with uncommitted changes)')"
    echo
    echo "Command: \`scripts/fuzz.sh $SECS ${TARGETS[*]}\` (clang $("${SAN_CXX:-clang++-14}" -dumpversion), ASan + UBSan + libFuzzer, -timeout=10 -rss_limit_mb=2048)."
    echo "Machine: $(nproc) cores; load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| target | time | executions | exec/s | corpus | result |"
    echo "| --- | --- | --- | --- | --- | --- |"
    printf '%s' "$rows"
    echo
    echo "Total: $total executions; $([ $bad -eq 0 ] && echo "0 crashes, leaks, timeouts or out-of-memory" || echo "FINDINGS, see above")."
    echo
  } >>"$FUZZ_RECORD"
fi
exit $bad
