"""A small progress board: one line per pipeline stage, redrawn in place.

Each line shows the stage name, items done, the rate over the last few
seconds, the workers alive and how full the stage's input queue is::

    fetch   [####------]  1204 done   388.1/s  workers 4/4  queue  6/8
    save    [##--------]  1180 done   380.9/s  workers 2/2  queue  8/8

No dependency: plain ANSI (cursor up, erase line), written to a stream that
is a terminal. On anything else (a pipe, a file, a CI log) the board writes
nothing at all, so that scripts and tests see clean output.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import IO, Sequence

__all__ = ["StageProgress", "ProgressBoard"]


@dataclass(frozen=True)
class StageProgress:
    """One stage's numbers at one instant."""

    name: str
    done: int
    workers_alive: int
    workers: int
    queue_depth: int
    queue_maxsize: int  # 0: unbounded


class ProgressBoard:
    """Redraws one line per stage on ``stream`` (default: stderr).

    ``enabled=None`` draws only if the stream is a TTY; True or False force it.
    """

    WIDTH = 10  # characters of the fill bar
    RATE_WINDOW = 3.0  # seconds of history for the rate

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None,
                 interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = bool(self.stream.isatty())
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.interval = interval
        self._lines = 0  # lines drawn last time (to move the cursor back up)
        self._last = 0.0
        self._history: dict[str, deque[tuple[float, int]]] = {}

    def _rate(self, name: str, now: float, done: int) -> float:
        h = self._history.setdefault(name, deque())
        h.append((now, done))
        while len(h) > 2 and now - h[0][0] > self.RATE_WINDOW:
            h.popleft()
        t0, d0 = h[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0

    def format(self, stages: Sequence[StageProgress], now: float | None = None) -> list[str]:
        """The lines for these numbers (also used by tests and the demos)."""
        now = time.monotonic() if now is None else now
        width = max((len(s.name) for s in stages), default=0)
        lines = []
        for s in stages:
            rate = self._rate(s.name, now, s.done)
            if s.queue_maxsize:
                fill = min(self.WIDTH, round(self.WIDTH * s.queue_depth / s.queue_maxsize))
                bar = "#" * fill + "-" * (self.WIDTH - fill)
                queue = f"{s.queue_depth:>3}/{s.queue_maxsize}"
            else:
                bar = "?" * self.WIDTH
                queue = f"{s.queue_depth:>3}"
            lines.append(f"{s.name:<{width}} [{bar}] {s.done:>7} done {rate:>9.1f}/s  "
                         f"workers {s.workers_alive}/{s.workers}  queue {queue}")
        return lines

    def update(self, stages: Sequence[StageProgress], force: bool = False) -> None:
        """Redraw, at most once per ``interval`` unless ``force``."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        lines = self.format(stages, now)
        out = []
        if self._lines:
            out.append(f"\x1b[{self._lines}F")  # to the start of the first line drawn
        for line in lines:
            out.append("\x1b[2K" + line + "\n")
        self._lines = len(lines)
        try:
            self.stream.write("".join(out))
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.enabled = False

    def close(self, stages: Sequence[StageProgress] | None = None) -> None:
        """Draw the final numbers (if any) and leave the cursor below them."""
        if stages is not None:
            self.update(stages, force=True)
        self._lines = 0
