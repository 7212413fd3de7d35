"""Runtime of a pyspark-kernel kernel: starts Spark beside the kernel and looks after it.

Loaded by pyspark_startup.py in the kernel's own Python, which needs nothing but ipykernel and
pyspark: this file imports neither the generator's package nor anything outside the standard
library until Spark starts.

- `spark` and `sc` are stand-ins until the session exists; the first use waits for it (and says
  so), then the notebook's names point at the real objects.
- The session starts in a background thread (init "background"), on first use ("lazy") or before
  the kernel answers ("eager"); a tiny warm-up job then pays Spark's first-job cost, unless a cell
  is already waiting with a job of its own.
- A start is judged by what happens, not by a short clock: it fails at once when the JVM exits or
  a master cannot be reached, and otherwise only after start_timeout (minutes: a busy machine is
  slow, not broken). A cell waiting for it shows the elapsed time and the current step.
- A failed start keeps the kernel alive; every use of `spark` raises the cause, the fix and the
  last lines of the JVM's output, which goes to a log file rather than into cells.
- Each cell runs its jobs in a job group of its own: interrupting the cell cancels them.
- A running cell shows a text progress line of its Spark jobs, polled from the status tracker.
- Every JVM temporary file lives in a scratch directory of this kernel; a watchdog process in its
  own session removes it once the kernel and its JVM have exited, however they exited.
- The driver JVM maps a class-data-sharing archive of Spark's classes when one exists for this
  Java and Spark; otherwise this run's JVM writes one when it exits (the watchdog keeps it only if
  the JVM finished writing it). Of kernels starting together, one writes it; the others start
  without it.
"""

import atexit
import contextvars
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

OPTIONS_VARIABLE = "PYSPARK_KERNEL_OPTIONS"
CONF_VARIABLE = "PYSPARK_KERNEL_SPARK_CONF"
DEFAULT_OPTIONS = {"init": "background", "progress": True, "log_level": "WARN", "start_timeout": 600, "class_data_sharing": True}
INIT_MODES = ("background", "lazy", "eager")
LOG_TAIL_LINES = 15
CONNECT_TIMEOUT = 5
PROGRESS_DELAY = 0.5  # a cell shows progress once it has run this long with Spark jobs
PROGRESS_INTERVAL = 0.5
WAIT_INTERVAL = 1.0  # how often a cell waiting for Spark's start updates its elapsed time
CANCEL_ATTEMPTS = 3
WARMUP_GROUP = "pyspark-kernel-warmup"
CONNECT_TOKEN_VARIABLE = "SPARK_CONNECT_TOKEN"


def with_token(master, token):
    """A Spark Connect URL with the token from the environment added, if there is one."""
    if not token:
        return master
    return master + ("" if "/" in master[len("sc://"):] else "/") + f";token={token}"


ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_secrets(settings, environ):
    """Settings written as ${env:NAME}, with NAME's value from the environment the kernel started in."""
    secrets = {}
    for key, value in settings.items():
        found = ENV_REFERENCE.fullmatch(value)
        if found:
            if found.group(1) not in environ:
                raise SparkStartError(f"{key} comes from ${found.group(1)}, which is not set (set it in the Jupyter server's environment and restart the kernel)")
            secrets[key] = environ[found.group(1)]
    return secrets


class SparkStartError(RuntimeError):
    """Spark could not start; the message says why and what to do."""


def read_options(environ):
    options = dict(DEFAULT_OPTIONS)
    options.update(json.loads(environ.get(OPTIONS_VARIABLE) or "{}"))
    if options["init"] not in INIT_MODES:
        options["init"] = "background"
    return options


def log_tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            found = [line.rstrip() for line in handle if line.strip() and "[cds" not in line and "[warning][cds" not in line]
    except OSError:
        return ""
    return "\n".join(found[-lines:])


# ---- checks that turn the usual start-up failures into a cause and a fix --------------------------

def find_java(environ):
    """The java that Spark's launch scripts will run: $JAVA_HOME/bin/java, else java on PATH."""
    java_home = environ.get("JAVA_HOME")
    if java_home:
        java = os.path.join(java_home, "bin", "java")
        if os.access(java, os.X_OK):
            return java
        raise SparkStartError(f"Java not found: JAVA_HOME is {java_home}, which has no bin/java (install a JDK 17+ there, or set JAVA_HOME in the kernel's env to a JDK)")
    java = shutil.which("java", path=environ.get("PATH"))
    if not java:
        raise SparkStartError("Java not found: no java on PATH and JAVA_HOME is not set (install a JDK 17+ or set JAVA_HOME in the kernel's env)")
    return java


def check_spark_home(environ):
    home = environ.get("SPARK_HOME", "")
    if not home or not os.path.isfile(os.path.join(home, "bin", "spark-submit")):
        raise SparkStartError(f"SPARK_HOME {home or '(unset)'} has no bin/spark-submit (regenerate the kernel with pyspark-kernel create --force, or fix SPARK_HOME in its kernel.json)")
    return home


def master_addresses(master):
    """(host, port) pairs a cluster master URL names; empty for local, yarn and k8s masters."""
    scheme, _, rest = master.partition("://")
    if scheme not in ("spark", "sc"):
        return []
    pairs = []
    for address in rest.split("/")[0].split(","):
        host, colon, port = address.rpartition(":")
        if not colon:  # sc://host: Spark Connect's default port
            host, port = address, "15002"
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def check_master_reachable(master):
    """Fail in seconds, not after Spark's minute of retries, when no master answers."""
    problems = []
    for host, port in master_addresses(master):
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
            return
        except socket.gaierror:
            problems.append(f"{host} does not resolve")
        except socket.timeout:
            problems.append(f"{host}:{port} did not answer within {CONNECT_TIMEOUT} s")
        except OSError as error:
            problems.append(f"nothing listens on {host}:{port} ({error.strerror or error})")
    if problems:
        raise SparkStartError(f"Spark master {master} is unreachable: {'; '.join(problems)} (start the cluster, or fix the master URL in the kernel's PYSPARK_KERNEL_SPARK_CONF)")


KNOWN_CAUSES = [
    (("Could not parse Master URL", "Master must either be yarn or start with"),
     "the master URL is not one Spark knows (fix spark.master in the kernel's PYSPARK_KERNEL_SPARK_CONF, or regenerate the kernel)"),
    (("UnsupportedClassVersionError", "class file version"),
     "this Java is too old for this Spark (install a JDK 17+ or set JAVA_HOME in the kernel's env)"),
    (("Cannot allocate memory", "Could not reserve enough space", "Invalid maximum heap size"),
     "the JVM could not get the memory asked for (lower spark.driver.memory in the kernel's PYSPARK_KERNEL_SPARK_CONF)"),
    (("JAVA_GATEWAY_EXITED", "Java gateway process exited"),
     "the Spark JVM exited during start-up (its output below says why)"),
]


def with_jvm_output(message, log):
    tail = log_tail(log)
    return message + (f"\n--- last lines of the JVM output ({log}) ---\n{tail}" if tail else "")


def explain(error, log):
    """A start-up exception as a cause and a fix, with the JVM's last output attached."""
    text = f"{type(error).__name__}: {error}".strip()
    tail = log_tail(log)
    cause = next((fix for needles, fix in KNOWN_CAUSES if any(n in text or n in tail for n in needles)), "see the error and the JVM's output below")
    return with_jvm_output(f"Spark did not start: {cause}.\n{text}", log)


# ---- scratch directory and watchdog -------------------------------------------------------------

# A POSIX shell script, so the process that outlives the kernel costs about a megabyte, not a
# second Python. Arguments: the kernel's pid, its scratch directory.
WATCHDOG = r"""
trap '' INT
kernel=$1
scratch=$2
gone() {  # the process has exited (or is a zombie nobody reaped yet)
    state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 0
    [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}
wait_exit() {  # pid, checks at most (0: no limit), seconds between checks; false if still running
    waited=0
    while ! gone "$1"; do
        if [ "$2" -gt 0 ] && [ "$waited" -ge "$2" ]; then return 1; fi
        sleep "$3"
        waited=$((waited + 1))
    done
}
wait_exit "$kernel" 0 1
jvm=$(cat "$scratch/jvm.pid" 2>/dev/null)
limit=100  # writing the class-data-sharing archive at exit takes a while
[ -f "$scratch/cds-training.sh" ] && limit=900
if [ -n "$jvm" ] && ! wait_exit "$jvm" "$limit" 0.2; then
    kill -9 "$jvm" 2>/dev/null
    wait_exit "$jvm" 50 0.2
fi
if [ -f "$scratch/cds-training.sh" ]; then
    . "$scratch/cds-training.sh"  # archive=, partial=, log=, lock=
    if grep -q "Written dynamic archive" "$log" 2>/dev/null && [ ! -e "$archive" ]; then
        mv -f "$partial" "$archive"  # a rename: the archive appears whole or not at all
    fi
    rm -f "$partial" "$lock"  # not finished: a half-written archive is never used
fi
rm -rf "$scratch"
"""


def make_scratch():
    return tempfile.mkdtemp(prefix="pyspark-kernel-")


def start_watchdog(scratch):
    """The watchdog's pid: it outlives the kernel, and holds the archive lock until it is done."""
    return subprocess.Popen(
        ["/bin/sh", "-c", WATCHDOG, "pyspark-kernel-watchdog", str(os.getpid()), scratch],
        # The system's tools first, whatever the kernel's PATH holds (or lacks).
        env={**os.environ, "PATH": os.pathsep.join([os.defpath, os.environ.get("PATH", "")])},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    ).pid


# ---- class-data-sharing archive of the driver JVM -----------------------------------------------

def cds_dir(environ):
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyspark-kernel", "cds")


def cds_key(java, spark_home):
    """Changes whenever the JDK or the Spark jars change: a new archive is built for them."""
    digest = hashlib.sha256()
    java = os.path.realpath(java)
    stat = os.stat(java)
    digest.update(f"{java}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    jars = os.path.join(spark_home, "jars")
    digest.update(os.path.realpath(spark_home).encode())
    for name in sorted(os.listdir(jars)) if os.path.isdir(jars) else []:
        digest.update(f"{name}:{os.path.getsize(os.path.join(jars, name))}".encode())
    return digest.hexdigest()[:24]


LOCK_UNWRITTEN_AGE = 60  # seconds a lock file may stay empty: its maker is between create and write
LOCK_FOREIGN_AGE = 86400  # a lock from another host (a shared home) cannot be checked: trust it this long


def lock_is_held(lock):
    """Whether the archive lock's holder (host and pid) is alive."""
    try:
        age = time.time() - os.stat(lock).st_mtime
        with open(lock, encoding="utf-8") as handle:
            host, pid = handle.read().split()
        pid = int(pid)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return age < LOCK_UNWRITTEN_AGE
    if host != socket.gethostname():
        return age < LOCK_FOREIGN_AGE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def claim_archive(lock, holder):
    """Whether this kernel writes the archive: the one that creates the lock file does. A lock whose
    holder has gone (a crash, a reboot) is taken over; otherwise someone is already writing it."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if lock_is_held(lock):
                return False
            try:
                os.remove(lock)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{socket.gethostname()} {holder}\n")
        return True
    return False


def cds_java_options(java, spark_home, scratch, environ, holder):
    """JVM options to use the archive, or to write it at exit when there is none yet and no other
    kernel is writing it (``holder``, the watchdog's pid, finishes the archive and frees the lock)."""
    try:
        directory = cds_dir(environ)
        os.makedirs(directory, exist_ok=True)
        archive = os.path.join(directory, f"spark-{cds_key(java, spark_home)}.jsa")
        if os.path.isfile(archive):
            return [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]
        lock = f"{archive}.lock"
        if not claim_archive(lock, holder):
            return []  # another kernel is writing it: start without, as fast as before archives
    except OSError:
        return []  # no usable cache directory: start without the archive
    partial = f"{archive}.{os.getpid()}.partial"
    log = os.path.join(scratch, "cds-training.log")
    with open(os.path.join(scratch, "cds-training.sh"), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in (("archive", archive), ("partial", partial), ("log", log), ("lock", lock))))
    return [f"-XX:ArchiveClassesAtExit={partial}", f"-Xlog:cds+dynamic=info:file={log}"]


# ---- the session ---------------------------------------------------------------------------------

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))


def launch_settings(conf, options, scratch, kernel_dir, java_options):
    """The Spark settings the driver JVM is launched with: the kernel's own, plus its scratch
    directory, extra JVM options and, when it ships its environment, the packed archive."""
    settings = dict(conf)
    java = " ".join([settings.get("spark.driver.defaultJavaOptions", ""), f"-Djava.io.tmpdir={scratch}", *java_options]).strip()
    settings["spark.driver.defaultJavaOptions"] = java
    settings.setdefault("spark.local.dir", scratch)
    if options.get("ship_environment"):
        # Unpacked as ./environment beside each executor, where PYSPARK_PYTHON points.
        archive = os.path.join(kernel_dir, options["ship_environment"]) + "#environment"
        settings["spark.archives"] = ",".join(filter(None, [settings.get("spark.archives"), archive]))
    return settings


class SparkRuntime:
    def __init__(self, namespace, shell, environ=None):
        self.environ = dict(os.environ if environ is None else environ)
        self.namespace = namespace
        self.shell = shell
        self.options = read_options(self.environ)
        self.conf = json.loads(self.environ.get(CONF_VARIABLE) or "{}")
        self.master = self.conf.get("spark.master", "local[*]")
        self.connect = self.master.startswith("sc://")
        self.scratch = make_scratch()
        self.log = os.path.join(self.scratch, "driver.log")
        self.state = "idle"  # idle -> starting -> ready | failed
        self.step = None  # what the start is doing now, for the waiting cell and the timeout message
        self.started_at = None
        self.watchdog = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.session = None
        self.error = None
        self.gateway = None
        self.timed_out = False
        self.waiting = False  # a cell waits for the session
        self.banner_shown = False
        self.cell = 0
        self.group = None
        self.progress = None
        self.held = HeldInterrupt()

    # -- starting

    def begin(self):
        self.watchdog = start_watchdog(self.scratch)
        atexit.register(self.shutdown)
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self.namespace["spark"] = SparkStandIn(self, "spark")
        self.namespace["sc"] = SparkStandIn(self, "sc")
        mode = self.options["init"]
        if mode == "eager":
            self.start()
        elif mode == "background":
            self.start_in_background()

    def start_in_background(self):
        threading.Thread(target=self.start, name="pyspark-kernel-start", daemon=True).start()

    def start(self):
        with self.lock:
            if self.state != "idle":
                return
            self.state = "starting"
            self.started_at = time.monotonic()
        # The only clock on a start: for one that hangs. A slow start goes on while it advances; a
        # JVM that exits or a master that refuses fails it at once, with its own message.
        timer = threading.Timer(float(self.options["start_timeout"]), self.give_up)
        timer.daemon = True
        timer.start()
        try:
            self.session = self.create_session()
            self.state = "ready"
        except BaseException as error:  # noqa: B036 - whatever stopped Spark is the user's answer
            self.error = error if isinstance(error, SparkStartError) else SparkStartError(self.describe_failure(error))
            self.state = "failed"
            self.stop_jvm()
        finally:
            timer.cancel()
            self.done.set()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.on_interrupt)  # a context made here installs pyspark's
        if self.state == "ready":
            self.warm_up()

    def describe_failure(self, error):
        if self.timed_out:
            return with_jvm_output(
                f"Spark did not start within {self.options['start_timeout']} s on master {self.master}, while {self.step} "
                "(check that the cluster is up and reachable, or raise start_timeout in the kernel's PYSPARK_KERNEL_OPTIONS)", self.log)
        return explain(error, self.log)

    def give_up(self):
        if not self.done.is_set():
            self.timed_out = True
            self.stop_jvm()

    def create_session(self):
        self.step = "checking the master"
        check_master_reachable(self.master)
        if self.connect:
            self.step = "connecting to the Spark Connect server"
            from pyspark.sql import SparkSession

            # The token lives in the Jupyter server's environment, never in kernel.json.
            os.environ["SPARK_REMOTE"] = with_token(self.master, self.environ.get(CONNECT_TOKEN_VARIABLE))
            builder = SparkSession.builder
            for key, value in self.conf.items():
                if key != "spark.master":
                    builder = builder.config(key, value)
            return builder.getOrCreate()
        self.step = "looking for Java"
        spark_home = check_spark_home(self.environ)
        java = find_java(self.environ)
        try:
            from pyspark import SparkConf, SparkContext
            from pyspark.java_gateway import launch_gateway
            from pyspark.sql import SparkSession
        except ImportError as error:
            raise SparkStartError(f"pyspark cannot be imported by {sys.executable}: {error} (install pyspark into the kernel's environment, or regenerate the kernel)") from None
        java_options = cds_java_options(java, spark_home, self.scratch, self.environ, self.watchdog) if self.options["class_data_sharing"] else []
        settings = launch_settings(self.conf, self.options, self.scratch, KERNEL_DIR, java_options)
        secrets = resolve_secrets(settings, self.environ)
        conf = SparkConf(loadDefaults=False)
        conf.setAll((key, value) for key, value in settings.items() if key not in secrets)
        self.step = "launching the driver JVM"
        with open(self.log, "ab") as log:
            self.gateway = launch_gateway(conf=conf, popen_kwargs={"stdout": log, "stderr": subprocess.STDOUT})
        # Secrets reach the JVM through Py4J, not its command line, which every user can list.
        conf.setAll(secrets.items())
        self.held.guard(self.gateway._gateway_client)
        with open(os.path.join(self.scratch, "jvm.pid"), "w", encoding="utf-8") as handle:
            handle.write(str(self.gateway.proc.pid))
        if self.timed_out:
            raise SparkStartError("timed out")
        self.step = "creating the SparkContext"
        context = SparkContext(conf=conf, gateway=self.gateway)
        context.setLogLevel(self.options["log_level"])
        return SparkSession.builder.getOrCreate()

    def warm_up(self):
        """Pay the first-job cost (code loading, query planning) before the user's first job; a
        cell that is already waiting for Spark pays it itself, sooner."""
        if self.waiting:
            return
        try:
            if not self.connect:
                self.session.sparkContext.setJobGroup(WARMUP_GROUP, "pyspark-kernel warm-up", False)
            self.session.range(1000).count()
        except Exception:  # a failed warm-up only costs time later
            pass

    def stop_jvm(self):
        proc = getattr(self.gateway, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    # -- in the notebook

    def wait(self):
        """The session, once started: waits (saying so) if it is still starting."""
        if self.state == "idle":
            self.waiting = True  # this cell pays the first-job cost itself: no warm-up
            self.start_in_background()  # on this thread, the wait could show nothing
        if not self.done.is_set():
            self.waiting = True
            self.show_wait()
        if self.error is not None:
            raise SparkStartError(str(self.error)) from None
        self.publish()
        return self.session

    def waited(self):
        return time.monotonic() - (self.started_at or time.monotonic())

    def show_wait(self):
        """Wait for the start in this cell, with a line that shows the elapsed time and the current
        step (updated in place when progress is on). An interrupt stops the wait, not the start."""
        from IPython.display import display

        text = "Spark is starting…"
        handle = display({"text/plain": text}, raw=True, display_id=True) if self.options["progress"] else print(text, flush=True)
        try:
            while not self.done.wait(WAIT_INTERVAL):
                if handle is not None:
                    handle.update({"text/plain": f"{text} {self.waited():.0f} s, {self.step or 'starting'}"}, raw=True)
        except KeyboardInterrupt:
            if handle is not None:
                handle.update({"text/plain": f"{text} {self.waited():.0f} s; interrupted: the next use of Spark waits for it again"}, raw=True)
            raise
        if handle is not None:
            handle.update({"text/plain": f"Spark {'started' if self.error is None else 'did not start'} after {self.waited():.1f} s"}, raw=True)

    def resolve(self, name):
        session = self.wait()
        return session if name == "spark" else session.sparkContext

    def publish(self):
        """Point the notebook's names at the real objects and show the banner once."""
        if self.namespace.get("spark").__class__ is SparkStandIn:
            self.namespace["spark"] = self.session
        if self.namespace.get("sc").__class__ is SparkStandIn and not self.connect:
            self.namespace["sc"] = self.session.sparkContext
        if self.group and not self.connect:
            self.session.sparkContext.setJobGroup(self.group, f"cell {self.cell}", True)
        self.show_banner()

    def banner(self):
        if self.error is not None:
            return str(self.error).splitlines()[0]
        if self.connect:
            return f"Spark {self.session.version} | Spark Connect {self.master}"
        sc = self.session.sparkContext
        return f"Spark {sc.version} | master {sc.master} | app {sc.applicationId} | UI {sc.uiWebUrl or 'off'}"

    def show_banner(self):
        if not self.banner_shown and self.done.is_set():
            self.banner_shown = True
            print(self.banner(), flush=True)

    def pre_run_cell(self, *_):
        # ipykernel puts Python's default SIGINT handler in place for every request it handles.
        signal.signal(signal.SIGINT, self.on_interrupt)
        self.held.pending = False
        self.cell += 1
        self.group = f"pyspark-kernel-cell-{self.cell}"
        if self.state in ("ready", "failed"):
            if self.state == "ready":
                self.publish()
            else:
                self.show_banner()
        if self.state == "ready" and self.options["progress"] and not self.connect:
            self.progress = Progress(self.session.sparkContext, self.group)
            self.progress.begin()

    def post_run_cell(self, *_):
        if self.progress is not None:
            self.progress.end()
            self.progress = None
        self.group = None

    def on_interrupt(self, signum, frame):
        """Cancel the running cell's Spark jobs, then interrupt the cell. The cancel goes from
        another thread: this one may be inside a Py4J call, on the connection the cancel would
        need. Inside a Py4J call the KeyboardInterrupt waits until the call returns, which the
        cancel makes it do (see HeldInterrupt); a second interrupt does not wait."""
        if self.state == "ready" and self.group and not self.connect:
            threading.Thread(target=self.cancel, args=(self.group,), name="pyspark-kernel-cancel", daemon=True).start()
        if self.held.hold():
            return
        raise KeyboardInterrupt

    def cancel(self, group):
        # A connection broken by an earlier interrupt can still be in the pool, and the first call
        # that picks it up fails: try again on a fresh one.
        for _ in range(CANCEL_ATTEMPTS):
            try:
                self.session.sparkContext.cancelJobGroup(group)
                return
            except Exception:  # a broken connection, or Spark is going away
                continue

    def shutdown(self):
        """At kernel exit: stop Spark gracefully; the watchdog handles any other way out."""
        if self.progress is not None:
            self.progress.end()
        if self.state == "ready":
            try:
                self.session.stop()
            except Exception:
                self.stop_jvm()


class HeldInterrupt:
    """Holds a KeyboardInterrupt that arrives while the main thread waits inside a Py4J call, and
    raises it as the call returns. Raised inside the call, Py4J shuts the call's connection down
    and asks the JVM to do the same, and the JVM can then drop the next connection the cell opens:
    the cell ends with a Py4JNetworkError instead of the interrupt (seen on a busy machine)."""

    interrupt = KeyboardInterrupt

    def __init__(self):
        self.depth = 0  # Py4J calls the main thread is inside (the JVM can call back into Python)
        self.pending = False

    def guard(self, client):
        """Count the main thread's calls through this gateway client."""
        send = client.send_command

        def send_command(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return send(*args, **kwargs)
            self.depth += 1
            try:
                return send(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.pending and self.depth == 0:
                    self.pending = False
                    raise self.interrupt  # noqa: B012 - the interrupt the user asked for wins

        client.send_command = send_command

    def hold(self):
        """Whether to hold this interrupt (a first one, inside a call) rather than raise it now."""
        if self.depth and not self.pending:
            self.pending = True
            return True
        self.pending = False
        return False


class SparkStandIn:
    """Stands for `spark` or `sc` until the session exists; any use waits for it."""

    def __init__(self, runtime, name):
        object.__setattr__(self, "_runtime", runtime)
        object.__setattr__(self, "_name", name)

    def _target(self):
        return self._runtime.resolve(self._name)

    def __getattr__(self, attribute):
        return getattr(self._target(), attribute)

    def __setattr__(self, attribute, value):
        setattr(self._target(), attribute, value)

    def __repr__(self):
        return repr(self._target())

    def __dir__(self):
        return dir(self._target()) if self._runtime.state == "ready" else []


class Progress:
    """A one-line text progress display of the cell's Spark jobs, updated in place."""

    def __init__(self, context, group):
        self.context = context
        self.group = group
        self.stopped = threading.Event()
        self.handle = None
        self.text = None
        self.started = time.monotonic()
        self.thread = None

    def begin(self):
        run_in_cell = contextvars.copy_context().run  # output from the thread belongs to this cell
        self.thread = threading.Thread(target=run_in_cell, args=(self.watch,), name="pyspark-kernel-progress", daemon=True)
        self.thread.start()

    def end(self):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def watch(self):
        try:
            while not self.stopped.wait(PROGRESS_INTERVAL if self.handle else PROGRESS_DELAY):
                self.show(final=False)
            self.show(final=True)
        except Exception:  # the display is a courtesy; never break a cell over it
            pass

    def describe(self, final):
        tracker = self.context.statusTracker()
        jobs = [tracker.getJobInfo(job) for job in sorted(tracker.getJobIdsForGroup(self.group))]
        jobs = [job for job in jobs if job is not None]
        if not jobs:
            return None
        stages = [tracker.getStageInfo(stage) for job in jobs for stage in job.stageIds]
        stages = [stage for stage in stages if stage is not None]
        done_jobs = sum(job.status == "SUCCEEDED" for job in jobs)
        tasks = sum(stage.numTasks for stage in stages)
        finished = sum(stage.numCompletedTasks for stage in stages)
        running = sum(stage.numActiveTasks for stage in stages)
        width = 20
        filled = int(width * finished / tasks) if tasks else 0
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.monotonic() - self.started
        if final:
            failed = [job for job in jobs if job.status == "FAILED"]
            state = f"{len(failed)} failed or cancelled" if failed else "done"
            return f"Spark: {len(jobs)} job(s) {state}, {finished}/{tasks} tasks, {elapsed:.1f} s"
        return f"Spark: [{bar}] jobs {done_jobs}/{len(jobs)}, stages {sum(s.numTasks == s.numCompletedTasks for s in stages)}/{len(stages)}, tasks {finished}/{tasks} ({running} running), {elapsed:.0f} s"

    def show(self, final):
        from IPython.display import display

        if self.handle is None and final:
            return  # a cell quicker than the delay gets no progress line
        text = self.describe(final)
        if text is None or text == self.text:
            return
        self.text = text
        if self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)


RUNTIME = None  # this kernel's SparkRuntime, for inspection: sys.modules["pyspark_kernel_runtime"].RUNTIME


def install(namespace):
    global RUNTIME
    RUNTIME = SparkRuntime(namespace, namespace["get_ipython"]())
    RUNTIME.begin()
    return RUNTIME
