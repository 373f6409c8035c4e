#!/usr/bin/env bash
# soak.sh -- run the README's test command many times in a row, then the
# stress suite, and stop at the first failure.  The bar for "the tests are
# green": a flaky test fails this loop long before it fails a user's first
# run (issue 12: one failure in 138 runs was enough to break a fresh clone).
#
#   scripts/soak.sh [N] [M]     N default-suite runs (20), M stress runs (5)
#   SOAK_DIR=dir scripts/soak.sh  where the logs go (default: a temp dir)
#   PYTHON=... scripts/soak.sh    the interpreter (default: .venv/bin/python)
#   extra pytest arguments: SOAK_PYTEST_ARGS="-p no:cacheprovider"
#
# Each run's output goes to its own log.  On the first failure the script
# prints that run's log tail and its path, and exits 1; otherwise it exits 0.
# Either way the last line is a summary:
#   soak: PASS default 20/20 stress 5/5 in 1234 s (logs: dir)
#   soak: FAIL at default run 7 (after 6 default, 0 stress passes) ...
# Heavy: the default suite takes minutes, the stress suite much longer; run
# it on a machine you may load (or lower N and M).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20}
m=${2:-5}
case "$n$m" in *[!0-9]*) echo "usage: $0 [N] [M]  (non-negative integers)" >&2; exit 2 ;; esac
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
fi
logs=${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/interlock-soak.XXXXXX")}
mkdir -p "$logs"
# shellcheck disable=SC2206  # word splitting of the extra arguments is wanted
extra=(${SOAK_PYTEST_ARGS:-})
t0=$(date +%s)
passed_default=0
passed_stress=0

summary() {
    echo "soak: $1 default $passed_default/$n stress $passed_stress/$m in $(( $(date +%s) - t0 )) s (logs: $logs)"
}

# run LABEL I ARGS...: one pytest run; on failure print the log and stop.
run() {
    local label=$1 i=$2
    shift 2
    local log="$logs/$label-$i.log"
    echo "soak: $label run $i ..." >&2
    ( cd "$root" && "$py" -m pytest "${extra[@]}" "$@" ) >"$log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "soak: $label run $i FAILED (exit $rc); the end of $log:" >&2
        tail -n 80 "$log" >&2
        summary "FAIL at $label run $i (exit $rc, log $log):"
        exit 1
    fi
    tail -n 1 "$log" >&2
}

for ((i = 1; i <= n; i++)); do
    run default "$i"          # the README's command: pytest's configured default (not stress)
    passed_default=$i
done
for ((i = 1; i <= m; i++)); do
    run stress "$i" -m stress
    passed_stress=$i
done
summary PASS
