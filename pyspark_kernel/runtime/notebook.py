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

import html
import shlex
import signal
import threading
import time

from .diagnostics import SHARED_SC, SharedDriverError, SparkStartError
from .idle import IdleWatch
from .options import shown_value
from .progress import ConnectProgress, Progress

WAIT_INTERVAL = 1.0  # how often a cell waiting for Spark's start updates its elapsed time
CONNECTION_LOST = ("StatusCode.UNAVAILABLE", "closed channel", "Connection refused", "Socket closed")  # the client's words for a server gone
DEATH_NOTICE = 5  # seconds a connection error waits for the shared driver's lease to say it is gone
IMPORT_WAIT = 60  # the longest a cell waits for the start thread's import of pyspark
CANCEL_ATTEMPTS = 3
STOPPED_NOTICE = "Spark was stopped (spark.stop()): starting a new session with the kernel's configuration."
STOPPING_NOTICE = "Spark is being stopped (idle_timeout); this cell runs once it has stopped."
IDLE_NOTICE = ("Spark was stopped after {seconds:g} s without a job (idle_timeout), to free what it held: "
               "starting a new session with the kernel's configuration.")
class SparkStandIn:
    """Stands for `spark` or `sc` until the session exists; any use waits for it."""

    def __init__(self, notebook, name):
        object.__setattr__(self, "_notebook", notebook)
        object.__setattr__(self, "_name", name)

    def _target(self):
        return self._notebook.resolve(self._name)

    def __getattr__(self, attribute):
        if self._notebook.runtime.state != "ready":
            if attribute.startswith(("__", "_ipython", "_repr_")):
                # IPython's inspector and display protocols probe these: they must not start Spark.
                raise AttributeError(attribute)
            if attribute == "stop" and self._notebook.runtime.state in ("idle", "stopped", "failed", "dead"):
                return lambda: None  # nothing to stop: spark.stop() at the end of a notebook stays quiet
        return getattr(self._target(), attribute)

    def __setattr__(self, attribute, value):
        setattr(self._target(), attribute, value)

    def __repr__(self):
        return repr(self._target())

    def __dir__(self):
        return dir(self._target()) if self._notebook.runtime.state == "ready" else []


def split_options(options, current, modifiable):
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


def fixed_options_notice(fixed):
    shown = " ".join(f"{key}={shown_value(key, value)}" for key, value in fixed.items())
    command = " ".join(f"--conf {shlex.quote(f'{key}={shown_value(key, value)}')}" for key, value in fixed.items())
    return f"Using the kernel's Spark session; not applied, as they need a new driver: {shown} (to apply them: %spark restart {command})"


class Notebook:
    def __init__(self, runtime, namespace, shell):
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
        self.ui_root = (None, None)  # (session generation, the root of its UI's links)
        self.explains_death = False  # a shared driver's death is shown as the runtime's one error

    def begin(self):
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self.namespace["spark"] = SparkStandIn(self, "spark")
        self.namespace["sc"] = SparkStandIn(self, "sc")
        self.stand_ins_out = True
        self.runtime.listeners.append(self.session_ended)
        self.confine_interrupts()
        if self.runtime.options["idle_timeout"] > 0 and not self.runtime.connect:
            self.idle = IdleWatch(self.runtime.options["idle_timeout"], self.in_use, self.stop_idle, last_used=lambda: self.used_at)
            self.idle.begin()
        mode = self.runtime.options["init"]
        if mode == "eager":
            previous = signal.getsignal(signal.SIGINT)
            self.runtime.start()
            signal.signal(signal.SIGINT, previous)  # a context made here installs pyspark's handler
        elif mode == "background":
            self.runtime.start_in_background()

    def confine_interrupts(self):
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

    def session(self):
        """The kernel's session, started if need be, waiting (and saying so) while it starts."""
        runtime = self.runtime
        runtime.check_alive()
        if runtime.state in ("idle", "stopped"):
            if self.notice:
                print(self.notice, flush=True)
                self.notice = None
            runtime.waiting = True  # this cell pays the first-job cost itself: no warm-up
            runtime.start_in_background()
        if not runtime.done.is_set():
            runtime.waiting = True
            self.show_wait()
        if runtime.state != "ready":
            error = runtime.error or SparkStartError("Spark is stopping: the kernel is shutting down")
            raise type(error)(str(error)) from None
        self.publish()
        return runtime.session

    def resolve(self, name):
        if name == "sc" and self.runtime.shared:
            raise SharedDriverError(SHARED_SC)
        session = self.session()
        return session if name == "spark" else session.sparkContext

    def show_wait(self):
        """Wait for the start in this cell, with a line that shows the elapsed time and the current
        step (updated in place when progress is on). An interrupt stops the wait, not the start."""
        from IPython.display import display

        runtime, text = self.runtime, "Spark is starting…"
        handle = display({"text/plain": text}, raw=True, display_id=True) if runtime.options["progress"] else print(text, flush=True)
        try:
            while not runtime.done.wait(WAIT_INTERVAL):
                if handle is not None:
                    handle.update({"text/plain": f"{text} {runtime.elapsed():.0f} s, {runtime.step or 'starting'}"}, raw=True)
        except KeyboardInterrupt:
            if handle is not None:
                handle.update({"text/plain": f"{text} {runtime.elapsed():.0f} s; interrupted: the next use of Spark waits for it again"}, raw=True)
            raise
        if handle is not None:
            handle.update({"text/plain": f"Spark {'started' if runtime.state == 'ready' else 'did not start'} after {runtime.elapsed():.1f} s"}, raw=True)

    def publish(self):
        """Point the notebook's stand-ins at the real objects and show the banner once a session."""
        runtime = self.runtime
        if self.stand_ins_out:
            for name, value in list(self.namespace.items()):
                if type(value) is SparkStandIn and value._notebook is self and not (value._name == "sc" and runtime.connect):
                    self.namespace[name] = runtime.session if value._name == "spark" else runtime.context
            self.stand_ins_out = False
        if self.group and self.grouped != (self.cell, runtime.generation):
            self.grouped = (self.cell, runtime.generation)
            if runtime.connect:
                runtime.session.addTag(self.group)  # the client's tags are this thread's
            else:
                runtime.context.setJobGroup(self.group, f"cell {self.cell}", True)
                # The JVM keeps the active session per thread, and the kernel's was made in its
                # start thread: make it this thread's too, so getActiveSession() finds it at once.
                jvm_session = runtime.session._jvm.SparkSession
                jvm_session.setActiveSession(runtime.session._jsparkSession)
        if self.group and self.progress is None and runtime.options["progress"]:
            # Here, not only as the cell begins: a cell that waited for the start shows it too.
            self.progress = self.watch_progress()
        if self.announced != runtime.generation:
            self.announced = runtime.generation
            self.show_banner()
        if runtime.shared and not self.explains_death:
            self.explain_death()

    def explain_death(self):
        """On a shared driver, a cell whose call was under way (or began) as the server died gets
        the Connect client's connection errors, after its retries: show the runtime's one error
        instead, once the lease says the server is gone."""
        import warnings

        from pyspark.errors.exceptions.connect import SparkConnectException

        shell, runtime = self.shell, self.runtime
        # The client warns as it gives up retrying; the error below says what happened.
        warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]")

        def handler(shell, etype, value, tb, tb_offset=None):
            lease, text = runtime.lease, str(value)
            # Not every Connect error: an AnalysisException is one too, and must not wait.
            unreachable = any(sign in text for sign in CONNECTION_LOST)
            if lease is not None and (lease.lost.is_set() or unreachable and lease.lost.wait(DEATH_NOTICE)) and runtime.error is not None:
                error = type(runtime.error)(str(runtime.error))
                return shell.showtraceback((type(error), error, None), tb_offset=tb_offset)
            return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

        shell.set_custom_exc((SparkConnectException, ValueError), handler)
        self.explains_death = True

    def watch_progress(self):
        runtime = self.runtime
        try:
            if runtime.connect:
                progress = ConnectProgress(runtime.session)
            else:
                if self.ui_root[0] != runtime.generation:  # one JVM call a session, not one a cell
                    self.ui_root = (runtime.generation, runtime.ui_root())
                progress = Progress(runtime.context, self.group, self.ui_root[1])
            progress.begin()
        except Exception:  # a courtesy: a client without progress handlers (Spark Connect 3.5), a JVM gone
            return None
        return progress

    def banner(self):
        runtime = self.runtime
        if runtime.shared:
            record = runtime.lease.record
            return (f"Spark {runtime.session.version} | shared driver (pid {record.get('jvm')}, master {record.get('master')}) | "
                    f"UI {runtime.ui_link() or 'off'}")
        if runtime.connect:
            return f"Spark {runtime.session.version} | Spark Connect {runtime.master}"
        sc = runtime.context
        return f"Spark {sc.version} | master {sc.master} | app {sc.applicationId} | UI {runtime.ui_link() or 'off'}"

    def show_banner(self):
        link = self.runtime.ui_link() if self.runtime.shared or not self.runtime.connect else None
        if link is None or link.startswith(("http://", "https://")):
            print(self.banner(), flush=True)  # a front end makes the URL a link itself
            return
        # A link through the Jupyter server is a path on the page's own host: only HTML makes it one.
        from IPython.display import display

        text = self.banner()
        shown = html.escape(text[:-len(link)]) + f'<a href="{html.escape(link)}" target="_blank" rel="noopener">{html.escape(link)}</a>'
        display({"text/plain": text, "text/html": f"<pre>{shown}</pre>"}, raw=True)

    def session_ended(self, runtime, ended):
        """Names bound to a session or context that has ended become stand-ins again."""
        session, context = ended
        if self.progress is not None:
            self.progress.stop()
        for name, value in list(self.namespace.items()):
            if value is not None and (value is session or value is context):
                self.namespace[name] = SparkStandIn(self, "spark" if value is session else "sc")
                self.stand_ins_out = True
        if runtime.state == "stopped":
            self.notice = IDLE_NOTICE.format(seconds=runtime.options["idle_timeout"]) if runtime.stopped_by == "idle" else STOPPED_NOTICE

    # -- sessions the notebook builds itself (see entrypoints)

    def user_session(self, options):
        """What SparkSession.builder...getOrCreate() gives the notebook: the kernel's session, with
        the builder's runtime settings applied and the others named."""
        session = self.session()
        if self.runtime.connect:
            options = {key: value for key, value in options.items() if key != "spark.remote"}  # the kernel's server
        self.apply_options(session, options)
        return session

    def user_context(self, options):
        """What SparkContext(...) and SparkContext.getOrCreate(...) give the notebook."""
        if self.runtime.shared:
            raise SharedDriverError(SHARED_SC)
        session = self.session()
        self.apply_options(session, options)
        return session.sparkContext

    def apply_options(self, session, options):
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

    def pre_run_cell(self, *_):
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
            self.runtime.cells_idle.clear()
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
                self.runtime.give_way()
                self.publish()
        except Exception:  # the JVM went away in between: the cell that uses Spark will say so
            pass

    def post_run_cell(self, result=None, *_):
        try:
            if self.progress is not None:
                self.progress.end(error=getattr(result, "error_in_exec", None))
            if self.runtime.connect and self.grouped and self.grouped[0] == self.cell and self.runtime.state == "ready":
                self.runtime.session.removeTag(self.group)
        except Exception:  # a session gone with the cell: nothing left to tidy
            pass
        finally:
            if self.counted:
                self.counted.pop()
                with self.activity:
                    self.running -= 1
                    self.used_at = time.monotonic()
                    if not self.running:
                        self.runtime.cells_ended_at = self.used_at
                        self.runtime.cells_idle.set()
            self.progress = None
            self.group = None
            if self.saved_sigint and threading.current_thread() is threading.main_thread():
                previous = self.saved_sigint.pop()
                # The outermost cell's code is over. Until ipykernel puts its idle handler back, an
                # interrupt (a client shutting the kernel down interrupts it first, as papermill
                # does) must not raise into ipykernel's message loop ("KeyboardInterrupt caught").
                signal.signal(signal.SIGINT, previous if self.saved_sigint else signal.SIG_IGN)

    def on_interrupt(self, signum, frame):
        """Cancel the running cell's Spark jobs, then interrupt the cell. The cancel goes from
        another thread: this one may be inside a Py4J call, on the connection the cancel would
        need, and such an interrupt is held until the call returns (see guard)."""
        runtime = self.runtime
        if runtime.state == "ready" and self.group and runtime.connect:
            # A 3.5 client leaves the server's operation running when interrupted: the tag stops it.
            threading.Thread(target=self.interrupt_tag, args=(runtime.session, self.group), name="pyspark-kernel-cancel", daemon=True).start()
        elif runtime.state == "ready" and self.group:
            threading.Thread(target=self.cancel, args=(runtime.context, self.group), name="pyspark-kernel-cancel", daemon=True).start()
        if runtime.held.hold():
            return
        raise KeyboardInterrupt

    @staticmethod
    def cancel(context, group):
        # A connection broken by an earlier interrupt can still be in the pool, and the first call
        # that picks it up fails: try again on a fresh one.
        for _ in range(CANCEL_ATTEMPTS):
            try:
                context.cancelJobGroup(group)
                return
            except Exception:  # a broken connection, or Spark is going away
                continue

    @staticmethod
    def interrupt_tag(session, tag):
        try:
            session.interruptTag(tag)
        except Exception:  # the server may have gone: the cell's own call says so
            pass

    # -- idle_timeout

    def in_use(self):
        """Whether the session is in use: a cell, a job or a streaming query runs (or there is no
        session to stop)."""
        runtime = self.runtime
        if self.running or runtime.state != "ready":
            return True
        return bool(runtime.context.statusTracker().getActiveJobsIds()) or bool(runtime.session.streams.active)

    def stop_idle(self):
        with self.activity:
            return not self.running and self.runtime.stop_idle()

    def restart(self, overrides):
        """%spark restart: a new session from the kernel's configuration plus ``overrides``."""
        self.notice = None
        self.runtime.restart(overrides)
        return self.session()

    def shutdown(self):
        if self.progress is not None:
            self.progress.end()

