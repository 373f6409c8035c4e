"""Write docs/compat.md from tests/compat_table.py (its one owner).

    python scripts/gen_compat_md.py          # rewrite docs/compat.md
    python scripts/gen_compat_md.py --check  # exit 1 if it is out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from compat_table import (  # noqa: E402
    CATEGORIES, DIFFERENCES, MULTIPROCESSING_ONLY_FAILS, MULTIPROCESSING_RACY,
    fails_for_multiprocessing, flags)

HEAD = """\
# interlock and multiprocessing: where they still differ

Generated from `tests/compat_table.py` by `scripts/gen_compat_md.py`; do not
edit by hand (`tests/test_cpython_compat.py::test_compat_md_is_generated`
checks it).

`tests/test_cpython_compat.py` runs CPython's own tests with interlock's
classes swapped in: from `test._test_multiprocessing`, the "processes"
flavour of `_TestQueue`, `_TestLock`, `_TestSemaphore`, `_TestCondition`,
`_TestEvent`, `_TestBarrier`, `_TestValue`, `_TestArray` (under the default
start method, `fork` up to Python 3.13); from `test.lock_tests`, `LockTests`,
`RLockTests`, `EventTests`, `ConditionTests`, `SemaphoreTests`,
`BoundedSemaphoreTests`, `BarrierTests`. The same tests also run on
multiprocessing's own classes (the baseline, under `-m stress`), which checks
the claims below: a test said to fail for multiprocessing too must fail there.
`tests/test_mp_docs_examples.py` runs the multiprocessing documentation's
queue/lock/value/pool examples, re-told, under fork, spawn and forkserver.

Every test not listed passes for interlock. Categories:

""" + "".join(f"- **{k}**: {v}\n" for k, v in CATEGORIES.items())


def render() -> str:
    out = [HEAD, "\n## Tests that differ\n\n",
           "| test | category | fails for multiprocessing too | reason |\n",
           "|---|---|---|---|\n"]
    for key in sorted(DIFFERENCES):
        category, reason = DIFFERENCES[key][:2]
        extra = " (slow: `-m stress` only)" if "slow" in flags(key) else ""
        mp = "yes" if fails_for_multiprocessing(key) else "no"
        out.append(f"| `{key}` | {category} | {mp} | {reason}{extra} |\n")
    counts: dict[str, int] = {}
    for entry in DIFFERENCES.values():
        counts[entry[0]] = counts.get(entry[0], 0) + 1
    out.append("\nTotals: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in CATEGORIES) + ".\n")
    per: dict[str, list[int]] = {}
    for key, entry in DIFFERENCES.items():
        cls = key.rsplit(".", 1)[0] if not key.startswith("example:") else "docs examples"
        row = per.setdefault(cls, [0, 0])
        row[0 if entry[0] in ("gap", "mpfails") else 1] += 1
    out.append("\nPer class (every other test of the class passes; the number of tests\n"
               "per class varies slightly between Python 3.10 and 3.13):\n\n"
               "| class | xfail | skip |\n|---|---|---|\n")
    for cls in sorted(per):
        out.append(f"| `{cls}` | {per[cls][0]} | {per[cls][1]} |\n")
    out.append("\n## Where interlock passes and multiprocessing fails\n\n"
               "Not differences to close: the baseline run marks them as strict xfails\n"
               "(non-strict where multiprocessing fails only when a race goes one way:\n"
               "marked *racy*).\n\n"
               "| test | multiprocessing's failure |\n|---|---|\n")
    for key in sorted(MULTIPROCESSING_ONLY_FAILS):
        racy = " (*racy*)" if key in MULTIPROCESSING_RACY else ""
        out.append(f"| `{key}` | {MULTIPROCESSING_ONLY_FAILS[key]}{racy} |\n")
    return "".join(out)


def main() -> int:
    path = ROOT / "docs" / "compat.md"
    text = render()
    if "--check" in sys.argv:
        if not path.exists() or path.read_text() != text:
            print("docs/compat.md is out of date: run python scripts/gen_compat_md.py")
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
