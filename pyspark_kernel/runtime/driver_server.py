"""The shared driver's own process (see driver): the keeper of a Spark Connect server's JVM on
loopback, and of the notebooks' leases. It imports no PySpark: a few megabytes of Python beside
the JVM, not a second PySpark driver.

Started by the first notebook with its settings on standard input; it forks away from that
notebook, says its pid, and prints "ready" once the Connect server answers and its record is
written, then:
- holds one connection per attached notebook on its Unix socket, and answers status requests;
- leaves driver_linger seconds after the last notebook has gone (or, once ready, when none has
  come), removing its record and socket first;
- when its JVM dies, removes them too and closes every lease, so each notebook knows at once.
Its JVM dies with it however it dies (Linux: the parent-death signal).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import ctypes
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from . import jvm, workdir
from . import log as runtime_log
from .auth import auth_settings
from .diagnostics import java_release, release_version
from .driverfiles import Paths, remove_files, write_record
from .driverstart import SERVER_NAME, Locked
from .ui import free_port
from .uiauth import protect

# Run with -m, this module's __name__ is __main__: its logger is named after the module all the same.
log = logging.getLogger(__spec__.name if __spec__ else __name__)

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
LINGER_RETRY = 0.5  # seconds before another try at leaving, when a notebook holds the lock
STOP_GRACE = 20  # seconds Spark may take to stop before its JVM is killed
ARCHIVE_GRACE = 180  # the same for a JVM that writes its class-data-sharing archive as it exits (as watchdog.sh allows)
PROBE_EVERY = 0.05  # seconds between checks that the gRPC port answers, while the JVM starts
PR_SET_PDEATHSIG = 1
# A shared driver mostly waits for its notebooks. Once it has been idle this long, G1 collects and
# gives unused heap back to the system (JEP 346), and the JVM trims glibc's free native memory; a
# busy server collects as it always does. Measured with 8 notebooks (make bench): its JVM takes
# about 390 MiB instead of 450-580, for about 0.6 s of CPU a minute while it is idle.
IDLE_RETURN_MS = 10000
IDLE_HEAP_OPTIONS = (f"-XX:G1PeriodicGCInterval={IDLE_RETURN_MS}", "-XX:MinHeapFreeRatio=5", "-XX:MaxHeapFreeRatio=20")
TRIM_SINCE = {17: 9, 21: 1}  # -XX:TrimNativeHeapInterval: the update that has it, per feature release; 22 on always


def can_trim_native_heap(release_text: str | None) -> bool:
    """Whether the JDK whose `release` file reads so has -XX:TrimNativeHeapInterval (17.0.9+, 21.0.1+, 22+):
    an older one would refuse to start with it."""
    found = release_version(release_text)
    if not found:
        return False
    feature, update = found
    return feature >= 22 or update >= TRIM_SINCE.get(feature, 10**6)


def idle_java_options(release_text: str | None) -> list[str]:
    options = list(IDLE_HEAP_OPTIONS)
    if can_trim_native_heap(release_text):
        options.append(f"-XX:TrimNativeHeapInterval={IDLE_RETURN_MS}")
    return options


def server_settings(conf: dict, scratch: str, port: int, ui_port: int, log_level: str, java_options=()) -> dict:
    """What the JVM is launched with: the kernel's settings, then what makes it a Connect server on
    loopback only (gRPC, driver RPC and block manager; SPARK_LOCAL_IP does the UI). ``java_options``
    come before the kernel's spark.driver.extraJavaOptions, which can override them."""
    settings = dict(conf)
    settings.update({
        "spark.app.name": SERVER_NAME,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.local.dir": scratch,
        "spark.ui.port": str(ui_port),
        "spark.log.level": log_level,
    })
    settings.update(auth_settings(settings))  # a local driver: Spark makes the session's secret
    options = settings.get("spark.driver.defaultJavaOptions", "")
    # Spark's launcher splits these on whitespace: a scratch path with a space is quoted.
    settings["spark.driver.defaultJavaOptions"] = " ".join([options, *map(jvm.java_option_text, [*java_options, f"-Djava.io.tmpdir={scratch}"])]).strip()
    return settings


def properties_text(settings: dict) -> str:
    """Java properties, as spark-submit reads a --properties-file (UTF-8): one setting a line,
    with the characters that would end or change it escaped."""
    def escape(text):
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("\f", "\\f")

    lines = []
    for key, value in settings.items():
        key = escape(key).replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ")
        value = escape(value)
        lines.append(f"{key}={chr(92) if value.startswith(' ') else ''}{value}\n")  # a leading space would be dropped
    return "".join(lines)


def die_with_parent() -> None:
    """In the JVM's process, before exec: it is killed when the keeper dies (Linux). Nothing is
    logged here: between fork and exec, only what is safe after a fork may run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the keeper's own exit stops it (stop_spark)
        pass


class Server:
    def __init__(self, config):
        self.config = config
        self.paths = Paths(config["directory"], config["key"])
        self.selector = selectors.DefaultSelector()
        self.leases = {}  # connection -> the notebook's pid
        self.holders = set()  # the leases of Jupyter servers that started it ahead of their notebooks
        self.empty_since = None
        self.jvm_gone = threading.Event()
        self.wake_read, self.wake_write = os.pipe()
        self.proc = None
        self.started = time.time()
        self.left = False  # it left by itself, after its linger: nothing of it stays
        self.ui = None
        self.ui_protection = None  # its UI's token filter, whose token goes into the record (0600)
        self.archive_options = []  # the JVM options of its class-data-sharing archive
        self.watched = None  # the directory of the watchdog that keeps the archive its JVM writes

    def class_data_sharing(self) -> tuple[list[str], str]:
        """The JVM options that map the Connect server's own class-data-sharing archive (or write
        it as the JVM exits, as a dedicated driver's JVM does: runtime.jvm), and the directory for
        the working-directory jar. Its class path must be the same at each start, jar for jar, so
        the jar lives beside the archive in the user's cache, written once. A watchdog of its own
        (in a directory of its own: the next server of this key may start before it is done) keeps
        the archive once its JVM has written it whole, and frees the lock."""
        if not self.config.get("class_data_sharing", True):
            return [], self.paths.scratch
        java, spark_home = self.config["java"], self.config["spark_home"]
        try:
            directory = tempfile.mkdtemp(prefix=f"{self.paths.key}.cds-", dir=self.paths.directory)
            holder = jvm.start_watchdog(directory)
            self.watched = directory
            notices = []
            archive, options = jvm.archive_options(java, spark_home, directory, os.environ, holder, notices, kind="connect")
            for notice in notices:
                self.log(notice)
            return options, os.path.dirname(archive) if archive and options else self.paths.scratch
        except Exception:  # noqa: BLE001 - the server starts as fast as it did before archives
            log.warning("no class-data-sharing archive for the shared driver", exc_info=True)
            return [], self.paths.scratch

    def start_spark(self) -> int:
        os.makedirs(self.paths.scratch, mode=0o700, exist_ok=True)
        conf = self.config["conf"]
        port = free_port()
        ui_port = int(conf.get("spark.ui.port") or free_port())
        self.archive_options, jar_directory = self.class_data_sharing()
        settings = server_settings(conf, self.paths.scratch, port, ui_port, self.config.get("log_level", "WARN"),
                                   [*idle_java_options(java_release(self.config.get("java"))), *self.archive_options])
        self.ui_protection = protect(settings, self.config.get("ui_access", "owner"), self.config["spark_version"])
        settings.update({**self.ui_protection.settings, **self.ui_protection.secrets})  # the key: in the 0600 file below only
        settings.update(workdir.server_settings(settings, workdir.write_jar(jar_directory)))
        settings.update(workdir.warehouse(settings, self.config.get("cwd") or os.getcwd()))
        settings.update(self.config.get("secrets", {}))
        # A 0600 file in the 0700 directory, gone once the JVM has read it: no setting, secret or
        # not, on a command line that every user can list.
        properties = os.path.join(self.paths.scratch, "server.properties")
        with os.fdopen(os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            handle.write(properties_text(settings))
        env = dict(os.environ)
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = self.config["token"]  # the server reads it from its environment
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        submit = os.path.join(self.config["spark_home"], "bin", "spark-submit")
        # In the first notebook's directory, as a dedicated driver would be: where the sessions' catalog
        # keeps its managed tables (spark-warehouse). Each session's own paths: see workdir.
        self.proc = subprocess.Popen([submit, "--class", SERVER_CLASS, "--name", SERVER_NAME, "--properties-file", properties],
                                     stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr, env=env, preexec_fn=die_with_parent,
                                     cwd=self.config.get("cwd") or None)
        if self.watched is not None:  # its watchdog waits for it
            jvm.record_jvms(self.watched, [self.proc])
        deadline = time.monotonic() + float(self.config.get("timeout", 600))
        try:
            while not answers(port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"its JVM exited with code {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("its JVM did not answer in time")
                time.sleep(PROBE_EVERY)
        finally:
            os.unlink(properties)
        enabled = settings.get("spark.ui.enabled", "true").strip().lower() != "false"
        self.ui = f"http://127.0.0.1:{ui_port}" if enabled else None
        return port

    def watch_jvm(self) -> None:
        def wait():
            self.proc.wait()
            self.jvm_gone.set()
            os.write(self.wake_write, b"x")

        threading.Thread(target=wait, daemon=True).start()

    def serve(self, port: int) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.paths.socket)
        finally:
            os.umask(old)
        listener.listen(64)
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        write_record(self.paths, {
            "key": self.paths.key, "spark_version": self.config["spark_version"], "port": port, "token": self.config["token"],
            "pid": os.getpid(), "jvm": self.proc.pid, "started": self.started, "ui": self.ui,
            "ui_token": self.ui_protection.token, "ui_note": self.ui_protection.note, "log": self.paths.log, "master": self.config["conf"].get("spark.master", "local[*]"),
        })
        self.empty_since = time.monotonic()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        linger = float(self.config.get("linger", 30))
        while not self.jvm_gone.is_set():
            timeout = None
            if not self.leases:
                timeout = max(0.0, self.empty_since + linger - time.monotonic())
            events = self.selector.select(timeout)
            for key, _ in events:
                if key.data == "listener":
                    connection, _ = listener.accept()
                    self.selector.register(connection, selectors.EVENT_READ, bytearray())
                elif key.data == "wake":
                    os.read(self.wake_read, 16)
                else:
                    self.read(key.fileobj, key.data)
            if not self.leases and not self.jvm_gone.is_set() and time.monotonic() >= self.empty_since + linger:
                if self.leave():
                    return 0
        self.log(f"the JVM has exited (code {self.proc.returncode}): closing {len(self.leases)} notebooks' leases")
        remove_files(self.paths)
        for connection in list(self.leases):
            connection.close()
        return 1

    def read(self, connection: socket.socket, buffer: bytes) -> bytes:
        try:
            chunk = connection.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(connection)
            return
        if connection in self.leases:
            return  # a notebook says nothing once attached
        buffer += chunk
        if b"\n" not in buffer:
            if len(buffer) > 65536:
                self.drop(connection)
            return
        try:
            request = json.loads(bytes(buffer).split(b"\n", 1)[0])
        except ValueError:
            self.drop(connection)
            return
        if isinstance(request, dict) and isinstance(request.get("attach"), int):
            self.leases[connection] = request["attach"]
            if request.get("holder") is True:  # a Jupyter server that started it ahead of its notebooks (driver_prestart)
                self.holders.add(connection)
            self.reply(connection, {"attached": True, "notebooks": len(self.leases)})
        elif isinstance(request, dict) and request.get("status"):
            self.reply(connection, self.status())
            self.drop(connection)
        else:
            self.drop(connection)

    def reply(self, connection: socket.socket, answer: dict) -> None:
        try:
            connection.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            self.drop(connection)

    def drop(self, connection: socket.socket) -> None:
        try:
            self.selector.unregister(connection)
        except (KeyError, ValueError):  # never registered, or already closed
            log.debug("unregistering a notebook's connection", exc_info=True)
        self.holders.discard(connection)
        if self.leases.pop(connection, None) is not None and not self.leases:
            self.empty_since = time.monotonic()
        connection.close()

    def status(self) -> dict:
        return {"pid": os.getpid(), "jvm": self.proc.pid, "started": self.started,
                "notebooks": sorted(pid for connection, pid in self.leases.items() if connection not in self.holders),
                "held_by": sorted(self.leases[connection] for connection in self.holders),
                "ui": self.ui, "master": self.config["conf"].get("spark.master", "local[*]"), "version": self.config["spark_version"]}

    def leave(self) -> None:
        """Leave, unless a notebook is attaching right now (it holds the lock): then try again soon."""
        try:
            with Locked(self.paths, timeout=0) as lock:
                if self.leases:
                    return False
                remove_files(self.paths)
                lock.remove()
        except Exception:  # a notebook holds the lock (it is attaching): try again soon
            log.debug("leaving put off", exc_info=True)
            self.empty_since = time.monotonic() - float(self.config.get("linger", 30)) + LINGER_RETRY
            return False
        self.log(f"no notebook for {self.config.get('linger', 30)} s: stopping")
        self.stop_spark()
        self.left = True  # cleanly: its log goes too
        return True

    def stop_spark(self) -> None:
        """SIGTERM: Spark's shutdown hook stops the session and its executors; then, if need be, SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            # Its exit takes longer while it writes the archive; it dies with this process.
            self.proc.wait(timeout=ARCHIVE_GRACE if jvm.writes_archive(self.archive_options) else STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self, text: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pyspark-kernel shared driver: {text}\n")
        sys.stderr.flush()

    def clean(self) -> None:
        shutil.rmtree(self.paths.scratch, ignore_errors=True)
        if self.left:
            try:
                os.unlink(self.paths.log)
            except FileNotFoundError:
                log.debug("its log was already gone")


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a notebook's interrupt is never the server's
    config = json.loads(sys.stdin.read())
    sys.stdin.close()
    runtime_log.setup_stream(sys.stderr, os.environ)  # its log file: the runtime's records beside its own lines
    # Not the notebook's child: its process tree (what Jupyter and resource monitors count as the
    # notebook's) must not hold the server every notebook shares.
    if os.fork():
        os._exit(0)
    sys.stdout.write(f"pid {os.getpid()}\n")
    sys.stdout.flush()
    server = Server(config)
    code = 1
    try:
        try:
            port = server.start_spark()
        except Exception as error:  # noqa: BLE001 - whatever it is, the notebook reads it in this log
            server.log(f"Spark did not start: {type(error).__name__}: {error}")
            server.stop_spark()
            sys.stdout.write("failed\n")
            return code
        server.watch_jvm()
        server.log(f"serving Spark Connect on 127.0.0.1:{port} (JVM pid {server.proc.pid})")
        try:
            code = server.serve(port)
        except Exception:
            # os._exit below would drop the traceback: the notebook's message quotes this log.
            log.exception("the shared driver stopped serving")
            raise
        return code
    finally:
        server.clean()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # Py4J's threads must not keep a server that has left


if __name__ == "__main__":
    raise SystemExit(main())
