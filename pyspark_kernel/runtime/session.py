"""The kernel's Spark session, from start to stop: one at a time, started in the background, on
first use or before the kernel answers, restarted on request, and ended when its driver dies. How
the driver runs (a JVM of the kernel's own, a Spark Connect server, the shared driver) is the
driver's business (runtime.drivers); when the warm-up runs, runtime.warming's.

States (runtime.state): idle -> starting -> ready | failed; ready -> stopped (the notebook called
spark.stop(), or idle_timeout passed without a job), dead (the driver exited) or stopping (the
kernel exits); stopped -> starting on the next use of Spark; on restart, any state but starting
and stopping -> idle, then starting. A start is judged by what happens, not by a short clock: it
fails at once when the JVM exits or a master cannot be reached, and otherwise only after
start_timeout (a busy machine is slow, not broken).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import Any, Callable

from . import cache, jvm, pipwatch
from .attempt import StartAttempt
from .diagnostics import SparkDiedError, SparkStartError, died_message, explain, with_jvm_output
from .choice import choose
from .guard import HeldInterrupt
from .options import clear_unset, read_conf, read_options
from .profile import BEFORE_RUNTIME, StartProfile, process_age
from .state import State, allowed
from .warming import WarmUp

log = logging.getLogger(__name__)


class SparkRuntime:
    def __init__(self, environ: dict | None = None) -> None:
        if environ is None:
            clear_unset(os.environ)  # before anything reads them, pyspark and spark-submit included
        self.environ = dict(os.environ if environ is None else environ)
        self.options = read_options(self.environ)
        self.kernel_conf = read_conf(self.environ)
        self.conf = dict(self.kernel_conf)  # the kernel's, plus the last %spark restart's --conf
        self.master = self.conf.get("spark.master", "local[*]")
        self.scratch = jvm.make_scratch(self.environ)
        # The state's lock (see transition); reentrant, so that a check and a transition can
        # share it.
        self.lock = threading.RLock()
        self._state = State.IDLE
        self.attempt = StartAttempt()  # the current (or last) start; a blank one before the first
        self.born = process_age()  # seconds the kernel process ran before the runtime existed
        self.generation = 0  # one more for each session started
        # Set once the start thread has imported pyspark: a cell's own `from pyspark.sql import`
        # at the same moment can meet it inside pyspark.sql's import cycle, and Python then gives
        # one of them the partly initialised module ("cannot import name ...").
        self.imported = threading.Event()
        self.imported.set()  # cleared by a start that imports pyspark
        self.local = threading.local()  # .creating: this thread is inside the kernel's own start
        self.session = self.context = None  # the ready session's, else None (a Connect session has no context)
        self.error = None  # why there is no session: the start's failure, the driver's death
        self.held = HeldInterrupt()
        self.watchdog = None
        self.listeners = []  # called with the runtime when a session ends (stop, death, restart)
        self.stopped_by = None  # "user" (spark.stop()) or "idle" (idle_timeout), while stopped
        self.pruned = threading.Event()  # set once this kernel's start has pruned the cache
        self.pip = pipwatch.Watch(sys.prefix)  # what %pip changed since the executors got the environment
        self.driver = choose(self)
        self.warm_up = WarmUp(self)

    def begin(self) -> None:
        self.watchdog = jvm.start_watchdog(self.scratch)
        atexit.register(self.shutdown)

    # -- the state

    @property
    def state(self) -> State:
        return self._state

    def transition(self, to: State, **changes: Any) -> bool:
        """Move to ``to`` if it may follow the current state (state.ALLOWED); whether it moved.
        ``changes`` are the runtime's attributes that go with the new state (its error, session,
        who stopped it): set under the same lock, just before it, so that whoever sees the new
        state sees them too."""
        with self.lock:
            if not allowed(self._state, to):
                return False
            for name, value in changes.items():
                setattr(self, name, value)
            self._state = to
            return True

    @property
    def done(self) -> threading.Event:
        """Set once the current start has ended, either way."""
        return self.attempt.done

    @property
    def profile(self) -> StartProfile:
        """The last start's steps and their times, then its warm-up's."""
        return self.attempt.profile

    @property
    def log(self) -> str:
        """The driver's log: %spark log shows it, failure messages quote it."""
        return self.driver.log_file

    # -- starting

    def start(self) -> None:
        """Start a session here, unless one is already started or starting."""
        if self.claim_start():
            self.run_start()

    def start_in_background(self) -> None:
        if self.claim_start():  # here, so that `done` is cleared before the caller waits on it
            threading.Thread(target=self.run_start, name="pyspark-kernel-start", daemon=True).start()

    def claim_start(self) -> bool:
        with self.lock:
            if not self.transition(State.STARTING, attempt=StartAttempt(time.monotonic()), error=None):
                return False
            if "pyspark.sql" not in sys.modules:
                self.imported.clear()  # this start imports pyspark: cells wait for that (notebook)
            return True

    def run_start(self) -> None:
        attempt = self.attempt
        self.local.creating = True
        if self.generation == 0:
            attempt.profile.add(BEFORE_RUNTIME, self.born)
        # The only clock on a start: for one that hangs.
        timer = threading.Timer(self.options["start_timeout"], attempt.give_up)
        timer.daemon = True
        try:
            timer.start()
            session = self.driver.start(attempt)
            context = self.driver.context_of(session)
            self.generation += 1
            attempt.ready_at = time.monotonic()
            self.transition(State.READY, session=session, context=context)
        except BaseException as error:  # noqa: B036, BLE001 - whatever stopped Spark is the user's answer
            attempt.error = error if isinstance(error, SparkStartError) else SparkStartError(self.describe_failure(attempt, error))
            self.transition(State.FAILED, error=attempt.error)
            self.driver.abandon(attempt)
        finally:
            self.local.creating = False
            timer.cancel()
            attempt.profile.end()
            self.imported.set()
            attempt.done.set()
        # In a thread of its own: an eager start runs on the main thread, which must answer now.
        threading.Thread(target=self.after_start, args=(self.state == State.READY,), name="pyspark-kernel-warm-up", daemon=True).start()

    def after_start(self, ready: bool) -> None:
        # The kernel's own: a UDF's PySpark code asks for the active session, and the notebook's
        # entry points must not answer (they would show the banner from here, in no cell).
        self.local.creating = True
        if ready:
            self.warm_up.run()
        prune_cache(self)
        self.attempt.profile.end()

    def mark(self, step: str) -> None:
        """The start's next step: shown to a waiting cell, named by a timeout, timed in the profile."""
        self.attempt.mark(step)

    def creating(self) -> bool:
        return getattr(self.local, "creating", False)

    def elapsed(self) -> float:
        """Seconds the current (or last) start has taken."""
        return self.attempt.elapsed()

    def describe_failure(self, attempt: StartAttempt, error: BaseException) -> str:
        if attempt.cancelled:
            return "Spark did not start: the start was cancelled by %spark restart"
        if attempt.timed_out:
            return with_jvm_output(
                f"Spark did not start within {self.options['start_timeout']:g} s on master {self.master}, while {attempt.step} "
                "(check that the cluster is up and reachable, or raise start_timeout in the kernel's PYSPARK_KERNEL_OPTIONS)", self.log)
        return explain(error, self.log)

    # -- while it runs

    def check_alive(self) -> bool:
        """Whether the session is usable; a driver found dead turns the state to dead."""
        if self.state != State.READY:
            return False
        returncode = self.driver.exit_code()
        if returncode is None:
            return True
        self.died(SparkDiedError(died_message(returncode, self.log)))
        return False

    def died(self, error: Exception, record_anyway: bool = False, provided: Callable[[], bool] = lambda: True) -> None:
        """The driver is gone: a ready session turns dead, with ``error`` as the runtime's error,
        and ends. With ``record_anyway``, ``error`` is the runtime's error in any state (the calls
        of a session that ended before still say why they fail). ``provided`` is asked first,
        under the lock: False when the death is no longer the current driver's."""
        with self.lock:
            if not provided():
                return
            if record_anyway:
                self.error = error
            ended = (self.session, self.context)
            if not self.transition(State.DEAD, error=error, session=None, context=None):
                return
        self.driver.after_death(*ended)
        self.notify(ended)

    def user_stopped(self, stopped: Any) -> None:
        """The notebook stopped the kernel's session or context (spark.stop()): the next use of
        Spark starts a new one."""
        with self.lock:
            if stopped is None or (stopped is not self.context and stopped is not self.session):
                return
            ended = (self.session, self.context)
            if not self.transition(State.STOPPED, stopped_by="user", session=None, context=None):
                return
        self.driver.end(ended[0], stop=False)
        self.notify(ended)

    def stop_idle(self) -> bool:
        """idle_timeout: stop the session as spark.stop() does, which releases its executors and
        its cluster application; the next use of Spark starts a new one. Whether it stopped one."""
        if not self.driver.stops_when_idle:
            return False
        with self.lock:
            ended = (self.session, self.context)
            # Before stop(): not the user's stop.
            if not self.transition(State.STOPPED, stopped_by="idle", session=None, context=None):
                return False
        self.driver.end(ended[0], stop=True)
        self.notify(ended)
        return True

    def notify(self, ended: tuple) -> None:
        """Tell the listeners that the session and context in ``ended`` are gone."""
        for listener in self.listeners:
            try:
                listener(self, ended)
            except Exception:  # a listener's trouble must not break Spark's own state
                log.debug("telling a listener that the session ended", exc_info=True)

    # -- restarting and stopping

    def restart(self, overrides: dict | None = None) -> None:
        """Stop the current session, if any, and start a new one from the kernel's configuration
        plus ``overrides`` (in the background: the caller waits on ``done``)."""
        if self.state == State.STARTING:
            self.attempt.give_up(cancelled=True)
            self.attempt.done.wait()
        ended = self.retire()
        self.warm_up.cell_waits()  # the restarting cell waits: no warm-up
        self.transition(State.IDLE, conf={**self.kernel_conf, **(overrides or {})})
        self.notify(ended)
        self.start_in_background()

    def retire(self) -> tuple:
        """End the current session and let its driver go; the (session, context) that ended."""
        with self.lock:
            ended = (self.session, self.context)
            # Stopped before stop(): the notebook's stop hook must not react.
            stop = ended[0] is not None and self.transition(State.STOPPED)
            self.session = self.context = None
        self.driver.end(ended[0], stop=stop)
        return ended

    def shutdown(self) -> None:
        """At kernel exit: stop Spark gracefully; the watchdog handles any other way out."""
        if self.transition(State.STOPPING):  # the notebook's stop hook must not take it for the user's
            try:
                self.session.stop()
            except Exception:
                log.debug("stopping the session at exit", exc_info=True)
                self.driver.kill()
        self.driver.close()


def prune_cache(runtime: SparkRuntime) -> None:
    """Once per kernel, after its start: keep the cache within its limit (runtime.cache),
    while Spark waits for the first cell anyway."""
    if runtime.pruned.is_set():
        return
    runtime.mark("pruning the cache")
    try:
        cache.prune(runtime.environ, keep=runtime.driver.cache_in_use())
    except Exception:  # a bad limit or an unreadable cache must not cost the session
        log.debug("pruning the cache", exc_info=True)
    finally:
        runtime.pruned.set()
