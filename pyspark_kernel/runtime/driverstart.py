"""Starting a shared driver: what a kernel's settings make of it (Plan: its key and files, the
keeper's settings), its keeper started (spawn) and waited for (wait_serving), under the key's lock
(Locked). A notebook's runtime starts one when none serves its key (shared.attach).

A first notebook's launcher (starter.launch) starts it before ipykernel loads (start_ahead): the
JVM's start, most of a first notebook's wait, then runs beside ipykernel's and the runtime's own,
instead of after them. The runtime takes the start over, lock and all (take_ahead).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterable

from . import limits, ui, userdir
from .diagnostics import SparkStartError, check_spark_home, find_java, log_tail
from .driverfiles import Paths, read_record, remove_files
from .options import clear_unset, read_conf, read_options, resolve_secrets
from .versionfile import package_version

log = logging.getLogger(__name__)

# Static SQL settings: fixed when the server starts, so part of its key (Spark's StaticSQLConf).
STATIC_SQL = ("spark.sql.warehouse.dir", "spark.sql.catalogImplementation", "spark.sql.extensions", "spark.sql.hive.",
              "spark.sql.globalTempDatabase", "spark.sql.queryExecutionListeners", "spark.sql.streaming.streamingQueryListeners",
              "spark.sql.cache.serializer", "spark.sql.ui.", "spark.sql.event.", "spark.sql.connect.", "spark.sql.artifact.")
# The kernel's own name for its application, and a UI port chosen at each start: not the server's.
NOT_KEYED = ("spark.app.name", "spark.ui.port", "spark.ui.proxyBase")
SERVER_NAME = "pyspark-kernel shared driver"


def session_setting(key: str) -> bool:
    """Whether a setting is each notebook's (a runtime SQL setting) rather than the server's."""
    return key.startswith("spark.sql.") and not key.startswith(STATIC_SQL)


def split_settings(conf: dict) -> tuple[dict, dict]:
    """({server's settings}, {each session's settings})."""
    server = {key: value for key, value in conf.items() if not session_setting(key)}
    return server, {key: value for key, value in conf.items() if session_setting(key)}


def server_key(spark_version: str, spark_home: str, java: str, python: str, server_conf: dict, environ_facts: Iterable = ()) -> str:
    """The key of the server a kernel may attach to: a short digest of what its JVM fixes."""
    facts = {
        "spark_version": spark_version,
        "spark_home": os.path.realpath(spark_home),
        "java": os.path.realpath(java),
        "python": os.path.realpath(python),
        "conf": {key: value for key, value in sorted(server_conf.items()) if key not in NOT_KEYED},
        "env": dict(environ_facts),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def runtime_dir(environ: dict) -> str:
    """The user's own directory for shared drivers (userdir), made 0700."""
    try:
        return userdir.private_dir(environ)
    except userdir.NotPrivate as error:
        raise SparkStartError(error.problem, error.fix) from None


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Plan:
    """The shared driver of a kernel's settings: its files (by its key), the settings each session
    applies itself, lines for the notebook about the hub's limits, and (launch) the keeper's settings."""

    def __init__(self, environ: dict, conf: dict, kernel_conf: dict, options: dict, spark_version: str) -> None:
        self.environ, self.options, self.spark_version = environ, options, spark_version
        self.spark_home = check_spark_home(environ)
        self.java = find_java(environ)
        fitted, self.notices = limits.fit(conf, kernel_conf, environ)  # the server's JVM counts against the user's limits
        self.server_conf, self.session_conf = split_settings(fitted)
        key = server_key(spark_version, self.spark_home, self.java, sys.executable, self.server_conf,
                         [(name, environ.get(name, "")) for name in ("PYSPARK_PYTHON", "JAVA_HOME")] + [("ui_access", options["ui_access"])])
        self.paths = Paths(runtime_dir(environ), key)

    def launch(self) -> dict:
        """What driver_server reads on its standard input: the secrets apart from the settings, and a new token."""
        conf = dict(self.server_conf)
        conf.update(ui.ui_settings(conf, ui.server_base(self.environ)))
        found = resolve_secrets(conf, self.environ)
        options = self.options
        return {"conf": {k: v for k, v in conf.items() if k not in found}, "secrets": found, "token": new_token(),
                "linger": options["driver_linger"], "log_level": options["log_level"], "spark_home": self.spark_home,
                "java": self.java, "spark_version": self.spark_version, "timeout": options["start_timeout"],
                "ui_access": options["ui_access"], "cwd": os.getcwd(), "class_data_sharing": options["class_data_sharing"]}


class Locked:
    """The key's lock file, held while a kernel finds or starts the server, and while the server
    decides to leave: nobody attaches to a server that is going."""

    def __init__(self, paths, timeout):
        self.paths, self.timeout, self.handle = paths, timeout, None

    def __enter__(self):
        deadline = time.monotonic() + self.timeout
        while True:
            self.handle = os.fdopen(os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600), "r+")
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if same_file(self.handle, self.paths.lock):
                    return self
                self.handle.close()  # a leaving server removed the file while we waited: lock the new one
            except BlockingIOError:
                self.handle.close()
                if time.monotonic() > deadline:
                    raise SparkStartError(f"another notebook has been starting the shared driver for {self.timeout:.0f} s",
                                          f"its log: {self.paths.log}; raise start_timeout, or run %spark restart") from None
                time.sleep(0.1)

    def __exit__(self, *exc):
        self.handle.close()  # releases the lock

    def remove(self) -> None:
        """Remove the lock file while holding it (a server that leaves): waiters lock a new one."""
        try:
            os.unlink(self.paths.lock)
        except FileNotFoundError:
            log.debug("removing the lock file %s", self.paths.lock, exc_info=True)


def same_file(handle: Any, path: str) -> bool:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        log.debug("looking at the lock file %s", path, exc_info=True)
        return False
    mine = os.fstat(handle.fileno())
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def spawn(paths: Paths, launch: dict, environ: dict) -> subprocess.Popen:
    """Start driver_server for ``paths`` (the caller holds the key's lock): its first process,
    which forks the server, says its pid and leaves; the server says "ready" or "failed"."""
    package = __name__.rsplit(".", 1)[0]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environ.get("PYTHONPATH")]))
    os.makedirs(paths.scratch, mode=0o700, exist_ok=True)
    env["TMPDIR"] = paths.scratch  # not the first notebook's: the server outlives it
    with os.fdopen(os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as output:
        proc = subprocess.Popen([sys.executable, "-m", f"{package}.driver_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=output,
                                env=env, cwd=paths.directory, start_new_session=True, close_fds=True)
    proc.stdin.write(json.dumps({"directory": paths.directory, "key": paths.key, **launch}).encode())
    proc.stdin.close()
    return proc


def wait_serving(proc: subprocess.Popen, paths: Paths, timeout: float, meanwhile: Callable[[], None] = lambda: None, started: float | None = None) -> None:
    """Run ``meanwhile()``, then wait until the server of ``proc`` says it serves, or fails:
    ``timeout`` seconds from ``started`` (now by default)."""
    deadline = (time.monotonic() if started is None else started) + timeout
    said, failed = b"", None
    try:
        try:
            meanwhile()
        except ImportError as error:  # raised once the server has started: attached by nobody, it leaves after its linger
            failed = error
        while not said.endswith(b"ready\n") and not said.endswith(b"failed\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                kill_server(said)
                raise SparkStartError(f"the shared driver did not start within {timeout:.0f} s (raise start_timeout); "
                                      f"its log ({paths.log}) ends:\n{log_tail(paths.log)}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            said += chunk
    finally:
        proc.stdout.close()
        proc.wait()  # the first process: it forks the server and leaves at once
    if not said.endswith(b"ready\n"):
        raise SparkStartError(f"the shared driver did not start; its log ({paths.log}) ends:\n{log_tail(paths.log)}")
    if failed is not None:
        raise failed


def kill_server(said: bytes) -> None:
    """Kill a server that said its pid but not that it serves (its JVM goes with it)."""
    for line in said.decode(errors="replace").splitlines():
        if line.startswith("pid ") and line[4:].isdigit():
            try:
                os.kill(int(line[4:]), signal.SIGKILL)
            except ProcessLookupError:
                log.debug("killing the shared driver that did not start", exc_info=True)


# -- started by the launcher, before ipykernel loads


class Ahead:
    """A start the launcher made: the key's lock, held until the runtime has attached, and the keeper."""

    def __init__(self, lock: Locked, proc: subprocess.Popen, started: float) -> None:
        self.lock, self.proc, self.started = lock, proc, started


AHEAD: dict = {}  # the key -> the Ahead this process's launcher made


def installed_pyspark_version() -> str | None:
    """pyspark.__version__ as the runtime's key will have it, read from the pyspark package that
    the kernel's Python finds, without importing it (versionfile)."""
    spec = importlib.util.find_spec("pyspark")
    for directory in (spec.submodule_search_locations or []) if spec is not None else []:
        found = package_version(directory)
        if found:
            return found
    return None


def start_ahead(environ: dict) -> None:
    """Start the shared driver of the kernel of ``environ`` (kernel.json's), when it starts Spark
    as the kernel starts (init background or eager) and no notebook serves or starts it. Whatever
    goes wrong is left to the runtime's own start, which says so in the notebook."""
    environ = dict(environ)
    clear_unset(environ)
    try:
        options = read_options(environ)
        if options.get("spark_driver") != "shared" or options["init"] == "lazy":
            return
        version = installed_pyspark_version()
        if version is None:
            return
        conf = read_conf(environ)
        plan = Plan(environ, conf, dict(conf), options, version)
        if not userdir.socket_path_fits(plan.paths.socket):
            return
        lock = Locked(plan.paths, 0)
        lock.__enter__()  # raises at once if another notebook is starting it
    except Exception:  # noqa: BLE001 - the runtime's start meets it again and tells the notebook
        log.debug("starting the shared driver as the kernel launches", exc_info=True)
        return
    try:
        if read_record(plan.paths.record) is not None:  # one serves (or a dead one's record: the runtime sees to it)
            lock.__exit__()
            return
        remove_files(plan.paths)
        AHEAD[plan.paths.key] = Ahead(lock, spawn(plan.paths, plan.launch(), environ), time.monotonic())
    except Exception:  # noqa: BLE001 - as above
        lock.__exit__()
        log.debug("starting the shared driver as the kernel launches", exc_info=True)


def take_ahead(key: str) -> Ahead | None:
    """The launcher's start of the server of ``key``, if it made one. Any other it made is let go:
    that server, attached by nobody, leaves after its linger."""
    ahead = AHEAD.pop(key, None)
    for other in list(AHEAD):
        AHEAD.pop(other).lock.__exit__()
    return ahead
