"""A one-line progress display for long sweeps: points done, points/s, ETA,
feasible count and current Pareto-front size. Redrawn in place on a terminal;
elsewhere (logs, CI) a plain line every few seconds."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, stream=None, interval_s: float | None = None):
        self.total, self.stream = total, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval_s if interval_s is not None else (0.2 if self.tty else 5.0)
        self.start = time.perf_counter()
        self.last = 0.0
        self.done = self.feasible = self.front = self.reused = 0
        self.drawn = None

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        computed = self.done - self.reused
        rate = computed / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        reused = f", {self.reused} from the store" if self.reused else ""
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} points{reused}  "
                f"{rate:.1f} points/s  ETA {eta}  feasible {self.feasible}  front {self.front}")

    def due(self) -> bool:
        """Whether a redraw is due (callers skip computing figures otherwise)."""
        return time.perf_counter() - self.last >= self.interval

    def update(self, done: int, feasible: int, front: int, reused: int = 0, force: bool = False) -> None:
        state = (done, feasible, front, reused)
        if force and not self.tty and state == self.drawn:
            return  # a log already has this line
        self.done, self.feasible, self.front, self.reused = state
        now = time.perf_counter()
        if not force and now - self.last < self.interval:
            return
        self.drawn = state
        self.last = now
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
