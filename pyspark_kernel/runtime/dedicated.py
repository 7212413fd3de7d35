"""A dedicated driver (spark_driver dedicated, any master but sc://): a driver JVM of the kernel's
own, launched by PySpark's Py4J gateway with the kernel's settings (runtime.jvm), watched for its
exit, and let go when its session ends."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from . import address, auth, cache, callsite, dependencies, jvm, limits, shipping, ui, uiauth, warmup, workdir
from .converters import defer_numpy_converters
from .diagnostics import SparkDiedError, SparkStartError, check_master_reachable, check_spark_home, died_message, find_java
from .drivers import CANCEL_THREAD, Driver
from .guard import guard, quiet_py4j
from .options import resolve_secrets
from .state import State

log = logging.getLogger(__name__)

DEATH_WAIT = 2  # seconds a refused connection may take to show as the JVM's exit
QUIET_WAIT = 0.5  # the same, before Py4J's own report of a failed call is dropped
CANCEL_ATTEMPTS = 3
# Seconds a start waits for YARN's filter after the SparkContext (the application master sends it
# once it has reached the driver); the banner and %spark status look again later.
ROUTE_WAIT = 30
ROUTE_POLL = 0.2


class DedicatedDriver(Driver):
    has_context = True
    stops_when_idle = True

    def __init__(self, runtime) -> None:
        super().__init__(runtime)
        self.gateway = None  # the current session's Py4J gateway: how its JVM ended, once it has
        self.procs = []  # every driver JVM this kernel started that may still run
        self.quieted = False  # Py4J's reports of calls to a dead JVM are filtered (once a kernel)
        self.archive = None  # the class-data-sharing archive this kernel's JVM maps or writes
        self.ui_base = None  # the Jupyter server's base URL, when the UI is served through it
        self.ui_root = (None, None)  # (session generation, the root of its UI's links)
        self.ui_credential = uiauth.Credential(runtime.scratch)  # the UI answers only this kernel's user
        self.call_sites = None  # the notebook's call site, told to the current session's JVM (runtime.callsite)

    # -- a session's life

    def start(self, attempt) -> Any:
        runtime = self.runtime
        runtime.mark("loading pyspark")
        SparkSession = self.import_pyspark()
        from pyspark import SparkContext  # imported with pyspark.sql

        defer_numpy_converters()  # no numpy, pandas and pyarrow until the notebook uses them
        runtime.mark("checking the master")
        check_master_reachable(runtime.master)
        self.ui_base = ui.server_base(runtime.environ)
        runtime.mark("looking for Java")
        spark_home = check_spark_home(runtime.environ)
        java = find_java(runtime.environ)
        java_options = []
        fitted, attempt.notices = limits.fit(runtime.conf, runtime.kernel_conf, runtime.environ)  # the hub's CPU_LIMIT and MEM_LIMIT
        fitted.update(advertised_address(runtime, attempt))
        fitted.update(ivy_directory(runtime))
        fitted.update(workdir.warehouse(fitted, os.getcwd()))  # in a directory whose name has a space too
        environment = shipping.environment_archive(runtime, attempt)  # packed again if %pip changed it
        if runtime.options["class_data_sharing"]:
            self.archive, java_options = jvm.archive_options(java, spark_home, runtime.scratch, runtime.environ, runtime.watchdog, attempt.notices)
        runtime.mark("launching the driver JVM")
        # An archive that kills the JVM (or that it refuses) is set aside, and the JVM started without it.
        settings, secrets, conf = jvm.launch_healing(lambda options: self.launch(attempt, fitted, options, environment), java_options, self.archive,
                                                     runtime.scratch, self.log_file, lambda: attempt.timed_out, attempt.notices)
        gateway = self.gateway
        guard(gateway._gateway_client, runtime.held, lambda: self.death(gateway))
        if not self.quieted:
            quiet_py4j(self.jvm_exited)
            self.quieted = True
        # Secrets reach the JVM through Py4J, not its command line, which every user can list.
        conf.setAll(secrets.items())
        if attempt.timed_out:
            raise SparkStartError("timed out")
        runtime.mark("creating the SparkContext")
        context = SparkContext(conf=conf, gateway=self.gateway)
        context.setLogLevel(runtime.options["log_level"])
        self.call_sites = callsite.JvmCallSites(context._jsc)  # jobs named after the notebook's code
        self.call_sites.install(gateway._gateway_client)
        port = ui.ui_port(context.uiWebUrl)
        if self.ui_base and port and str(port) != settings.get("spark.ui.port") and context.master != "yarn":
            # Another process took the chosen port before the JVM bound it: Spark reads the proxy
            # base on each request, so the path can follow the port it took instead. (On YARN the
            # proxy base is YARN's, and the server extension rewrites it.)
            context._jvm.java.lang.System.setProperty("spark.ui.proxyBase", ui.proxy_base(self.ui_base, port))
        self.ui_credential.publish(uiauth.token_directory(runtime.scratch), port)
        if context.master == "yarn" and port:
            runtime.mark("waiting for YARN's web proxy")
            self.publish_route(context, ROUTE_WAIT)
        runtime.mark("creating the SparkSession")
        return SparkSession.builder.getOrCreate()

    def launch(self, attempt, conf: dict, java_options: list[str], environment: str | None = None) -> tuple[dict, dict, Any]:
        """Launch the driver JVM with ``java_options`` and the Spark settings ``conf`` (and the
        executors' packed ``environment``), as self.gateway; the settings, the secret ones among
        them, and the SparkConf it was launched with."""
        from pyspark import SparkConf, __version__ as spark_version
        from pyspark.java_gateway import launch_gateway

        runtime = self.runtime
        settings = jvm.launch_settings(conf, runtime.scratch, java_options, environment)
        protection = self.ui_credential.protect(settings, runtime.options["ui_access"], spark_version,  # the UI answers its owner only
                                                runtime.conf.get("spark.master", runtime.master), runtime.environ)
        settings.update(protection.settings)
        settings.update(ui.ui_settings(settings, self.ui_base))
        settings.update(auth.auth_settings(settings))  # the driver's RPC and blocks need a secret (runtime.auth)
        secrets = {**resolve_secrets(settings, runtime.environ), **protection.secrets}
        spark_conf = SparkConf(loadDefaults=False)
        spark_conf.setAll((key, value) for key, value in settings.items() if key not in secrets)
        # The JVM's log may quote the user's data and settings: its owner's alone, as its directory.
        with os.fdopen(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as output, \
                jvm.recording_launch(lambda proc: self.launched(attempt, proc), address.jvm_environment(settings, runtime.environ)):
            self.gateway = launch_gateway(conf=spark_conf, popen_kwargs={"stdout": output, "stderr": subprocess.STDOUT, "stdin": subprocess.PIPE})
        return settings, secrets, spark_conf

    def launched(self, attempt, proc) -> None:
        self.procs = [known for known in self.procs if known.poll() is None] + [proc]
        jvm.record_jvms(self.runtime.scratch, self.procs)
        attempt.launched(proc)

    def context_of(self, session: Any) -> Any:
        return session.sparkContext

    def abandon(self, attempt) -> None:
        jvm.kill_jvm(attempt.proc)
        forget_pyspark_session()

    def exit_code(self) -> int | None:
        return self.gateway.proc.poll()

    def jvm_exited(self) -> bool:
        """Whether the current JVM has exited. It waits a little: a refused connection can come
        before the exit is visible, and poll() says "running" while another thread waits on it."""
        if self.runtime.state == State.DEAD:
            return True
        try:
            self.runtime.attempt.proc.wait(timeout=QUIET_WAIT)
            return True
        except (subprocess.TimeoutExpired, AttributeError):  # running, or no JVM yet
            log.debug("waiting for the driver JVM's exit", exc_info=True)
            return False

    def death(self, gateway) -> Exception | None:
        """The error to raise for a failed call through ``gateway`` when its JVM is gone, else None."""
        if gateway is not self.gateway:
            return SparkDiedError("This belongs to a Spark session that has ended (spark.stop() or %spark restart): "
                                  "make it again from the current spark")
        try:
            returncode = gateway.proc.wait(timeout=DEATH_WAIT)
        except subprocess.TimeoutExpired:
            log.debug("waiting for the driver JVM's exit after a failed call", exc_info=True)
            return None  # alive: the call failed for another reason
        self.runtime.died(SparkDiedError(died_message(returncode, self.log_file)))
        error = self.runtime.error
        return error if isinstance(error, SparkDiedError) else SparkDiedError(died_message(returncode, self.log_file))

    def after_death(self, session: Any, context: Any) -> None:
        self.ui_credential.withdraw()
        # The gateway stays: it tells how the JVM ended.
        self.gateway._gateway_client.is_connected = False  # Py4J's finalizers stop calling a dead JVM
        server = getattr(context, "_accumulatorServer", None)
        if server is not None:  # its thread and socket would stay for the kernel's life
            server.shutdown()
            context._accumulatorServer = None
        forget_pyspark_session()

    def end(self, session: Any, stop: bool) -> None:
        gateway, self.gateway = self.gateway, None  # before stop(): its failed calls are an ended session's
        self.ui_credential.withdraw()
        super().end(session, stop)
        jvm.close_jvm(gateway)
        forget_pyspark_session()

    def kill(self) -> None:
        jvm.kill_jvm(self.runtime.attempt.proc)

    # -- cells

    def serves(self, options: dict) -> bool:
        return "spark.remote" not in options  # a builder that asks for a Spark Connect server goes there

    def begin_cell(self, group: str, cell: int) -> None:
        session = self.runtime.session
        if self.call_sites is not None:
            self.call_sites.forget()
        # No description: the Spark UI shows a job's description before its name, and the name
        # says which cell and line ran it (runtime.callsite); the same words twice say nothing more.
        self.runtime.context.setJobGroup(group, None, True)
        # The JVM keeps the active session per thread, and the kernel's was made in its start
        # thread: make it this thread's too, so getActiveSession() finds it at once.
        session._jvm.SparkSession.setActiveSession(session._jsparkSession)

    def cancel(self, group: str) -> None:
        self.runtime.context.cancelJobGroup(group)  # asynchronous in the JVM: returns at once

    def interrupt(self, group: str) -> None:
        threading.Thread(target=cancel_group, args=(self.runtime.context, group), name=CANCEL_THREAD, daemon=True).start()

    def progress(self, group: str) -> Any:
        from .progress import Progress

        runtime = self.runtime
        if self.ui_root[0] != runtime.generation:  # one JVM call a session, not one a cell
            self.ui_root = (runtime.generation, ui.ui_root(runtime.context.uiWebUrl, self.ui_base))
        return Progress(runtime.context, group, self.ui_root[1])

    # -- the warm-up

    def group_warm_up(self, group: str) -> None:
        self.runtime.context.setJobGroup(group, "pyspark-kernel warm-up", False)

    def warms_python_workers(self) -> bool:
        return not warmup.dynamic_allocation(self.runtime.context)

    def cache_in_use(self) -> list[str]:
        ivy = [dependencies.ivy_dir(self.runtime.environ)] if self.runtime.conf.get(dependencies.PACKAGES) else []
        return ([self.archive] if self.archive else []) + ivy

    def pip_notice(self, changes) -> str | None:
        return shipping.pip_notice(self.runtime, changes)

    # -- what the notebook shows

    def publish_route(self, context: Any, wait: float = 0.0) -> None:
        """On YARN, once its filter is in front of the UI, tell the Jupyter server to open the UI
        through the application's tracking URL (runtime.uiauth); waits up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while not self.ui_credential.route and not self.ui_credential.token:
            url = tracking_url(context)
            if url:
                self.ui_credential.publish_route(uiauth.token_directory(self.runtime.scratch), ui.ui_port(context.uiWebUrl), url)
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(ROUTE_POLL)  # the filter comes by an RPC of YARN's application master: nothing to wait on

    def ui_link(self) -> str | None:
        context = self.runtime.context
        if context.master == "yarn" and context.uiWebUrl:
            self.publish_route(context)  # YARN's filter came after the start's wait
        return ui.ui_link(context.uiWebUrl, self.ui_base)

    def banner(self) -> str:
        sc = self.runtime.context
        return f"Spark {sc.version} | master {sc.master} | app {sc.applicationId} | UI {self.ui_link() or 'off'}"

    def status_lines(self) -> list[str]:
        runtime = self.runtime
        lines = [f"master: {runtime.conf.get('spark.master', runtime.master)}", auth.status_line(runtime.conf),
                 limits.status_line(runtime.conf, runtime.kernel_conf, runtime.environ)]
        if runtime.state == State.READY:
            sc = runtime.context
            executors = sc._jsc.sc().getExecutorMemoryStatus().size() - (0 if sc.master.startswith("local") else 1)
            lines.append(f"application: {sc.applicationId} | UI {self.ui_link() or 'off'}")
            tracking = tracking_url(sc)
            if tracking:
                lines.append(f"tracking URL: {tracking}")
            lines += self.ui_credential.status_lines(sc.uiWebUrl)
            lines.append(f"executors: {executors}" + (" (the driver itself, in local mode)" if sc.master.startswith("local") else ""))
        return lines


# Set on the driver's SparkConf when YARN's application master registers: the ResourceManager's
# web proxy for this application, what YARN lists as its tracking URL.
PROXY_BASES = "spark.org.apache.spark.deploy.yarn.AmIpFilter.param.PROXY_URI_BASES"


def tracking_url(sc: Any) -> str | None:
    """The YARN application's tracking URL (None off YARN, or before its master registered: the
    kernel's stand-in for YARN's filter has no application in its URL)."""
    if sc.master != "yarn":
        return None
    ending = f"/proxy/{sc.applicationId}"
    bases = [base.rstrip("/") for base in sc._jsc.sc().conf().get(PROXY_BASES, "").split(",")]
    return next((base + "/" for base in bases if base.endswith(ending)), None)


def advertised_address(runtime, attempt) -> dict:
    """spark.driver.host for a YARN or standalone cluster, when the kernel has to choose it
    (runtime.address); a notice with the setting to give when it cannot."""
    try:
        host = address.driver_host(runtime.conf.get("spark.master", runtime.master), runtime.conf, runtime.environ)
    except address.Unknown as why:
        attempt.notices.append(f"{address.DRIVER_HOST}: {why}, so Spark picks an address the cluster may not reach ({address.FIX})")
        return {}
    return {address.DRIVER_HOST: host} if host else {}


def ivy_directory(runtime) -> dict:
    """spark.jars.ivy in the per-user cache when the session resolves packages (runtime.dependencies);
    this kernel then counts as the directory's user, so that no prune removes the jars its driver loads."""
    settings = dependencies.ivy_settings(runtime.conf, runtime.environ)
    if settings:
        cache.claim_ivy(runtime.environ)
        cache.mark_used(settings[dependencies.IVY], ())
    return settings


def cancel_group(context: Any, group: str) -> None:
    """Cancel a cell's job group, from interrupt's thread."""
    # A connection broken by an earlier interrupt can still be in the pool, and the first call
    # that picks it up fails: try again on a fresh one.
    for _ in range(CANCEL_ATTEMPTS):
        try:
            context.cancelJobGroup(group)
            return
        except Exception:  # a broken connection, or Spark is going away
            log.debug("cancelling the job group %s", group, exc_info=True)
            continue


def forget_pyspark_session() -> None:
    """PySpark keeps its context, session and gateway in class attributes: after a JVM is gone
    they would make the next start fail ("Cannot run multiple SparkContexts") or reuse it."""
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
