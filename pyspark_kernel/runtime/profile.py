"""Where a start's time goes: each step of the kernel's start (and its warm-up) with the seconds
it took, for `%spark status` and `make bench`. The first row is the time from the kernel
process's own start to the runtime's: Python and ipykernel, before any Spark."""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

BEFORE_RUNTIME = "Python and ipykernel, before the runtime"


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            started = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22, after the command's name
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        log.debug("reading this process's age", exc_info=True)
        return None


class StartProfile:
    """Steps in order, each timed from its mark to the next one (or to end())."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.steps = []  # [(step, seconds)] of the steps that have ended
        self.current = None  # (step, when it began)

    def mark(self, step: str | None) -> None:
        now = self.clock()
        if self.current is not None:
            self.steps.append((self.current[0], now - self.current[1]))
        self.current = (step, now) if step is not None else None

    def end(self) -> None:
        self.mark(None)

    def add(self, step: str, seconds: float | None) -> None:
        if seconds is not None:
            self.steps.append((step, seconds))

    def lines(self) -> list[str]:
        return [f"{seconds:6.2f} s  {step}" for step, seconds in self.steps]


def duration(seconds: float) -> str:
    """A time span as `%spark status` shows it: 2 h 5 min, 3 min 20 s, 42 s."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
