"""idle_timeout: stop a session that nothing has used for that long, so that a notebook left open
does not hold a cluster's executors, or its YARN or standalone application. The next use of Spark
starts a new session with the same configuration, and says so in one line (see notebook)."""

import threading
import time

CHECK_INTERVAL = 5  # seconds between two looks, at most


class IdleWatch:
    """Looks every few seconds whether the session is in use (``in_use``: a cell, a job or a
    streaming query runs, or there is no session to stop) and calls ``stop`` once it has not been
    for ``timeout`` seconds, counted from the later of the first quiet look and ``last_used()``
    (when a cell last began or ended: short cells between two looks count too)."""

    def __init__(self, timeout, in_use, stop, last_used=lambda: 0.0, clock=time.monotonic):
        self.timeout = timeout
        self.in_use = in_use
        self.stop = stop
        self.last_used = last_used
        self.clock = clock
        self.quiet_since = None
        self.ended = threading.Event()

    def check(self):
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

    def begin(self):
        threading.Thread(target=self.run, name="pyspark-kernel-idle", daemon=True).start()

    def run(self):
        interval = min(CHECK_INTERVAL, max(self.timeout / 4, 0.5))
        while not self.ended.wait(interval):
            try:
                self.check()
            except Exception:  # a JVM that went away meanwhile: the next cell says so, not this thread
                self.quiet_since = None
