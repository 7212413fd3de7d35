"""A shared Spark driver (spark_driver shared): the notebooks of a kernel attach to one local Spark
Connect server per user and configuration, instead of each starting a driver JVM of its own. This
is the notebook's side (SharedDriver, a Spark Connect driver); driver_server is the server's.

- The server is found by a key: the Spark installation and version, the Java, the Python and the
  settings that need a JVM of their own. Settings a Connect session can change (``spark.sql.*``
  but the static ones) are each notebook's, so kernels that differ only in them share a server.
- Its files live in a per-user directory that only the user can enter (0700): the discovery
  record with the token (0600), the Unix socket the notebooks attach through, the log.
- driver_server runs it, in a session of its own so that it outlives the notebook that started
  it. Each notebook holds a connection to its socket (a lease) for as long as it lives; the
  server leaves a while (driver_linger) after the last one has gone, and closes every lease when
  its JVM dies, which is how a notebook learns of the death at once.
- The token reaches the server through its standard input and its JVM's environment, and the
  notebook's client in memory: never a command line, kernel.json or a log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable

from . import auth, limits, spare, starter, ui, uiauth, userdir, workdir
from .driverfiles import Paths, read_record, remove_files
from .connect import ConnectDriver, load_client
from .diagnostics import RESTART_HINT, SHARED_SC_FIX, SHARED_SC_PROBLEM, SharedDriverError, SparkDiedError, SparkStartError, check_spark_home, find_java, log_tail
from .options import resolve_secrets
from .profile import duration

log = logging.getLogger(__name__)

# Static SQL settings: fixed when the server starts, so part of its key (Spark's StaticSQLConf).
STATIC_SQL = ("spark.sql.warehouse.dir", "spark.sql.catalogImplementation", "spark.sql.extensions", "spark.sql.hive.",
              "spark.sql.globalTempDatabase", "spark.sql.queryExecutionListeners", "spark.sql.streaming.streamingQueryListeners",
              "spark.sql.cache.serializer", "spark.sql.ui.", "spark.sql.event.", "spark.sql.connect.", "spark.sql.artifact.")
# The kernel's own name for its application, and a UI port chosen at each start: not the server's.
NOT_KEYED = ("spark.app.name", "spark.ui.port", "spark.ui.proxyBase")
SERVER_NAME = "pyspark-kernel shared driver"
ATTACH_TIMEOUT = 10  # seconds a live server may take to answer on its socket
CONNECTION_LOST = ("StatusCode.UNAVAILABLE", "closed channel", "Connection refused", "Socket closed")  # the client's words for a server gone
DEATH_NOTICE = 5  # seconds a connection error waits for the lease to say the server is gone


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


def ask(path: str, message: dict, timeout: float = ATTACH_TIMEOUT) -> Any:
    """Connect to a server's socket and send one request line; the connected socket and its answer."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
        client.sendall(json.dumps(message).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                raise ConnectionError("the shared driver closed the connection")
            answer += chunk
        client.settimeout(None)
        return client, json.loads(answer)
    except BaseException:
        client.close()
        raise


class Lease:
    """A notebook's attachment to a shared driver: while it is open, the server stays."""

    def __init__(self, paths, record, connection):
        self.paths, self.record, self.connection = paths, record, connection
        self.lost = threading.Event()
        self.closed = False

    @property
    def url(self) -> str:
        return spare.url(self.record)

    def watch(self, on_lost: Callable[[], None]) -> None:
        """Call ``on_lost()`` once, from a thread of its own, when the server closes the lease."""

        def wait():
            try:
                while self.connection.recv(4096):
                    pass
            except OSError:
                log.debug("reading the shared driver's lease", exc_info=True)
            self.lost.set()
            if not self.closed:
                on_lost()

        threading.Thread(target=wait, name="pyspark-kernel-shared-driver", daemon=True).start()

    def status(self) -> dict:
        """What the server says of itself: pids, start time, the notebooks attached, the UI."""
        connection, answer = ask(self.paths.socket, {"status": True})
        connection.close()
        return answer

    def close(self) -> None:
        self.closed = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("closing the shared driver's lease", exc_info=True)
        self.connection.close()


def attach_to(paths: Paths, spark_version: str) -> Lease | None:
    """A lease on the live server of ``paths``, or None (no record, another version, or stale)."""
    record = read_record(paths.record)
    if record is None or record.get("spark_version") != spark_version or record.get("key") != paths.key:
        return None
    try:
        connection, answer = ask(paths.socket, {"attach": os.getpid()})
    except (OSError, ValueError):
        log.debug("attaching to the shared driver on %s", paths.socket, exc_info=True)
        return None  # a record its server did not remove: it died
    if not answer.get("attached"):
        connection.close()
        return None
    return Lease(paths, record, connection)


def check_socket_path(path: str) -> None:
    """The notebooks attach through a Unix socket in the user's runtime directory, whose path the
    kernel cannot shorten: a directory too deep is said at once, not as the server's failure."""
    if not userdir.socket_path_fits(path):
        raise SparkStartError(f"the shared driver's socket {path} is {len(os.fsencode(path))} bytes long, more than a Unix socket's path may be ({userdir.SOCKET_PATH_MAX})",
                              "set XDG_RUNTIME_DIR (or TMPDIR, when XDG_RUNTIME_DIR is unset) to a shorter directory of yours, then restart the kernel")


def attach(paths: Paths, environ: dict, spark_version: str, launch: dict, timeout: float, mark: Callable[[str], None] = lambda step: None,
           meanwhile: Callable[[], None] = lambda: None) -> Lease:
    """Find the server of ``paths``, or start one with ``launch`` (its settings for
    driver_server), running ``meanwhile()`` while its JVM starts: a Lease. A start that fails
    raises SparkStartError with the server's log."""
    check_socket_path(paths.socket)
    with Locked(paths, timeout):
        lease = attach_to(paths, spark_version)
        if lease is not None:
            return lease
        remove_files(paths)  # a stale record, or another version's
        mark("starting the shared driver")
        start_server(paths, launch, environ, timeout, meanwhile)
        lease = attach_to(paths, spark_version)
    if lease is None:
        raise SparkStartError(f"the shared driver started but does not answer on {paths.socket}", f"see {paths.log}; run %spark restart")
    return lease


def start_server(paths: Paths, launch: dict, environ: dict, timeout: float, meanwhile: Callable[[], None] = lambda: None) -> None:
    """Start driver_server for ``paths``, run ``meanwhile()``, and wait until the server says it
    serves, or fails."""
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
    deadline = time.monotonic() + timeout
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


def fail_fast(session: Any) -> None:
    """Spark Connect's client retries a server it cannot reach for about ten minutes; a shared
    driver on this machine is there or gone (and its lease says so first): seconds, not minutes."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    session.client.set_retry_policies([DefaultPolicy(max_retries=4, initial_backoff=100, max_backoff=2000)])


def new_token() -> str:
    return secrets.token_urlsafe(32)


class SharedDriver(ConnectDriver):
    """The kernel's driver as a client of the shared driver: it attaches (starting the server if
    need be) with a lease, and learns of the server's death when the server closes it."""

    def __init__(self, runtime) -> None:
        super().__init__(runtime)
        self.lease = None  # the shared driver this kernel is attached to
        self.server_log = None  # that server's log, once the kernel has attached
        self.ui_base = None  # the Jupyter server's base URL, when the UI is served through it
        self.ui_credential = uiauth.Credential(runtime.scratch)  # the server's UI token, for this user's Jupyter server

    @property
    def log_file(self) -> str:
        return self.server_log or super().log_file  # the server's: %spark log and failure messages show it

    def pip_notice(self, changes) -> str | None:
        return None  # the shared server's Python workers run this kernel's own environment (its key)

    def start(self, attempt) -> Any:
        runtime = self.runtime
        SparkSession = self.import_pyspark()
        # The client's modules load while the server's JVM starts, if it has to.
        lease, session_conf, attempt.notices = self.find_server(meanwhile=load_client)
        self.ui_base = ui.server_base(runtime.environ)
        self.ui_credential.publish(uiauth.token_directory(runtime.scratch), ui.ui_port(lease.record.get("ui")), lease.record.get("ui_token"), lease.record.get("ui_note", ""))
        # A kernel forked by the kernel starter attaches to the warm session made ahead for it (runtime.spare).
        ahead = starter.take_spare(lease.record, lease.paths.key)
        session = None
        if ahead is not None:
            runtime.mark("connecting to the shared driver's session made ahead")
            try:
                session = self.new_session(SparkSession, spare.url(lease.record, ahead), session_conf)
            except Exception:  # noqa: BLE001 - the server forgot it (its session timeout): a new one
                log.debug("attaching to the session made ahead", exc_info=True)
        self.warm_session = session is not None  # its first query has run: no warm-up job
        if session is None:
            runtime.mark("connecting to the shared driver")
            session = self.new_session(SparkSession, lease.url, session_conf)
        fail_fast(session)
        starter.ensure(lease.record["pid"], lease.paths.record)  # the next notebooks' kernels, forked
        return session

    def new_session(self, SparkSession: Any, url: str, session_conf: dict) -> Any:
        """A session of this notebook's own on the server at ``url`` (never a gone one), with its settings."""
        builder = self.remote_builder(SparkSession, url)
        # Relative paths resolve against this notebook's directory, not the server's (workdir).
        for name, value in {**session_conf, **workdir.session_settings(os.getcwd())}.items():
            builder = builder.config(name, value)
        return builder.create()  # the settings go in one round trip, which fails for a session the server has closed

    def find_server(self, meanwhile: Callable[[], None] = lambda: None) -> tuple[Lease, dict, list[str]]:
        """A lease on the shared driver of this kernel's settings, which is started if need be
        (``meanwhile()`` runs while its JVM starts); the settings each session applies itself,
        and lines for the notebook about the hub's limits."""
        runtime = self.runtime
        import pyspark

        runtime.mark("finding the shared driver")
        spark_home = check_spark_home(runtime.environ)
        java = find_java(runtime.environ)
        fitted, notices = limits.fit(runtime.conf, runtime.kernel_conf, runtime.environ)  # the server's JVM counts against the user's limits
        server_conf, session_conf = split_settings(fitted)
        key = server_key(pyspark.__version__, spark_home, java, sys.executable, server_conf,
                         [(name, runtime.environ.get(name, "")) for name in ("PYSPARK_PYTHON", "JAVA_HOME")] + [("ui_access", runtime.options["ui_access"])])
        lease = self.lease
        if lease is None or lease.lost.is_set() or lease.paths.key != key:
            if lease is not None:
                lease.close()  # another key (%spark restart --conf): that server may leave
            launch_conf = dict(server_conf)
            launch_conf.update(ui.ui_settings(launch_conf, ui.server_base(runtime.environ)))
            secrets = resolve_secrets(launch_conf, runtime.environ)
            launch = {"conf": {k: v for k, v in launch_conf.items() if k not in secrets}, "secrets": secrets, "token": new_token(),
                      "linger": runtime.options["driver_linger"], "log_level": runtime.options["log_level"], "spark_home": spark_home,
                      "java": java, "spark_version": pyspark.__version__, "timeout": runtime.options["start_timeout"],
                      "ui_access": runtime.options["ui_access"], "cwd": os.getcwd(), "class_data_sharing": runtime.options["class_data_sharing"]}
            paths = Paths(runtime_dir(runtime.environ), key)
            self.server_log = paths.log
            lease = attach(paths, runtime.environ, pyspark.__version__, launch, runtime.options["start_timeout"], mark=runtime.mark, meanwhile=meanwhile)
            self.lease = lease
            lease.watch(lambda: self.lost(lease))
        return lease, session_conf, notices

    def lost(self, lease: Lease) -> None:
        """The shared driver closed this kernel's lease: its JVM died, or it was stopped."""
        error = SparkDiedError(f"The shared Spark driver (pid {lease.record.get('jvm')}) has exited. Spark objects made before are gone",
                               f"{RESTART_HINT}; it starts a new shared driver")
        # Only this kernel's current lease: a lease left for another key (a restart) may close later.
        if lease is self.lease:
            self.ui_credential.withdraw()
        self.runtime.died(error, record_anyway=True, provided=lambda: lease is self.lease)

    def close(self) -> None:
        self.ui_credential.withdraw()
        if self.lease is not None:
            self.lease.close()  # it leaves once no notebook holds a lease

    # -- cells

    def context_error(self) -> Exception | None:
        return SharedDriverError(SHARED_SC_PROBLEM, SHARED_SC_FIX)

    def explain_death(self, shell: Any) -> None:
        """A cell whose call was under way (or began) as the server died gets the Connect
        client's connection errors, after its retries: show the runtime's one error instead, once
        the lease says the server is gone."""
        import warnings

        from pyspark.errors.exceptions.connect import SparkConnectException

        runtime = self.runtime
        # The client warns as it gives up retrying; the error below says what happened.
        warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]")

        def handler(shell, etype, value, tb, tb_offset=None):
            lease, text = self.lease, str(value)
            # Not every Connect error: an AnalysisException is one too, and must not wait.
            unreachable = any(sign in text for sign in CONNECTION_LOST)
            if lease is not None and (lease.lost.is_set() or unreachable and lease.lost.wait(DEATH_NOTICE)) and runtime.error is not None:
                error = type(runtime.error)(str(runtime.error))
                return shell.showtraceback((type(error), error, None), tb_offset=tb_offset)
            return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

        shell.set_custom_exc((SparkConnectException, ValueError), handler)

    # -- what the notebook shows

    def ui_link(self) -> str | None:
        return ui.ui_link(self.lease.record.get("ui"), self.ui_base) if self.lease else None

    def banner(self) -> str:
        record = self.lease.record
        # The server's version is the kernel's (its key): no round trip to ask it.
        return (f"Spark {record.get('spark_version') or self.runtime.session.version} | shared driver (pid {record.get('jvm')}, master {record.get('master')}) | "
                f"UI {self.ui_link() or 'off'}")

    def status_lines(self) -> list[str]:
        lease, runtime = self.lease, self.runtime
        if lease is None or lease.lost.is_set():
            return ["shared driver: none attached"]
        try:
            found = lease.status()
        except (OSError, ValueError):
            log.debug("asking the shared driver for its status", exc_info=True)
            return [f"shared driver: not answering (its log: {lease.paths.log})"]
        notebooks = found.get("notebooks", [])
        return [f"shared driver: pid {found.get('jvm')}, master {found.get('master')}, up {duration(time.time() - found.get('started', time.time()))}",
                limits.status_line(runtime.conf, runtime.kernel_conf, runtime.environ),
                f"notebooks attached: {len(notebooks)} (kernel pids {', '.join(str(pid) for pid in notebooks)})",
                *[f"held by the Jupyter server (pid {pid}) while it runs (driver_prestart)" for pid in found.get("held_by", [])],
                f"UI {self.ui_link() or 'off'}", *self.ui_credential.status_lines(lease.record.get("ui")), auth.status_line(self.runtime.conf)]
