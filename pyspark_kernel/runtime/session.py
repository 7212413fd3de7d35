"""The kernel's Spark session, from start to stop: one at a time, started in the background, on
first use or before the kernel answers, restarted on request, and watched for a JVM that dies.

States: idle -> starting -> ready | failed; ready -> stopped (the notebook called spark.stop(), or
idle_timeout passed without a job) or dead (the JVM exited); any of them -> starting again on restart. A start is judged by what
happens, not by a short clock: it fails at once when the JVM exits or a master cannot be reached,
and otherwise only after start_timeout (a busy machine is slow, not broken).
"""

import atexit
import os
import subprocess
import sys
import threading
import time

from . import cache, jvm, shared, ui, warmup
from .diagnostics import RESTART_HINT, SparkDiedError, SparkStartError, check_master_reachable, check_spark_home, died_message, explain, find_java, java_version, with_jvm_output
from .guard import HeldInterrupt, guard, quiet_py4j
from .options import CONNECT_TOKEN_VARIABLE, clear_unset, read_conf, read_options, resolve_secrets, with_token
from .profile import BEFORE_RUNTIME, StartProfile, process_age

KERNEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP_GROUP = "pyspark-kernel-warmup"
DEATH_WAIT = 2  # seconds a refused connection may take to show as the JVM's exit
QUIET_WAIT = 0.5  # the same, before Py4J's own report of a failed call is dropped
WARMUP_PATIENCE = 60  # seconds the warm-up waits for running cells to end before it gives up
WARMUP_QUIET = 1.0  # seconds without a cell before a warm-up step starts
WARMUP_ATTEMPTS = 3  # warm-up steps cancelled for a cell, or failed, before the warm-up gives up


class SparkRuntime:
    def __init__(self, environ=None):
        if environ is None:
            clear_unset(os.environ)  # before anything reads them, pyspark and spark-submit included
        self.environ = dict(os.environ if environ is None else environ)
        self.options = read_options(self.environ)
        self.kernel_conf = read_conf(self.environ)
        self.conf = dict(self.kernel_conf)  # the kernel's, plus the last %spark restart's --conf
        self.master = self.conf.get("spark.master", "local[*]")
        self.shared = self.options["spark_driver"] == "shared"  # a Connect client of the shared driver (runtime.shared)
        self.connect = self.master.startswith("sc://") or self.shared
        self.lease = None  # the shared driver this kernel is attached to
        self.scratch = jvm.make_scratch(self.environ)
        self.log = os.path.join(self.scratch, "driver.log")
        self.state = "idle"
        self.step = None  # what the start is doing now, for a waiting cell and the timeout message
        self.profile = StartProfile()  # the last start's steps and their times (runtime.profile)
        self.born = process_age()  # seconds the kernel process ran before the runtime existed
        self.started_at = self.ready_at = None
        self.generation = 0  # one more for each session started
        self.done = threading.Event()
        # Set once the start thread has imported pyspark: a cell's own `from pyspark.sql import`
        # at the same moment can meet it inside pyspark.sql's import cycle, and Python then gives
        # one of them the partly initialised module ("cannot import name ...").
        self.imported = threading.Event()
        self.imported.set()  # cleared by a start that imports pyspark
        self.lock = threading.Lock()
        self.local = threading.local()  # .creating: this thread is inside the kernel's own start
        self.session = self.context = self.gateway = self.error = None
        self.ui_base = None  # the Jupyter server's base URL, when the UI is served through it
        self.timed_out = self.cancelled = False
        self.proc = None  # the current driver JVM's process, from the moment it exists
        self.procs = []  # every driver JVM this kernel started that may still run
        self.waiting = False  # a cell waits for the session: it pays the first-job cost itself
        self.held = HeldInterrupt()
        self.watchdog = None
        self.quieted = False
        self.listeners = []  # called with the runtime when a session ends (stop, death, restart)
        self.cells_idle = threading.Event()  # no cell runs (the notebook's): the warm-up gives way to cells
        self.cells_idle.set()
        self.warming = None  # the warm-up step under way, which a cell that begins cancels (give_way)
        self.cells_ended_at = 0.0  # when the last cell ended (monotonic), for the warm-up's quiet wait
        self.stopped_by = None  # "user" (spark.stop()) or "idle" (idle_timeout), while stopped
        self.archive = None  # the class-data-sharing archive this kernel's JVM maps or writes
        self.pruned = threading.Event()  # set once this kernel's start has pruned the cache

    def begin(self):
        self.watchdog = jvm.start_watchdog(self.scratch)
        atexit.register(self.shutdown)

    # -- starting

    def start(self):
        """Start a session here, unless one is already started or starting."""
        if self.claim_start():
            self.run_start()

    def start_in_background(self):
        if self.claim_start():  # here, so that `done` is cleared before the caller waits on it
            threading.Thread(target=self.run_start, name="pyspark-kernel-start", daemon=True).start()

    def claim_start(self):
        with self.lock:
            if self.state not in ("idle", "stopped"):
                return False
            self.state = "starting"
            self.started_at, self.ready_at = time.monotonic(), None
            self.error, self.timed_out, self.cancelled, self.proc = None, False, False, None
            self.done.clear()
            if "pyspark.sql" not in sys.modules:
                self.imported.clear()  # this start imports pyspark: cells wait for that (notebook)
            return True

    def run_start(self):
        self.local.creating = True
        self.profile = StartProfile()
        if self.generation == 0:
            self.profile.add(BEFORE_RUNTIME, self.born)
        # The only clock on a start: for one that hangs.
        timer = threading.Timer(self.options["start_timeout"], self.give_up)
        timer.daemon = True
        try:
            timer.start()
            self.session = self.create_session()
            self.context = None if self.connect else self.session.sparkContext
            self.generation += 1
            self.ready_at = time.monotonic()
            self.state = "ready"
        except BaseException as error:  # noqa: B036 - whatever stopped Spark is the user's answer
            self.error = error if isinstance(error, SparkStartError) else SparkStartError(self.describe_failure(error))
            self.state = "failed"
            jvm.kill_jvm(self.proc)
            self.forget_pyspark_session()
        finally:
            self.local.creating = False
            timer.cancel()
            self.profile.end()
            self.imported.set()
            self.done.set()
        # In a thread of its own: an eager start runs on the main thread, which must answer now.
        threading.Thread(target=self.after_start, args=(self.state == "ready",), name="pyspark-kernel-warm-up", daemon=True).start()

    def after_start(self, ready):
        # The kernel's own: a UDF's PySpark code asks for the active session, and the notebook's
        # entry points must not answer (they would show the banner from here, in no cell).
        self.local.creating = True
        if ready:
            self.warm_up()
        self.prune_cache()
        self.profile.end()

    def mark(self, step):
        """The start's next step: shown to a waiting cell, named by a timeout, timed in the profile."""
        self.step = step
        self.profile.mark(step)

    def creating(self):
        return getattr(self.local, "creating", False)

    def describe_failure(self, error):
        if self.cancelled:
            return "Spark did not start: the start was cancelled by %spark restart"
        if self.timed_out:
            return with_jvm_output(
                f"Spark did not start within {self.options['start_timeout']:g} s on master {self.master}, while {self.step} "
                "(check that the cluster is up and reachable, or raise start_timeout in the kernel's PYSPARK_KERNEL_OPTIONS)", self.log)
        return explain(error, self.log)

    def give_up(self, cancelled=False):
        if not self.done.is_set():
            self.timed_out, self.cancelled = True, cancelled
            jvm.kill_jvm(self.proc)  # the JVM, as soon as it exists: also while it is still launching

    def create_session(self):
        if self.shared:
            return self.create_shared_session()
        if self.connect:
            return self.create_connect_session()
        self.mark("loading pyspark")
        try:  # first: cells wait for this import (see imported), not for the checks after it
            from pyspark import SparkConf, SparkContext
            from pyspark.java_gateway import launch_gateway
            from pyspark.sql import SparkSession
        except ImportError as error:
            check_spark_home(self.environ)  # a broken SPARK_HOME says best why pyspark is missing
            raise SparkStartError(f"pyspark cannot be imported by {sys.executable}: {error} (install pyspark into the kernel's environment, or regenerate the kernel)") from None
        finally:
            self.imported.set()
        jvm.defer_numpy_converters()  # no numpy, pandas and pyarrow until the notebook uses them
        self.mark("checking the master")
        check_master_reachable(self.master)
        self.ui_base = ui.server_base(self.environ)
        self.mark("looking for Java")
        spark_home = check_spark_home(self.environ)
        java = find_java(self.environ)
        java_options = []
        if self.options["class_data_sharing"]:
            name = jvm.archive_name(java, spark_home)
            self.archive = os.path.join(jvm.cds_dir(self.environ), name + ".jsa")
            java_options = jvm.cds_java_options(java_version(java), name, self.scratch, self.environ, self.watchdog,
                                                needs=[os.path.realpath(java), os.path.realpath(spark_home)])
        settings = jvm.launch_settings(self.conf, self.options, self.scratch, KERNEL_DIR, java_options)
        settings.update(ui.ui_settings(settings, self.ui_base))
        secrets = resolve_secrets(settings, self.environ)
        conf = SparkConf(loadDefaults=False)
        conf.setAll((key, value) for key, value in settings.items() if key not in secrets)
        self.mark("launching the driver JVM")
        # The JVM's log may quote the user's data and settings: its owner's alone, as its directory.
        with os.fdopen(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log, jvm.recording_launch(self.launched):
            self.gateway = launch_gateway(conf=conf, popen_kwargs={"stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.PIPE})
        gateway = self.gateway
        guard(gateway._gateway_client, self.held, lambda: self.death(gateway))
        if not self.quieted:
            quiet_py4j(self.jvm_exited)
            self.quieted = True
        # Secrets reach the JVM through Py4J, not its command line, which every user can list.
        conf.setAll(secrets.items())
        if self.timed_out:
            raise SparkStartError("timed out")
        self.mark("creating the SparkContext")
        context = SparkContext(conf=conf, gateway=self.gateway)
        context.setLogLevel(self.options["log_level"])
        port = ui.ui_port(context.uiWebUrl)
        if self.ui_base and port and str(port) != settings.get("spark.ui.port"):
            # Another process took the chosen port before the JVM bound it: Spark reads the proxy
            # base on each request, so the path can follow the port it took instead.
            context._jvm.java.lang.System.setProperty("spark.ui.proxyBase", ui.proxy_base(self.ui_base, port))
        self.mark("creating the SparkSession")
        return SparkSession.builder.getOrCreate()

    def launched(self, proc):
        self.proc = proc
        self.procs = [known for known in self.procs if known.poll() is None] + [proc]
        jvm.record_jvms(self.scratch, self.procs)
        if self.timed_out:  # the clock ran out before the process existed
            jvm.kill_jvm(proc)

    def create_connect_session(self):
        try:
            from pyspark.sql import SparkSession
        finally:
            self.imported.set()
        self.mark("checking the master")
        check_master_reachable(self.master)

        self.mark("connecting to the Spark Connect server")
        # The token lives in the Jupyter server's environment, never in kernel.json; it goes to the
        # client as a builder option, not into an environment variable that code prints.
        builder = SparkSession.builder.remote(with_token(self.master, self.environ.get(CONNECT_TOKEN_VARIABLE)))
        for key, value in self.conf.items():
            if key != "spark.master":
                builder = builder.config(key, value)
        return builder.getOrCreate()

    def create_shared_session(self):
        try:
            import pyspark
            from pyspark.sql import SparkSession
        finally:
            self.imported.set()
        self.mark("finding the shared driver")
        spark_home = check_spark_home(self.environ)
        java = find_java(self.environ)
        server_conf, session_conf = shared.split_settings(self.conf)
        key = shared.server_key(pyspark.__version__, spark_home, java, sys.executable, server_conf,
                                [(name, self.environ.get(name, "")) for name in ("PYSPARK_PYTHON", "JAVA_HOME")])
        lease = self.lease
        if lease is None or lease.lost.is_set() or lease.paths.key != key:
            if lease is not None:
                lease.close()  # another key (%spark restart --conf): that server may leave
            launch_conf = dict(server_conf)
            launch_conf.update(ui.ui_settings(launch_conf, ui.server_base(self.environ)))
            secrets = resolve_secrets(launch_conf, self.environ)
            launch = {"conf": {k: v for k, v in launch_conf.items() if k not in secrets}, "secrets": secrets, "token": shared.new_token(),
                      "linger": self.options["driver_linger"], "log_level": self.options["log_level"], "spark_home": spark_home,
                      "java": java, "spark_version": pyspark.__version__, "timeout": self.options["start_timeout"]}
            paths = shared.Paths(shared.runtime_dir(self.environ), key)
            self.log = paths.log  # the server's: %spark log and failure messages show it
            lease = shared.attach(paths, self.environ, pyspark.__version__, launch, self.options["start_timeout"], mark=self.mark)
            self.lease = lease
            lease.watch(lambda: self.driver_lost(lease))
        self.ui_base = ui.server_base(self.environ)
        self.mark("connecting to the shared driver")
        builder = SparkSession.builder.remote(lease.url)
        for name, value in session_conf.items():
            builder = builder.config(name, value)
        session = builder.create()  # a session of this notebook's own on the server, never a gone one
        shared.fail_fast(session)
        return session

    def driver_lost(self, lease):
        """The shared driver closed this kernel's lease: its JVM died, or it was stopped."""
        with self.lock:
            if lease is not self.lease:
                return
            record = lease.record
            self.error = SparkDiedError(f"The shared Spark driver (pid {record.get('jvm')}) has exited. Spark objects made before are gone "
                                        f"({RESTART_HINT}; it starts a new shared driver)")
            if self.state != "ready":
                return
            self.state = "dead"
        ended = (self.session, None)
        self.session = None
        try:
            ended[0].client.close()  # a call under way fails now, instead of retrying for minutes
        except Exception:
            pass
        self.notify(ended)

    def ui_link(self):
        """Where the notebook's browser finds this session's UI (None when it is off)."""
        if self.shared:
            return ui.ui_link(self.lease.record.get("ui"), self.ui_base) if self.lease else None
        return ui.ui_link(self.context.uiWebUrl, self.ui_base)

    def ui_root(self):
        """The root of this session's UI as the notebook's browser reaches it, for links to its pages."""
        return ui.ui_root(self.context.uiWebUrl, self.ui_base)

    def warm_up(self):
        """Pay the first-job costs before the user's first job: the JVM's (code loading, query
        planning), then the Python paths' (a Python UDF's worker daemon, an Arrow UDF's when the
        environment has pyarrow, and the RDD API's, which is another), so that a
        notebook's first Python function finds warm workers. One after the other: run together,
        the Python steps' tasks hold the cores while their workers start, and the JVM job waits
        behind them. The JVM job runs as soon as the session is ready; a cell that comes
        meanwhile waits for it, as it would pay the same cost itself. A Python step starts only
        once no cell has run for a second, and a cell that begins cancels it. A cell that is
        already waiting for Spark pays every cost itself, sooner: no warm-up. With dynamic allocation, the Python steps
        are left out: they would ask the cluster for executors only to warm workers it then
        releases, with the executors, once they are idle. The warm_up option chooses: python
        (all of it), jvm (the JVM job only: no Python workers until a cell needs them) or off."""
        mode = self.options["warm_up"]  # python, jvm (the JVM job only) or off
        steps = [("warm-up: a JVM job", warmup.jvm_job)] if mode != "off" else []
        if mode == "python" and not self.connect and not warmup.dynamic_allocation(self.context):
            # UDFs first: a notebook's first Python function is more often a UDF than an RDD map,
            # and a cold one costs twice as much (its workers import pandas and pyarrow): a first
            # Python cell that comes while the warm-up still runs at least finds warm UDF workers.
            steps.append(("warm-up: Python UDF workers", warmup.python_udf))
            if warmup.has_arrow():
                steps.append(("warm-up: an Arrow UDF", warmup.arrow_udf))
            steps.append(("warm-up: Python workers (RDD map)", warmup.rdd_map))
        session, attempts = self.session, 0
        try:
            if not self.connect:
                self.context.setJobGroup(WARMUP_GROUP, "pyspark-kernel warm-up", False)
        except Exception:  # a failed warm-up only costs time later
            return
        while steps and attempts < WARMUP_ATTEMPTS:
            step, run = steps[0]
            # The JVM job runs at once, and a cell that comes meanwhile waits for it: the cell would
            # pay the same first-job cost itself. A Python step waits for the cells, and a cell that
            # begins cancels it (give_way): that cost is not the cell's.
            yields = run is not warmup.jvm_job
            if self.waiting or (yields and not self.wait_for_quiet()) or self.waiting or self.state != "ready" or session is not self.session:
                return
            self.mark(step)
            self.warming = step if yields else None
            try:
                run(session)
                steps.pop(0)
            except Exception:  # cancelled for a cell: again once it is done; else a failed warm-up only costs time later
                attempts += 1
                if self.cells_idle.is_set():
                    return
            finally:
                self.warming = None

    def wait_for_quiet(self):
        """Wait until no cell has run for WARMUP_QUIET seconds: while a notebook runs cell after
        cell (Run All), a warm-up step would only start to be cancelled. False after WARMUP_PATIENCE."""
        deadline = time.monotonic() + WARMUP_PATIENCE
        while self.cells_idle.wait(max(0.0, deadline - time.monotonic())):
            quiet = time.monotonic() - self.cells_ended_at
            if quiet >= WARMUP_QUIET:
                return True
            time.sleep(WARMUP_QUIET - quiet)
        return False

    def give_way(self):
        """A cell begins: cancel the warm-up job under way, so that the cell's own jobs need not
        queue behind it (the warm-up runs that step again once the cells are done)."""
        if self.warming is None or self.connect or self.state != "ready":
            return
        try:
            self.context.cancelJobGroup(WARMUP_GROUP)  # asynchronous in the JVM: returns at once
        except Exception:  # the session is going away: nothing to give way to
            pass

    def prune_cache(self):
        """Once per kernel, after its start: keep the cache within its limit (runtime.cache),
        while Spark waits for the first cell anyway."""
        if self.pruned.is_set():
            return
        self.mark("pruning the cache")
        try:
            cache.prune(self.environ, keep=[self.archive] if self.archive else [])
        except Exception:  # a bad limit or an unreadable cache must not cost the session
            pass
        finally:
            self.pruned.set()

    # -- while it runs

    def elapsed(self):
        """Seconds the current (or last) start has taken."""
        if self.started_at is None:
            return 0.0
        return (self.ready_at or time.monotonic()) - self.started_at

    def jvm_exited(self):
        """Whether the current JVM has exited. It waits a little: a refused connection can come
        before the exit is visible, and poll() says "running" while another thread waits on it."""
        if self.state == "dead":
            return True
        try:
            self.proc.wait(timeout=QUIET_WAIT)
            return True
        except (subprocess.TimeoutExpired, AttributeError):
            return False

    def death(self, gateway):
        """The error to raise for a failed call through ``gateway`` when its JVM is gone, else None."""
        if gateway is not self.gateway:
            return SparkDiedError("This belongs to a Spark session that has ended (spark.stop() or %spark restart): "
                                  "make it again from the current spark")
        try:
            returncode = gateway.proc.wait(timeout=DEATH_WAIT)
        except subprocess.TimeoutExpired:
            return None  # alive: the call failed for another reason
        self.mark_dead(returncode)
        return self.error if isinstance(self.error, SparkDiedError) else SparkDiedError(died_message(returncode, self.log))

    def check_alive(self):
        """Whether the session is usable; a JVM found dead turns the state to dead."""
        if self.state != "ready" or self.connect:
            return self.state == "ready"
        returncode = self.gateway.proc.poll()
        if returncode is None:
            return True
        self.mark_dead(returncode)
        return False

    def mark_dead(self, returncode):
        with self.lock:
            if self.state != "ready":
                return
            self.state = "dead"
            self.error = SparkDiedError(died_message(returncode, self.log))
        ended = (self.session, self.context)
        self.session = self.context = None  # the gateway stays: it tells how the JVM ended
        self.gateway._gateway_client.is_connected = False  # Py4J's finalizers stop calling a dead JVM
        server = getattr(ended[1], "_accumulatorServer", None)
        if server is not None:  # its thread and socket would stay for the kernel's life
            server.shutdown()
            ended[1]._accumulatorServer = None
        self.forget_pyspark_session()
        self.notify(ended)

    def user_stopped(self, stopped):
        """The notebook stopped the kernel's session or context (spark.stop()): the next use of
        Spark starts a new one."""
        with self.lock:
            if self.state != "ready" or stopped is None or (stopped is not self.context and stopped is not self.session):
                return
            self.state, self.stopped_by = "stopped", "user"
        ended = (self.session, self.context)
        gateway, self.gateway = self.gateway, None
        self.session = self.context = None
        jvm.close_jvm(gateway)
        self.forget_pyspark_session()
        self.notify(ended)

    def stop_idle(self):
        """idle_timeout: stop the session as spark.stop() does, which releases its executors and
        its cluster application; the next use of Spark starts a new one. Whether it stopped one."""
        with self.lock:
            if self.state != "ready" or self.connect:
                return False
            self.state, self.stopped_by = "stopped", "idle"  # before stop(): not the user's stop
        ended = (self.session, self.context)
        gateway, self.gateway = self.gateway, None
        self.session = self.context = None
        try:
            ended[0].stop()
        except Exception:  # a JVM in trouble goes anyway
            pass
        jvm.close_jvm(gateway)
        self.forget_pyspark_session()
        self.notify(ended)
        return True

    def notify(self, ended):
        """Tell the listeners that the session and context in ``ended`` are gone."""
        for listener in self.listeners:
            try:
                listener(self, ended)
            except Exception:  # a listener's trouble must not break Spark's own state
                pass

    # -- restarting and stopping

    def restart(self, overrides=None):
        """Stop the current session, if any, and start a new one from the kernel's configuration
        plus ``overrides`` (in the background: the caller waits on ``done``)."""
        if self.state == "starting":
            self.give_up(cancelled=True)
            self.done.wait()
        ended = self.retire()
        self.waiting = True  # the restarting cell waits: no warm-up
        with self.lock:
            self.conf = {**self.kernel_conf, **(overrides or {})}
            self.state = "idle"
        self.notify(ended)
        self.start_in_background()

    def retire(self):
        """End the current session and let its JVM go; the (session, context) that ended."""
        session, context, gateway = self.session, self.context, self.gateway
        self.session = self.context = self.gateway = None
        if session is not None and self.state == "ready":
            self.state = "stopped"  # before stop(): the notebook's stop hook must not react
            try:
                session.stop()
            except Exception:  # a session whose JVM is in trouble: it goes anyway
                pass
        jvm.close_jvm(gateway)
        self.forget_pyspark_session()
        return session, context

    def forget_pyspark_session(self):
        """PySpark keeps its context, session and gateway in class attributes: after a JVM is gone
        they would make the next start fail ("Cannot run multiple SparkContexts") or reuse it."""
        if self.connect:
            return
        context_module = sys.modules.get("pyspark.core.context") or sys.modules.get("pyspark.context")
        session_module = sys.modules.get("pyspark.sql.session")
        if context_module is not None:
            context_class = context_module.SparkContext
            context_class._active_spark_context = None
            context_class._gateway = None
            context_class._jvm = None
        if session_module is not None:
            session_module.SparkSession._instantiatedSession = None
            session_module.SparkSession._activeSession = None
        sql_context = sys.modules.get("pyspark.sql.context")
        if sql_context is not None:
            sql_context.SQLContext._instantiatedContext = None

    def shutdown(self):
        """At kernel exit: stop Spark gracefully; the watchdog handles any other way out."""
        if self.state == "ready":
            self.state = "stopping"  # the notebook's stop hook must not take it for the user's
            try:
                self.session.stop()
            except Exception:
                jvm.kill_jvm(self.proc)
        if self.lease is not None:
            self.lease.close()  # the shared driver's lease: it leaves once no notebook holds one
