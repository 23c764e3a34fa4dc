# Sourced by scripts/sanitize.sh and scripts/fuzz.sh: how the sanitizers report. Any finding is
# fatal (the build also uses -fno-sanitize-recover=all); leaks are checked at exit.
_supp="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/fuzz/lsan.supp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS_EXTRA:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=${_supp}:print_suppressions=0"
# Small OpenMP teams: the CPU tests run two at a time on CI's 2 cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
