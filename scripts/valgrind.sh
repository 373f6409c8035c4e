#!/usr/bin/env bash
# valgrind.sh -- a short run of the core under valgrind memcheck: the normal
# (-O2) build, PYTHONMALLOC=malloc so that Python's objects are checked too,
# threads instead of fork for the queue rounds (valgrind serialises threads,
# which still interleaves them), plus the fork-based owner-death cases (a
# forked child stays under valgrind).  Leaks are not checked: CPython keeps
# memory until exit by design.
#
#   scripts/valgrind.sh [seconds]      (default 5 seconds of queue rounds)
#
# Exit status 0 and "valgrind: clean" when memcheck found 0 errors.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-5}
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
fi
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 2; }
log=$(mktemp "${TMPDIR:-/tmp}/interlock-valgrind.XXXXXX")
# Only errors with a frame in the core count: CPython's own code is
# valgrind-clean with PYTHONMALLOC=malloc except for a few known reads of
# uninitialised stack in its startup, which we do not own.
export PYTHONMALLOC=malloc
status=0
valgrind --tool=memcheck --error-exitcode=99 --leak-check=no --track-origins=yes \
    --num-callers=30 --child-silent-after-fork=no --log-file="$log.%p" \
    "$py" "$root/scripts/sanitize_stress.py" "$secs" --no-fork || status=$?
valgrind --tool=memcheck --error-exitcode=99 --leak-check=no \
    --num-callers=30 --log-file="$log.fork.%p" \
    "$py" -c "import sys; sys.argv = ['x', '0']; sys.path.insert(0, '$root/scripts'); import sanitize_stress as s; s.lock_round(); s.producer_death(); print('fork cases ok')" || status=$?
errors=0
for f in "$log".*; do
    n=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
    # error records (blank-line separated) with a frame in interlock's core
    ours=$(awk '/^==[0-9]+== $/ { if (rec ~ /_core\.cpython|\((module|mutex|platform|ring|eventcount)\.[ch]:/ && rec ~ /(at|by) 0x/) n++; rec = ""; next }
                { rec = rec "\n" $0 }
                END { if (rec ~ /_core\.cpython|\((module|mutex|platform|ring|eventcount)\.[ch]:/ && rec ~ /(at|by) 0x/) n++; print n + 0 }' "$f")
    echo "valgrind: $(basename "$f"): ${n:-no summary (killed child)} errors in all, $ours in interlock's core"
    if [ "$ours" != 0 ]; then errors=$((errors + ours)); cat "$f"; fi
done
rm -f "$log" "$log".*
# memcheck's own exit status 99 counts CPython's errors too: ignore that one
[ "$status" = 99 ] && status=0
if [ "$errors" != 0 ] || [ "$status" != 0 ]; then
    echo "valgrind: FAILED ($errors errors, status $status)"
    exit 1
fi
echo "valgrind: clean"
