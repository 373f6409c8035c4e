"""The registry commands of ``interlock``: ``ls``, ``inspect``, ``top``, ``clean``.

Each command is ``cmd_<name>(args) -> int`` (the exit status), registered
on the CLI's subparsers by :func:`add_parsers`.  All of them only read
(``_registry``), except ``clean --remove``, which reaps under each segment's
meta lock exactly as a last detach would (``_segment.clean``).

Exit status: 0 when the command did its job, an empty registry included
(that is an answer, not an error); 1 for an unknown name.  Every command has
``--json`` for scripts: one JSON document on stdout (``top``: one per
refresh, JSON Lines).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _registry, _segment
from ..errors import NoSuchObject
from .._registry import COUNT_MOD, HolderInfo, ObjectInfo

CLEAR = "\x1b[H\x1b[2J"


# --------------------------------------------------------------- formatting
def fmt_size(n: int) -> str:
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{int(f)} B" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{n} B"  # pragma: no cover


def fmt_age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt_rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f}M/s"
    if per_s >= 1e4:
        return f"{per_s / 1e3:.1f}k/s"
    return f"{per_s:.0f}/s"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def holder_text(h: HolderInfo) -> str:
    s = _registry.holder_text(h)
    if h.depth > 1:
        s += f" x{h.depth}"
    if h.acquired_at:
        s += f" at {h.acquired_at}"
    return s


def state_text(o: ObjectInfo) -> str:
    if o.problem:
        return f"unreadable: {o.problem}"
    s = o.summary
    if o.unlinked:
        s += " (removed; vanishing)"
    elif o.orphaned:
        s += " (orphaned: run `interlock clean --remove`)"
    return s


def creator_text(o: ObjectInfo) -> str:
    if not o.creator_pid:
        return "?"
    return str(o.creator_pid) if o.creator_alive else f"{o.creator_pid} (gone)"


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=None, ensure_ascii=False, sort_keys=False))


def _nothing() -> str:
    return f"no interlock objects (none of uid {os.getuid()} in {_segment.SHM_DIR})"


# ----------------------------------------------------------------------- ls
LS_LEGEND = """\
columns:
  CREATOR  pid of the process that created the object ("(gone)": it has exited)
  USERS    live attached processes / all slots in use (dead ones are swept by
           the next attach or detach, or by `interlock clean`)
  STATE    what the object holds now, read without taking any lock (a snapshot):
           a queue's depth/maxsize ("∞": no count bound) and bytes held;
           "N producers/M consumers": attached processes that have put / got at
           least once (threads blocked right now are counted as "waiting");
           "locked by pid P (main thread)" or "pid P thread T": the holder
           (T is the thread's id in /proc, as threading.get_native_id() gives)

Hidden unless --all: interlock's own tables ("@waitfor", "@lockdep"), and the
lock that a Value, Array or Condition made for itself: its state is shown in
its owner's row ("lock: ..."); with --all it is listed under its owner ("└").
"""


def visible(objs: Sequence[ObjectInfo], show_all: bool) -> list[ObjectInfo]:
    """The objects `ls` shows, in display order: with ``show_all``, each
    owned lock right after its owner; otherwise without the hidden ones."""
    if not show_all:
        return [o for o in objs if not o.hidden]
    owned: dict[str, list[ObjectInfo]] = {}
    for o in objs:
        if o.owned and o.owner is not None:
            owned.setdefault(o.owner, []).append(o)
    out = []
    for o in objs:
        if o.owned and o.owner is not None:
            continue
        out.append(o)
        out.extend(owned.get(o.name, ()))
    return out


def _ls_state(o: ObjectInfo, by_name: Mapping[str, ObjectInfo], show_all: bool) -> str:
    s = state_text(o)
    lock = o.details.get("lock")
    if isinstance(lock, str) and lock:
        lk = by_name.get(lock)
        if lk is not None and lk.owner == o.name and not show_all:
            s += f", lock: {state_text(lk)}"  # its own lock, not listed: its state here
        else:
            s += f", lock {lock}"
    if show_all and o.internal:
        s += " (interlock's own)"
    return s


def _hidden_note(n: int) -> str:
    return (f"({n} of interlock's own object{'s' if n != 1 else ''} not shown: its tables and "
            "the locks of Values, Arrays and Conditions; `interlock ls --all` shows them)")


def cmd_ls(args: argparse.Namespace) -> int:
    objs = _registry.list_objects()
    shown = visible(objs, args.all)
    if args.json:
        _print_json([o.to_dict() for o in shown])
        return 0
    hidden = len(objs) - len(shown)
    if not shown:
        print(_nothing() if not hidden else
              f"no interlock objects of yours; {_hidden_note(hidden)}")
        return 0
    by_name = {o.name: o for o in objs}
    rows = [
        (("└ " if args.all and o.owned and o.owner else "") + o.name, o.kind, creator_text(o),
         f"{len(o.live_users)}/{len(o.users)}", fmt_size(o.size) if o.size else "-",
         _ls_state(o, by_name, args.all))
        for o in shown
    ]
    print(table(("NAME", "KIND", "CREATOR", "USERS", "SIZE", "STATE"), rows))
    if hidden:
        print(_hidden_note(hidden))
    return 0


# ------------------------------------------------------------------ inspect
def _detail_lines(details: Mapping[str, Any], indent: str) -> list[str]:
    if not details:
        return []
    w = max(len(k) for k in details)
    out = []
    for k, v in details.items():
        if isinstance(v, Mapping):
            inner = ", ".join(f"{ik}={iv}" for ik, iv in v.items())
            out.append(f"{indent}{k.ljust(w)}  {inner}")
        else:
            out.append(f"{indent}{k.ljust(w)}  {v}")
    return out


def render_inspect(o: ObjectInfo, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"{o.name}  ({o.kind})"]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<10}  {value}")

    row("path", o.path)
    if o.problem:
        row("problem", o.problem)
        return "\n".join(lines)
    row("size", f"{fmt_size(o.size)} ({o.size} bytes)")
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(o.created))
    row("created", f"{created}, {fmt_age(_registry.age(o, now))} ago, by pid {creator_text(o)}")
    users = ", ".join(
        f"{u.pid}" + (f" x{u.refs}" if u.refs > 1 else "") + ("" if u.alive else " (dead)")
        for u in o.users
    ) or "none"
    row("users", f"{len(o.live_users)} live of {len(o.users)}: {users}")
    row("state", state_text(o) or "-")
    if o.kind in ("Value", "Array"):
        lines.append(f"  {'':<10}  (a snapshot, read without taking the lock: a writer may be "
                     "mid-update)")
    if o.owner is not None:
        row("owner", f"{o.owner} (this is its lock; `ls` shows it in {o.owner}'s row)")
    elif o.owned:
        row("owner", "made by a Value, Array or Condition that is gone")
    if o.internal:
        row("internal", "interlock's own bookkeeping (`ls` shows it with --all only)")
    row("holders", "; ".join(holder_text(h) for h in o.holders) or "none")
    if any(h.acquired_at is None for h in o.holders):
        lines.append(f"  {'':<10}  (where acquired: not recorded; acquisition tracking is off)")
    row("waiters", f"{o.waiters}  (threads blocked on it now)")
    if o.counters:
        row("counters", ", ".join(f"{k} {v}" for k, v in o.counters.items())
            + "  (totals since creation, modulo 2**32)")
    if o.details:
        lines.append("  details")
        lines.extend(_detail_lines(o.details, "    "))
        notes = [(k, DETAIL_NOTES[k]) for k in o.details if k in DETAIL_NOTES]
        if notes:
            w = max(len(k) for k, _ in notes)
            lines.append("  where")
            lines.extend(f"    {k.ljust(w)}  {text}" for k, text in notes)
    return "\n".join(lines)


#: What the less obvious detail fields count (printed under `inspect`'s details).
DETAIL_NOTES = {
    "acquisitions": "acquires that succeeded, in total",
    "contentions": "acquires that found it held and had to wait, in total (one per "
                   "acquire, however long it waited; not the threads waiting now)",
    "timeouts": "acquires that gave up (timeout), in total",
    "owner_deaths": "times a holder died holding it and the next acquirer took it over",
    "recovered": "units or holds taken back from processes that died",
    "producers": "attached processes that have put at least once",
    "consumers": "attached processes that have got at least once",
    "put_total_mod_2_32": "items put since creation (wraps at 2**32)",
    "got_total_mod_2_32": "items got since creation (wraps at 2**32)",
}


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        o = _registry.inspect(args.name)
    except NoSuchObject as e:
        print(f"interlock: {e}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(o.to_dict())
    else:
        print(render_inspect(o))
    return 0


# ---------------------------------------------------------------------- top
class RateMeter:
    """Per-second rates of each object's counters, from one refresh to the next.

    An object is identified by name *and* creation time, so that a name
    reused by a new object starts afresh instead of showing a bogus rate."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, float], tuple[float, Mapping[str, int]]] = {}

    def update(self, objs: Sequence[ObjectInfo], now: float) -> dict[str, dict[str, float]]:
        rates: dict[str, dict[str, float]] = {}
        seen = {}
        for o in objs:
            key = (o.name, o.created)
            seen[key] = (now, o.counters)
            prev = self._last.get(key)
            if prev is None or now <= prev[0]:
                continue
            dt = now - prev[0]
            rates[o.name] = {
                k: ((v - prev[1][k]) % COUNT_MOD) / dt for k, v in o.counters.items() if k in prev[1]
            }
        self._last = seen
        return rates


def render_top(objs: Sequence[ObjectInfo], rates: Mapping[str, Mapping[str, float]],
               interval: float, now: float) -> str:
    head = (f"interlock top  {time.strftime('%H:%M:%S', time.localtime(now))}  "
            f"{len(objs)} object{'s' if len(objs) != 1 else ''}, every {interval:g} s "
            "(Ctrl-C quits)")
    if not objs:
        return head + "\n\n" + _nothing()
    rows = []
    for o in objs:
        r = rates.get(o.name)
        if o.counters:
            rate = ", ".join(
                f"{k} {fmt_rate(r[k]) if r and k in r else '-'}" for k in o.counters
            )
        else:
            rate = ""
        rows.append((o.name, o.kind, state_text(o), rate,
                     ", ".join(holder_text(h) for h in o.holders) or "-", str(o.waiters)))
    return head + "\n\n" + table(("NAME", "KIND", "STATE", "RATES", "HOLDERS", "WAITERS"), rows)


def cmd_top(args: argparse.Namespace) -> int:
    meter = RateMeter()
    clear = sys.stdout.isatty() and not args.json
    n = 0
    try:
        while True:
            now = time.time()
            objs = visible(_registry.list_objects(), args.all)
            rates = meter.update(objs, time.monotonic())
            if args.json:
                docs = []
                for o in objs:
                    d = o.to_dict()
                    d["rates"] = rates.get(o.name)
                    docs.append(d)
                _print_json({"time": now, "interval": args.interval, "objects": docs})
            else:
                frame = render_top(objs, rates, args.interval, now)
                sys.stdout.write((CLEAR if clear else ("\n" if n else "")) + frame + "\n")
            sys.stdout.flush()
            n += 1
            if args.iterations and n >= args.iterations:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        if not args.json:
            sys.stdout.write("\n")
        return 0


# -------------------------------------------------------------------- clean
def _seg_dict(s: _segment.SegmentInfo, removed: bool | None) -> dict[str, Any]:
    return {"name": s.name, "path": s.path, "kind": s.kind, "size": s.size,
            "creator_pid": s.creator_pid, "dead_users": list(s.users), "removed": removed}


def _remove(segs: Sequence[_segment.SegmentInfo]) -> set[str]:
    """Remove these dead entries (``_segment.remove_dead``: a segment under
    its meta lock, so one that a process attached to meanwhile is kept; only
    files of ours, checked on the descriptor)."""
    return {s.path for s in segs if _segment.remove_dead(s)}


def cmd_clean(args: argparse.Namespace) -> int:
    dead = _segment.clean(remove=False)
    if args.names:
        wanted = set(args.names)
        dead = [s for s in dead if s.name in wanted]
    removed_paths: set[str] = set()
    if args.remove and dead:
        if args.names:
            removed_paths = _remove(dead)
        else:
            removed_paths = {s.path for s in _segment.clean(remove=True)}
    if args.json:
        _print_json({
            "remove": bool(args.remove),
            "segments": [_seg_dict(s, (s.path in removed_paths) if args.remove else None)
                         for s in dead],
        })
        return 0
    if not dead:
        if args.names:
            print("nothing to clean: none of these names is a segment whose processes are all gone")
        else:
            print("nothing to clean: every interlock segment has a live process")
        return 0
    rows = []
    for s in dead:
        name = s.name if s.kind != "temp" else f"{s.name} (unfinished creation)"
        users = ", ".join(map(str, s.users)) or "-"
        row = [name, s.kind, fmt_size(s.size) if s.size else "-", str(s.creator_pid or "?"), users]
        if args.remove:
            row.append("removed" if s.path in removed_paths else
                       "kept (a live process attached meanwhile)")
        rows.append(row)
    header = ["NAME", "KIND", "SIZE", "CREATOR", "DEAD USERS"]
    if args.remove:
        header.append("RESULT")
        n = len(removed_paths)
        print(f"removed {n} segment{'s' if n != 1 else ''} whose processes were all gone:")
    else:
        n = len(dead)
        print(f"{n} segment{'s' if n != 1 else ''} whose processes are all gone:")
    print(table(header, rows))
    if not args.remove:
        hint = " ".join(["interlock clean", *args.names, "--remove"])
        print(f"\nremove them with `{hint}`")
    return 0


# ------------------------------------------------------------------ parsers
def add_parsers(sub: Any) -> None:
    """Register ls, inspect, top and clean on an argparse subparsers object."""

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def all_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("-a", "--all", action="store_true",
                       help="also interlock's own objects: its tables, and the locks that "
                            "Values, Arrays and Conditions made for themselves")

    p = sub.add_parser("ls", help="list live interlock objects",
                       description="List this user's interlock objects, with their state.",
                       epilog=LS_LEGEND, formatter_class=argparse.RawDescriptionHelpFormatter)
    all_flag(p)
    json_flag(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="show one object in detail",
                       description="Show every fact about one interlock object.")
    p.add_argument("name", metavar="NAME")
    json_flag(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("top", help="live view of queues and locks",
                       description="Refreshing view of every object: state, rates, holders, "
                                   "waiters. Ctrl-C quits.")
    # -d and -n as in procps top
    p.add_argument("-d", "--interval", type=_positive, default=1.0, metavar="SECONDS",
                   help="seconds between refreshes (default 1)")
    p.add_argument("-n", "--iterations", type=int, default=0, metavar="N",
                   help="stop after N refreshes (default: until Ctrl-C)")
    all_flag(p)
    json_flag(p)
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("clean", help="list (or remove) segments whose processes are all gone",
                       description="List the segments whose attached processes have all died "
                                   "(SIGKILL never detaches); --remove removes them.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="only these objects (default: every one)")
    p.add_argument("--remove", action="store_true", help="remove them")
    json_flag(p)
    p.set_defaults(func=cmd_clean)


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return v
