"""The kernel's Spark in the notebook: `spark` and `sc`, what a cell shows while Spark starts,
the cells' job groups, progress and interrupt, and the sessions a notebook builds itself.

- `spark` and `sc` are stand-ins until the session exists; the first use waits for it (and says
  so), then the notebook's names point at the real objects. When a session ends (spark.stop(), a
  dead JVM, %spark restart), every name bound to it becomes a stand-in again.
- Each cell runs its jobs in a job group of its own (on Spark Connect: under an operation tag of
  its own): interrupting the cell cancels them. The SIGINT handler is the kernel's only while a
  cell runs, as ipykernel's own is.
- A cell that runs Spark jobs shows their progress, from the moment the session is there.
- With idle_timeout, a session that no cell and no job has used for that long is stopped.
- Nothing here raises into a cell that does not use Spark.
"""

from __future__ import annotations

import html
import logging
import shlex
import signal
import threading
import time
from typing import Any

from . import callsite, frames
from .diagnostics import SparkStartError
from .idle import IdleWatch
from .options import shown_value
from .state import State

log = logging.getLogger(__name__)

WAIT_INTERVAL = 1.0  # how often a cell waiting for Spark's start updates its elapsed time
IMPORT_WAIT = 60  # the longest a cell waits for the start thread's import of pyspark
STOPPED_NOTICE = "Spark was stopped (spark.stop()): starting a new session with the kernel's configuration."
STOPPING_NOTICE = "Spark is being stopped (idle_timeout); this cell runs once it has stopped."
IDLE_NOTICE = ("Spark was stopped after {seconds:g} s without a job (idle_timeout), to free what it held: "
               "starting a new session with the kernel's configuration.")
NOTHING_TO_STOP = (State.IDLE, State.STOPPED, State.FAILED, State.DEAD)


class SparkStandIn:
    """Stands for `spark` or `sc` until the session exists; any use waits for it."""

    def __init__(self, notebook, name):
        object.__setattr__(self, "_notebook", notebook)
        object.__setattr__(self, "_name", name)

    def _target(self):
        return self._notebook.resolve(self._name)

    def __getattr__(self, attribute):
        if self._notebook.runtime.state != State.READY:
            if attribute.startswith(("__", "_ipython", "_repr_")):
                # IPython's inspector and display protocols probe these: they must not start Spark.
                raise AttributeError(attribute)
            if attribute == "stop" and self._notebook.runtime.state in NOTHING_TO_STOP:
                return lambda: None  # nothing to stop: spark.stop() at the end of a notebook stays quiet
        return getattr(self._target(), attribute)

    def __setattr__(self, attribute, value):
        setattr(self._target(), attribute, value)

    def __repr__(self):
        return repr(self._target())

    def __dir__(self):
        return dir(self._target()) if self._notebook.runtime.state == State.READY else []


def split_options(options: dict, current: dict, modifiable) -> tuple[dict, dict]:
    """A notebook's session options against the kernel's session: ({key: value} to set now, as
    runtime settings, {key: value} that need a new driver). Options it already has are neither."""
    settable, fixed = {}, {}
    for key, value in options.items():
        if current.get(key) == value:
            continue
        if key != "spark.master" and modifiable(key):
            settable[key] = value
        else:
            fixed[key] = value
    return settable, fixed


def fixed_options_notice(fixed: dict) -> str:
    shown = " ".join(f"{key}={shown_value(key, value)}" for key, value in fixed.items())
    command = " ".join(f"--conf {shlex.quote(f'{key}={shown_value(key, value)}')}" for key, value in fixed.items())
    return f"Using the kernel's Spark session; not applied, as they need a new driver: {shown} (to apply them: %spark restart {command})"


class Notebook:
    def __init__(self, runtime, namespace: dict, shell) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.shell = shell
        self.cell = 0
        self.group = None
        self.progress = None
        self.saved_sigint = []  # the handlers pre_run_cell replaced, one per cell running (a cell can run a cell)
        self.announced = 0  # the session generation whose banner the notebook has seen
        self.grouped = None  # (cell, generation) whose job group is set in the JVM
        self.notice = None  # a line for the next start: why there is a new session
        self.stand_ins_out = False
        self.running = 0  # cells running (a cell can run a cell)
        self.counted = []  # per cell begun: pre_run_cell counted it (an empty cell gets only post_run_cell)
        self.used_at = 0.0  # when a cell last began or ended, for idle_timeout
        self.activity = threading.Lock()  # a cell's start and an idle stop, one at a time
        self.idle = None
        self.explains_death = False  # the driver's death is shown as the runtime's one error (Driver.explain_death)

    def begin(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        frames.register(self.shell)  # a DataFrame value: PySpark's line, then its rows
        callsite.register(self.shell)  # jobs named after the cell and line that ran them
        self.namespace["spark"] = SparkStandIn(self, "spark")
        self.namespace["sc"] = SparkStandIn(self, "sc")
        self.stand_ins_out = True
        self.runtime.listeners.append(self.session_ended)
        self.confine_interrupts()
        if self.runtime.options["idle_timeout"] > 0 and self.runtime.driver.stops_when_idle:
            self.idle = IdleWatch(self.runtime.options["idle_timeout"], self.in_use, self.stop_idle, last_used=lambda: self.used_at)
            self.idle.begin()
        mode = self.runtime.options["init"]
        if mode == "eager":
            previous = signal.getsignal(signal.SIGINT)
            self.runtime.start()
            signal.signal(signal.SIGINT, previous)  # a context made here installs pyspark's handler
        elif mode == "background":
            self.runtime.start_in_background()

    def confine_interrupts(self) -> None:
        """ipykernel puts Python's default SIGINT handler in place while it handles any request,
        not only code. A client that shuts the kernel down interrupts it first (jupyter_client
        does), and on a busy machine that can land while the kernel is still finishing its last
        reply (papermill's closing kernel_info): "KeyboardInterrupt caught in kernel". Outside a
        cell the kernel now ignores the interrupt; pre_run_cell installs the cell's own handler."""
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None or not hasattr(kernel, "pre_handler_hook"):
            return

        def pre_handler_hook():
            if threading.current_thread() is threading.main_thread():
                kernel.saved_sigint_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)

        kernel.pre_handler_hook = pre_handler_hook

    # -- the session, for the notebook

    def session(self) -> Any:
        """The kernel's session, started if need be, waiting (and saying so) while it starts."""
        runtime = self.runtime
        runtime.check_alive()
        if runtime.state in (State.IDLE, State.STOPPED):
            if self.notice:
                print(self.notice, flush=True)
                self.notice = None
            runtime.warm_up.cell_waits()  # this cell pays the first-job cost itself: no warm-up
            runtime.start_in_background()
        if not runtime.done.is_set():
            runtime.warm_up.cell_waits()
            self.show_wait()
        if runtime.state != State.READY:
            error = runtime.error or SparkStartError("Spark is stopping: the kernel is shutting down")
            raise type(error)(str(error)) from None
        self.publish()
        return runtime.session

    def resolve(self, name: str) -> Any:
        refused = self.runtime.driver.context_error() if name == "sc" else None
        if refused is not None:
            raise refused
        session = self.session()
        return session if name == "spark" else session.sparkContext

    def show_wait(self) -> None:
        """Wait for the start in this cell, with a line that shows the elapsed time and the current
        step (updated in place when progress is on). An interrupt stops the wait, not the start."""
        from IPython.display import display

        runtime, text = self.runtime, "Spark is starting…"
        handle = display({"text/plain": text}, raw=True, display_id=True) if runtime.options["progress"] else print(text, flush=True)
        try:
            while not runtime.done.wait(WAIT_INTERVAL):
                if handle is not None:
                    handle.update({"text/plain": f"{text} {runtime.elapsed():.0f} s, {runtime.attempt.step or 'starting'}"}, raw=True)
        except KeyboardInterrupt:
            if handle is not None:
                handle.update({"text/plain": f"{text} {runtime.elapsed():.0f} s; interrupted: the next use of Spark waits for it again"}, raw=True)
            raise
        if handle is not None:
            handle.update({"text/plain": f"Spark {'started' if runtime.state == State.READY else 'did not start'} after {runtime.elapsed():.1f} s"}, raw=True)

    def publish(self) -> None:
        """Point the notebook's stand-ins at the real objects and show the banner once a session."""
        runtime = self.runtime
        if self.stand_ins_out:
            for name, value in list(self.namespace.items()):
                if type(value) is SparkStandIn and value._notebook is self and (value._name == "spark" or runtime.driver.has_context):
                    self.namespace[name] = runtime.session if value._name == "spark" else runtime.context
            self.stand_ins_out = False
        if self.group and self.grouped != (self.cell, runtime.generation):
            self.grouped = (self.cell, runtime.generation)
            runtime.driver.begin_cell(self.group, self.cell)
        if self.group and self.progress is None and runtime.options["progress"]:
            # Here, not only as the cell begins: a cell that waited for the start shows it too.
            self.progress = self.watch_progress()
        if self.announced != runtime.generation:
            self.announced = runtime.generation
            self.show_banner()
        if not self.explains_death:
            runtime.driver.explain_death(self.shell)
            self.explains_death = True

    def watch_progress(self) -> Any:
        try:
            progress = self.runtime.driver.progress(self.group)
            progress.begin()
        except Exception:  # a courtesy: a client without progress handlers (Spark Connect 3.5), a JVM gone
            log.debug("showing a cell's progress", exc_info=True)
            return None
        return progress

    def show_banner(self) -> None:
        driver = self.runtime.driver
        text, link = driver.banner(), driver.ui_link()
        if link is None or link.startswith(("http://", "https://")):
            print(text, flush=True)  # a front end makes the URL a link itself
        else:
            self.show_linked(text, link)
        for notice in self.runtime.attempt.notices:  # the start's one-line notices (runtime.limits)
            print(notice, flush=True)

    def show_linked(self, text: str, link: str) -> None:
        # A link through the Jupyter server is a path on the page's own host: only HTML makes it one.
        from IPython.display import display

        shown = html.escape(text[:-len(link)]) + f'<a href="{html.escape(link)}" target="_blank" rel="noopener">{html.escape(link)}</a>'
        display({"text/plain": text, "text/html": f"<pre>{shown}</pre>"}, raw=True)

    def session_ended(self, runtime, ended: tuple) -> None:
        """Names bound to a session or context that has ended become stand-ins again."""
        session, context = ended
        if self.progress is not None:
            self.progress.stop()
        for name, value in list(self.namespace.items()):
            if value is not None and (value is session or value is context):
                self.namespace[name] = SparkStandIn(self, "spark" if value is session else "sc")
                self.stand_ins_out = True
        if runtime.state == State.STOPPED:
            self.notice = IDLE_NOTICE.format(seconds=runtime.options["idle_timeout"]) if runtime.stopped_by == "idle" else STOPPED_NOTICE

    # -- sessions the notebook builds itself (see entrypoints)

    def user_session(self, options: dict) -> Any:
        """What SparkSession.builder...getOrCreate() gives the notebook: the kernel's session, with
        the builder's runtime settings applied and the others named."""
        session = self.session()
        self.apply_options(session, self.runtime.driver.session_options(options))
        return session

    def user_context(self, options: dict) -> Any:
        """What SparkContext(...) and SparkContext.getOrCreate(...) give the notebook."""
        refused = self.runtime.driver.context_error()
        if refused is not None:
            raise refused
        session = self.session()
        self.apply_options(session, options)
        return session.sparkContext

    def apply_options(self, session, options: dict) -> None:
        options = {key: value for key, value in options.items() if value is not None}
        if not options:
            return
        current = {key: session.conf.get(key, None) for key in options}
        settable, fixed = split_options(options, current, session.conf.isModifiable)
        for key, value in settable.items():
            session.conf.set(key, value)
        if fixed:
            print(fixed_options_notice(fixed), flush=True)

    # -- cells

    def pre_run_cell(self, *_) -> None:
        main = threading.current_thread() is threading.main_thread()
        # Before the cell's SIGINT handler: until then the kernel ignores SIGINT (confine_interrupts),
        # so an interrupt cannot break these waits into a traceback.
        if main:
            self.runtime.imported.wait(IMPORT_WAIT)  # a second or two, once: see SparkRuntime.imported
        if not self.activity.acquire(blocking=False):
            print(STOPPING_NOTICE, flush=True)
            self.activity.acquire()  # after the idle stop under way, not during it
        try:
            self.running += 1
            self.used_at = time.monotonic()
            self.runtime.warm_up.cell_began()
        finally:
            self.activity.release()
        self.counted.append(True)
        # ipykernel puts Python's default SIGINT handler in place for every request it handles,
        # and its own back after it: the kernel's handler lives only while the cell runs. Cells of
        # a subshell run off the main thread, where no handler can be set.
        if main:
            self.saved_sigint.append(signal.signal(signal.SIGINT, self.on_interrupt))
        self.runtime.held.pending = False
        self.cell += 1
        self.group = f"pyspark-kernel-cell-{self.cell}"
        try:
            if self.runtime.check_alive():
                self.runtime.warm_up.give_way()
                self.publish()
        except Exception:  # the JVM went away in between: the cell that uses Spark will say so
            log.debug("publishing the session as a cell begins", exc_info=True)

    def post_run_cell(self, result=None, *_) -> None:
        try:
            if self.progress is not None:
                self.progress.end(error=getattr(result, "error_in_exec", None))
            if self.grouped and self.grouped[0] == self.cell and self.runtime.state == State.READY:
                self.runtime.driver.end_cell(self.group)
        except Exception:  # a session gone with the cell: nothing left to tidy
            log.debug("ending a cell's progress and tag", exc_info=True)
        finally:
            if self.counted:
                self.counted.pop()
                with self.activity:
                    self.running -= 1
                    self.used_at = time.monotonic()
                    if not self.running:
                        self.runtime.warm_up.cell_ended(self.used_at)
            self.progress = None
            self.group = None
            self.tell_pip_changes()
            if self.saved_sigint and threading.current_thread() is threading.main_thread():
                previous = self.saved_sigint.pop()
                # The outermost cell's code is over. Until ipykernel puts its idle handler back, an
                # interrupt (a client shutting the kernel down interrupts it first, as papermill
                # does) must not raise into ipykernel's message loop ("KeyboardInterrupt caught").
                signal.signal(signal.SIGINT, previous if self.saved_sigint else signal.SIG_IGN)

    def tell_pip_changes(self) -> None:
        """After a cell that changed the environment (%pip), the one line that says what the
        executors get of it, from the driver (a stat per site-packages directory when nothing changed)."""
        try:
            changes = self.runtime.pip.changes()
            line = self.runtime.driver.pip_notice(changes) if changes else None
        except Exception:  # a notice must never cost the cell; kernel.log keeps why there is none
            log.warning("looking for the environment's changes", exc_info=True)
            return
        if line:
            print(line, flush=True)

    def on_interrupt(self, signum, frame) -> None:
        """Cancel the running cell's Spark jobs, then interrupt the cell. The cancel goes from
        another thread (Driver.interrupt): this one may be inside a Py4J call, on the connection
        the cancel would need, and such an interrupt is held until the call returns (see guard)."""
        runtime = self.runtime
        if runtime.state == State.READY and self.group:
            runtime.driver.interrupt(self.group)
        if runtime.held.hold():
            return
        raise KeyboardInterrupt

    # -- idle_timeout

    def in_use(self) -> bool:
        """Whether the session is in use: a cell, a job or a streaming query runs (or there is no
        session to stop)."""
        runtime = self.runtime
        if self.running or runtime.state != State.READY:
            return True
        return bool(runtime.context.statusTracker().getActiveJobsIds()) or bool(runtime.session.streams.active)

    def stop_idle(self) -> bool:
        with self.activity:
            return not self.running and self.runtime.stop_idle()

    def restart(self, overrides: dict) -> Any:
        """%spark restart: a new session from the kernel's configuration plus ``overrides``."""
        self.notice = None
        self.runtime.restart(overrides)
        return self.session()

