"""idle_timeout: stop a session that nothing has used for that long, so that a notebook left open
does not hold a cluster's executors, or its YARN or standalone application. The next use of Spark
starts a new session with the same configuration, and says so in one line (see notebook)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5  # seconds between two looks, at most


class IdleWatch:
    """Looks every few seconds whether the session is in use (``in_use``: a cell, a job or a
    streaming query runs, or there is no session to stop) and calls ``stop`` once it has not been
    for ``timeout`` seconds, counted from the later of the first quiet look and ``last_used()``
    (when a cell last began or ended: short cells between two looks count too)."""

    def __init__(self, timeout: float, in_use: Callable[[], bool], stop: Callable[[], bool],
                 last_used: Callable[[], float] = lambda: 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.in_use = in_use
        self.stop = stop
        self.last_used = last_used
        self.clock = clock
        self.quiet_since = None

    def check(self) -> bool:
        """One look; whether it stopped the session."""
        now = self.clock()
        if self.in_use():
            self.quiet_since = None
            return False
        if self.quiet_since is None:
            self.quiet_since = now
        if now - max(self.quiet_since, self.last_used()) < self.timeout:
            return False
        self.quiet_since = None
        return bool(self.stop())

    def begin(self) -> None:
        threading.Thread(target=self.run, name="pyspark-kernel-idle", daemon=True).start()

    def run(self) -> None:
        """Look for the kernel's life (the thread is a daemon)."""
        interval = min(CHECK_INTERVAL, max(self.timeout / 4, 0.5))
        while True:
            time.sleep(interval)
            try:
                self.check()
            except Exception:  # a JVM that went away meanwhile: the next cell says so, not this thread
                log.debug("looking whether the session is idle", exc_info=True)
                self.quiet_since = None
