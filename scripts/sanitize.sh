#!/usr/bin/env bash
# sanitize.sh -- build interlock._core with AddressSanitizer and
# UndefinedBehaviorSanitizer in a separate directory (the normal in-place
# build is not touched) and run a short multi-process stress program on it,
# plus the stress tests under tests/ when STRESS_TESTS=1.
#
#   scripts/sanitize.sh [seconds]        (default 20 seconds of stress)
#   STRESS_TESTS=1 scripts/sanitize.sh   also: pytest -m stress tests/ on it
#   PYTEST_ARGS='tests/test_x.py -k y' scripts/sanitize.sh   also: those tests
#   SANITIZE_SELFTEST=1 scripts/sanitize.sh   a deliberate overrun instead of
#                                        the stress: must report and exit 1
#
# Exit status 0 and "sanitize: clean" when no ASan/UBSan report was written;
# otherwise the reports are printed and the status is 1.
# Needs gcc with libasan/libubsan.  Python itself is not instrumented: libasan
# is preloaded, leaks are not checked (CPython keeps memory until exit by
# design), and PYTHONMALLOC=malloc sends Python's objects through the
# sanitizer's malloc, so that an overrun of a bytes object the core fills in
# is caught.  See docs/design/verification.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
fi
work=${SANITIZE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/interlock-sanitize.XXXXXX")}
mkdir -p "$work/pkg" "$work/reports"

echo "sanitize: building the ASan/UBSan extension in $work" >&2
( cd "$root" && INTERLOCK_SANITIZE=1 "$py" setup.py -q build_ext \
      --build-lib "$work/lib" --build-temp "$work/tmp" --force ) > "$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2; exit 2; }
# A private copy of the package with the instrumented core in it.
rm -rf "$work/pkg/interlock"
cp -r "$root/src/interlock" "$work/pkg/interlock"
rm -f "$work/pkg/interlock"/_core*.so
cp "$work/lib/interlock"/_core*.so "$work/pkg/interlock/"

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
[ -e "$libasan" ] || { echo "sanitize: libasan not found" >&2; exit 2; }
export LD_PRELOAD="$libasan${libubsan:+:$libubsan}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:log_path=$work/reports/asan:allow_user_segv_handler=1"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/reports/ubsan"
export PYTHONMALLOC=malloc
export PYTHONPATH="$work/pkg"
export PYTHONDONTWRITEBYTECODE=1

status=0
if [ "${SANITIZE_SELFTEST:-0}" = 1 ]; then
    # Prove that a report is caught: a deliberate heap overrun through ctypes
    # (memset is intercepted by ASan).  This run must end in REPORTS FOUND.
    "$py" -c 'import ctypes; b = ctypes.create_string_buffer(4096); ctypes.memset(ctypes.addressof(b), 0, 4096 + 64)' || true
else
"$py" -c 'import interlock._core as c, sys; f = c.__file__; print("sanitize: core", f, file=sys.stderr); sys.exit(0 if "/pkg/" in f else 3)' || {
    echo "sanitize: the instrumented core was not the one imported" >&2; exit 2; }
# bounded: a hang fails (status 124) instead of stalling the caller
timeout $((secs + 120)) "$py" "$root/scripts/sanitize_stress.py" "$secs" || status=$?
if [ -n "${PYTEST_ARGS:-}" ] && [ -d "$root/tests" ]; then
    # chosen tests on the instrumented core (word-split on purpose)
    # shellcheck disable=SC2086
    ( cd "$work" && "$py" -m pytest -q -p no:cacheprovider -m 'not stress and not exhaustive' \
        --rootdir "$root" -c "$root/pyproject.toml" $PYTEST_ARGS ) || status=$?
fi
if [ "${STRESS_TESTS:-0}" = 1 ] && [ -d "$root/tests" ]; then
    ( cd "$work" && "$py" -m pytest -q -p no:cacheprovider -m stress \
        --deselect "$root/tests/test_sanitize.py" "$root/tests" ) || status=$?
fi
fi

reports=$(ls "$work/reports" 2>/dev/null || true)
if [ -n "$reports" ]; then
    for f in "$work/reports"/*; do echo "=== $f"; cat "$f"; done
    echo "sanitize: REPORTS FOUND (status $status)"
    exit 1
fi
if [ "$status" != 0 ]; then
    echo "sanitize: stress run failed with status $status (no sanitizer report)"
    exit "$status"
fi
echo "sanitize: clean"
[ -n "${SANITIZE_DIR:-}" ] || rm -rf "$work"
