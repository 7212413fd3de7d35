"""One attempt to start the kernel's Spark session: its clock, its current step, how it ended."""

from __future__ import annotations

import threading
import time

from . import jvm
from .profile import StartProfile


class StartAttempt:
    """What a start is doing and how it went, for a waiting cell, `%spark status` and the timeout
    message. The runtime's first attempt is a blank one: nothing started, ``done`` not set."""

    def __init__(self, started_at: float | None = None) -> None:
        self.started_at = started_at
        self.ready_at: float | None = None
        self.step: str | None = None  # what the start is doing now
        self.error: BaseException | None = None  # why it failed
        self.timed_out = False  # start_timeout passed (or a restart cancelled it)
        self.cancelled = False  # a restart cancelled it
        self.proc = None  # the driver JVM's process, from the moment it exists (a dedicated driver's)
        self.profile = StartProfile()  # its steps and their times, then the warm-up's
        self.notices: list[str] = []  # one line each, shown after the session's banner (runtime.limits)
        self.done = threading.Event()

    def mark(self, step: str | None) -> None:
        """The next step: shown to a waiting cell, named by a timeout, timed in the profile."""
        self.step = step
        self.profile.mark(step)

    def elapsed(self) -> float:
        """Seconds the start has taken (so far)."""
        if self.started_at is None:
            return 0.0
        return (self.ready_at or time.monotonic()) - self.started_at

    def give_up(self, cancelled: bool = False) -> None:
        """The clock ran out (or a restart cancels the start): stop the JVM, even while it launches."""
        if not self.done.is_set():
            self.timed_out, self.cancelled = True, cancelled
            jvm.kill_jvm(self.proc)

    def launched(self, proc) -> None:
        """The driver JVM exists: the attempt's to kill if its clock has already run out."""
        self.proc = proc
        if self.timed_out:
            jvm.kill_jvm(proc)
