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

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from . import auth, driverstart, limits, spare, starter, ui, uiauth, userdir, workdir
from .driverfiles import Paths, read_record, remove_files
from .connect import ConnectDriver, load_client
from .diagnostics import RESTART_HINT, SHARED_SC_FIX, SHARED_SC_PROBLEM, SharedDriverError, SparkDiedError, SparkStartError
from .profile import duration

log = logging.getLogger(__name__)

ATTACH_TIMEOUT = 10  # seconds a live server may take to answer on its socket
CONNECTION_LOST = ("StatusCode.UNAVAILABLE", "closed channel", "Connection refused", "Socket closed")  # the client's words for a server gone
DEATH_NOTICE = 5  # seconds a connection error waits for the lease to say the server is gone


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
    raises SparkStartError with the server's log. One the kernel's launcher began (driverstart.
    start_ahead) is taken over: its lock is held already."""
    check_socket_path(paths.socket)
    ahead = driverstart.take_ahead(paths.key)
    if ahead is not None:
        with ahead.lock:
            mark("starting the shared driver (begun as the kernel launched)")
            driverstart.wait_serving(ahead.proc, paths, timeout, meanwhile, started=ahead.started)
            lease = attach_to(paths, spark_version)
    else:
        with driverstart.Locked(paths, timeout):
            lease = attach_to(paths, spark_version)
            if lease is not None:
                return lease
            remove_files(paths)  # a stale record, or another version's
            mark("starting the shared driver")
            driverstart.wait_serving(driverstart.spawn(paths, launch, environ), paths, timeout, meanwhile)
            lease = attach_to(paths, spark_version)
    if lease is None:
        raise SparkStartError(f"the shared driver started but does not answer on {paths.socket}", f"see {paths.log}; run %spark restart")
    return lease


def fail_fast(session: Any) -> None:
    """Spark Connect's client retries a server it cannot reach for about ten minutes; a shared
    driver on this machine is there or gone (and its lease says so first): seconds, not minutes."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    session.client.set_retry_policies([DefaultPolicy(max_retries=4, initial_backoff=100, max_backoff=2000)])


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
        plan = driverstart.Plan(runtime.environ, runtime.conf, runtime.kernel_conf, runtime.options, pyspark.__version__)
        lease = self.lease
        if lease is None or lease.lost.is_set() or lease.paths.key != plan.paths.key:
            if lease is not None:
                lease.close()  # another key (%spark restart --conf): that server may leave
            self.server_log = plan.paths.log
            lease = attach(plan.paths, runtime.environ, pyspark.__version__, plan.launch(), runtime.options["start_timeout"], mark=runtime.mark, meanwhile=meanwhile)
            self.lease = lease
            lease.watch(lambda: self.lost(lease))
        return lease, plan.session_conf, plan.notices

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
