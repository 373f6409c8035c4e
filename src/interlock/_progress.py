"""Pipeline progress: per stage done/total, rate and ETA, and a total line.

On a terminal the board is redrawn in place (ANSI: cursor up, erase line),
at most every ``interval`` seconds::

    parse  [######----]  1800/3000  60%   412.3/s  ETA 0:03  workers 4/4  queue 6/8
    score  [#####-----]  1650/3000  55%   398.0/s  ETA 0:03  workers 2/2  queue 8/8
    total  [#####-----]  1650/3000  55%   398.0/s  ETA 0:03  elapsed 0:04

and its last drawing stays on the screen, with average rates and the total
line saying how long the run took::

    parse  [##########]  3000/3000 100%   702.1/s  workers 0/4  queue 0/8
    score  [##########]  3000/3000 100%   702.1/s  workers 0/2  queue 0/8
    total  [##########]  3000/3000 100%   702.1/s  done in 4.3 s

When the stream is not a terminal (a pipe, a file, a CI log), ANSI
redrawing would fill the log with escape codes: the board writes one plain
line every ``log_interval`` seconds instead (default 5), and a closing line
if it wrote any, so a run shorter than ``log_interval`` stays silent::

    progress 0:05  parse 1800/3000 60% 412.3/s ETA 0:03 | score 1650/3000 55% 398.0/s ETA 0:03
    progress done in 8.0 s: parse 3000, score 3000 (375.0/s)

Disabled, it writes nothing.

Totals: a stage's total is the number of items it will get, known when the
pipeline knows its input's length (``len(source)``, or ``total=``) and no
stage before it is a generator stage (those yield any number of results per
item). Without a total, a line shows what is known: done and rate.

The rate is measured over the last ``RATE_WINDOW`` seconds (it follows a
stage that speeds up or slows down); the ETA is what remains at that rate;
the closing line gives the average rate over the whole run.

No dependency (docs/design/pipeline.md says why not tqdm or rich): the
numbers are also available to programs (``Pipeline.stats()``).
"""
from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import IO, Callable, Sequence

__all__ = ["StageProgress", "ProgressBoard", "fmt_duration", "fmt_took", "fmt_rate"]


@dataclass(frozen=True)
class StageProgress:
    """One stage's numbers at one instant."""

    name: str
    done: int  # items this stage has finished
    workers_alive: int
    workers: int
    queue_depth: int  # messages in the stage's input queue now
    queue_maxsize: int  # 0: unbounded
    total: int | None = None  # items the stage will get, when known


def fmt_duration(seconds: float) -> str:
    """0:04, 12:30, 1:02:03."""
    s = max(0, int(seconds + 0.5))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_took(seconds: float) -> str:
    """How long a run took: 0.4 s, 12.3 s, then 1:02, 1:02:03."""
    return f"{seconds:.1f} s" if seconds < 60 else fmt_duration(seconds)


def fmt_rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f}M/s"
    if per_s >= 1e4:
        return f"{per_s / 1e3:.1f}k/s"
    return f"{per_s:.1f}/s"


class ProgressBoard:
    """Progress of a pipeline's stages, on ``stream`` (default: stderr).

    - ``enabled``: False writes nothing; None or True write (in place on a
      terminal, plain lines otherwise).
    - ``live``: redraw in place; default: whether the stream is a terminal.
    - ``interval``: seconds between redraws in place; ``log_interval``:
      seconds between plain lines.
    - ``clock``: monotonic seconds (tests pass a fake one).
    """

    WIDTH = 10  # characters of a bar
    RATE_WINDOW = 3.0  # seconds of history for the rate

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None,
                 interval: float = 0.1, *, log_interval: float = 5.0, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            try:
                live = bool(self.stream.isatty())
            except (AttributeError, ValueError):
                live = False
        self.enabled = enabled is not False
        self.live = live
        self.interval = interval
        self.log_interval = log_interval
        self.clock = clock
        self._t0: float | None = None
        self._lines = 0  # lines drawn last time (to move the cursor back up)
        self._last: float | None = None  # when we last wrote
        self._wrote = False
        self._history: dict[str, deque[tuple[float, int]]] = {}

    # ------------------------------------------------------------ numbers
    def start(self) -> None:
        """The run starts now (elapsed time counts from here)."""
        self._t0 = self.clock()
        self._last = self._t0

    def _elapsed(self, now: float) -> float:
        if self._t0 is None:
            self._t0 = now
        return max(0.0, now - self._t0)

    def _rate(self, name: str, now: float, done: int) -> float:
        h = self._history.setdefault(name, deque())
        if not h and self._t0 is not None and now > self._t0:
            h.append((self._t0, 0))  # every stage starts at 0 done
        if not h or now > h[-1][0]:
            h.append((now, done))
        while len(h) > 2 and now - h[1][0] >= self.RATE_WINDOW:
            h.popleft()
        t0, d0 = h[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0

    def _numbers(self, stages: Sequence[StageProgress], now: float,
                 final: bool) -> list[tuple[StageProgress, float]]:
        """Each stage with its rate, then the total line's (as a stage)."""
        elapsed = self._elapsed(now)
        rows = []
        for s in stages:
            rate = s.done / elapsed if final and elapsed > 0 else self._rate(s.name, now, s.done)
            rows.append((s, rate))
        if stages:
            last, rate = rows[-1]
            rows.append((StageProgress("total", last.done, 0, 0, 0, 0, last.total), rate))
        return rows

    # ------------------------------------------------------------ text
    def _bar(self, done: int, total: int) -> str:
        fill = min(self.WIDTH, self.WIDTH * done // total) if total > 0 else self.WIDTH
        return "[" + "#" * fill + "-" * (self.WIDTH - fill) + "]"

    def _eta(self, s: StageProgress, rate: float) -> str:
        assert s.total is not None
        left = max(0, s.total - s.done)
        if left == 0:
            return "ETA 0:00"
        return f"ETA {fmt_duration(left / rate)}" if rate > 0 else "ETA ?"

    def format(self, stages: Sequence[StageProgress], now: float | None = None,
               final: bool = False, outcome: str = "done in") -> list[str]:
        """The lines drawn on a terminal for these numbers (one per stage,
        then the total line; ``final``: the closing drawing, whose total line
        ends with ``outcome`` and the elapsed time)."""
        now = self.clock() if now is None else now
        rows = self._numbers(stages, now, final)
        if not rows:
            return []
        width = max(len(s.name) for s, _ in rows)
        digits = max(len(str(s.total if s.total is not None else s.done)) for s, _ in rows)
        lines = []
        for i, (s, rate) in enumerate(rows):
            is_total = i == len(rows) - 1
            if s.total is not None:
                pct = min(100, 100 * s.done // s.total) if s.total > 0 else 100
                head = (f"{s.name:<{width}}  {self._bar(s.done, s.total)}  "
                        f"{s.done:>{digits}}/{s.total}  {pct:>3}%  {fmt_rate(rate):>9}")
                tail = "" if final else f"  {self._eta(s, rate)}"
            else:
                head = f"{s.name:<{width}}  {s.done:>{digits}} done  {fmt_rate(rate):>9}"
                tail = ""
            if is_total:
                elapsed = self._elapsed(now)
                tail += (f"  {outcome} {fmt_took(elapsed)}" if final
                         else f"  elapsed {fmt_duration(elapsed)}")
            else:
                queue = (f"{s.queue_depth}/{s.queue_maxsize}" if s.queue_maxsize
                         else str(s.queue_depth))
                tail += f"  workers {s.workers_alive}/{s.workers}  queue {queue}"
            lines.append(head + tail)
        return lines

    def format_plain(self, stages: Sequence[StageProgress], now: float | None = None,
                     final: bool = False, outcome: str = "done in") -> str:
        """The one line written when the stream is not a terminal."""
        now = self.clock() if now is None else now
        rows = self._numbers(stages, now, final)[:-1]
        elapsed = self._elapsed(now)
        if final:
            done = ", ".join(f"{s.name} {s.done}" for s, _ in rows)
            avg = f" ({fmt_rate(rows[-1][1])})" if rows else ""
            return f"progress {outcome} {fmt_took(elapsed)}: {done}{avg}"
        parts = []
        for s, rate in rows:
            if s.total is not None:
                pct = min(100, 100 * s.done // s.total) if s.total > 0 else 100
                parts.append(f"{s.name} {s.done}/{s.total} {pct}% {fmt_rate(rate)} "
                             f"{self._eta(s, rate)}")
            else:
                parts.append(f"{s.name} {s.done} done {fmt_rate(rate)}")
        return f"progress {fmt_duration(elapsed)}  " + " | ".join(parts)

    # ------------------------------------------------------------ output
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the stream went away: stop writing
            self.enabled = False

    def update(self, stages: Sequence[StageProgress], force: bool = False) -> None:
        """Redraw (a terminal) at most every ``interval``, or write a plain
        line at most every ``log_interval``; ``force``: now."""
        if not self.enabled:
            return
        now = self.clock()
        if self._t0 is None:
            self.start()
        assert self._last is not None
        if self.live:
            if not force and self._wrote and now - self._last < self.interval:
                self._rate_only(stages, now)
                return
            self._draw(self.format(stages, now))
        else:
            if not force and now - self._last < self.log_interval:
                self._rate_only(stages, now)
                return
            self._write(self.format_plain(stages, now) + "\n")
        self._last = now
        self._wrote = True

    def _rate_only(self, stages: Sequence[StageProgress], now: float) -> None:
        # Keep the rate history fed between drawings (cheap).
        for s in stages:
            self._rate(s.name, now, s.done)

    def _draw(self, lines: list[str]) -> None:
        out = []
        if self._lines:
            out.append(f"\x1b[{self._lines}F")  # to the start of the first line drawn
        out.extend("\x1b[2K" + line + "\n" for line in lines)
        self._lines = len(lines)
        self._write("".join(out))

    def close(self, stages: Sequence[StageProgress] | None = None,
              outcome: str = "done in") -> None:
        """The final numbers: on a terminal the last drawing, whose total line
        says "done in" (``outcome``: "stopped after" for an aborted run);
        otherwise a closing plain line if any line was written (a run
        shorter than ``log_interval`` stays silent)."""
        if self.enabled and stages is not None:
            now = self.clock()
            if self.live:
                self._draw(self.format(stages, now, final=True, outcome=outcome))
            elif self._wrote:
                self._write(self.format_plain(stages, now, final=True, outcome=outcome) + "\n")
        self._lines = 0
        self.enabled = False  # closed: later updates write nothing
