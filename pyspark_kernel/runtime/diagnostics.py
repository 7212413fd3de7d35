"""Start-up checks and failure messages: a cause and a fix, with the JVM's last output.

`pyspark-kernel doctor` imports this module from the kernel's directory, so the kernel and the
doctor never disagree about what stops a start.

The runtime's errors carry what is wrong (``problem``) and how to fix it (``fix``) as fields, and
their message is made from them ("problem (fix)", then any ``detail`` such as the JVM's output):
whoever reports one (doctor, the CLI) reads the fields and never cuts the message up. Raised with
one message only, an error has that message as its problem and no fix.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys

from .limits import killed_hint
from .masters import master_addresses

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 15
CONNECT_TIMEOUT = 5
RESTART = "run %spark restart for a new session"
RESTART_HINT = f"{RESTART}; your Python variables are kept"


class FixableError(Exception):
    """An error that says what is wrong and how to fix it. ``template`` joins the two into the
    message; ``detail`` (the JVM's last output, say) follows them."""

    template = "{problem} ({fix})"

    def __init__(self, problem: str, fix: str | None = None, detail: str = ""):
        super().__init__((problem if fix is None else self.template.format(problem=problem, fix=fix)) + detail)
        self.problem = problem
        self.fix = fix
        self.detail = detail


class ShortTraceback:
    """Mixed into an error whose message says it all: the notebook shows the message, not the
    frames of PySpark and Py4J it was raised through (IPython's _render_traceback_)."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ShortError(ShortTraceback, FixableError, RuntimeError):
    """A runtime error the notebook shows as one message, with its problem and fix as fields."""


class SparkStartError(ShortError):
    """Spark could not start; the message says why and what to do."""


class SparkDiedError(ShortError):
    """The driver JVM exited under a running session; the message says how, and what to do."""


class SetupError(FixableError, RuntimeError):
    """The runtime itself cannot start (before Spark is even tried); the message says what to fix.
    The kernel's startup shim shows its message alone, without the class name: it knows the error
    by ``setup_error`` (it cannot import this class before the runtime has loaded)."""

    setup_error = True


class KernelJsonError(SetupError):
    """kernel.json cannot be read as the runtime needs it; the fix is to regenerate the kernel."""

    template = "{problem}; {fix}"


# This package is copied into the kernel's own directory, whose name is the kernel's: the fix names both.
KERNEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGENERATE = f"regenerate the kernel, keeping its settings: pyspark-kernel upgrade {os.path.basename(KERNEL_DIR)} -d {shlex.quote(os.path.dirname(KERNEL_DIR))}"


SHARED_SC_PROBLEM = ("sc, SparkContext and the RDD API need a Spark driver of the notebook's own, and this kernel shares one over "
                     "Spark Connect (spark_driver shared)")
SHARED_SC_FIX = "use DataFrames and spark.sql here, or a kernel created with --spark_driver dedicated"
SHARED_SC = f"{SHARED_SC_PROBLEM}: {SHARED_SC_FIX}"


class SharedDriverError(ShortError):
    """What needs a driver of the notebook's own, on a kernel that shares one
    (SharedDriverError(SHARED_SC_PROBLEM, SHARED_SC_FIX) reads as SHARED_SC)."""

    template = "{problem}: {fix}"


def log_lines(path: str) -> list[str]:
    """The JVM output's lines, without the class-data-sharing archive's own noise."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip() for line in handle if line.strip() and "[cds" not in line]
    except OSError:
        log.debug("no JVM output to read at %s", path, exc_info=True)
        return []


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(log_lines(path)[-lines:])


def jvm_output(log_path: str) -> str:
    """The JVM output's last lines, as an error's detail; empty when there is none."""
    tail = log_tail(log_path)
    return f"\n--- last lines of the JVM output ({log_path}) ---\n{tail}" if tail else ""


def with_jvm_output(message: str, log_path: str) -> str:
    return message + jvm_output(log_path)


def find_java(environ) -> str:
    """The java that Spark's launch scripts will run: $JAVA_HOME/bin/java, else java on PATH."""
    java_home = environ.get("JAVA_HOME")
    if java_home:
        java = os.path.join(java_home, "bin", "java")
        if os.access(java, os.X_OK):
            return java
        raise SparkStartError(f"Java not found: JAVA_HOME is {java_home}, which has no bin/java",
                              "install a JDK 17+ there, or set JAVA_HOME in the kernel's env to a JDK")
    java = shutil.which("java", path=environ.get("PATH"))
    if not java:
        raise SparkStartError("Java not found: no java on PATH and JAVA_HOME is not set", "install a JDK 17+ or set JAVA_HOME in the kernel's env")
    return java


# A JDK's `release` file: JAVA_VERSION="17.0.9", "21", or "1.8.0_392" for Java 8 and older.
JAVA_RELEASE_VERSION = re.compile(r'^JAVA_VERSION="?(?:1\.)?(\d+)(?:\.\d+)?(?:\.(\d+))?', re.MULTILINE)
JAVA_VERSION_OUTPUT = re.compile(r'version "(?:1\.)?(\d+)')


def java_release(java: str | None) -> str:
    """The text of ``java``'s JDK `release` file; empty when it has none."""
    home = os.path.dirname(os.path.dirname(os.path.realpath(java))) if java else ""
    try:
        with open(os.path.join(home, "release"), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        log.debug("no release file for %s", java, exc_info=True)
        return ""


def release_version(release_text: str | None) -> tuple[int, int] | None:
    """The feature release and update (17, 9) that a JDK's `release` file names; None when it
    names none. The update is 0 when the file gives none (JAVA_VERSION="21")."""
    found = JAVA_RELEASE_VERSION.search(release_text or "")
    if not found:
        return None
    return int(found.group(1)), int(found.group(2) or 0)


def java_version(java: str) -> int | None:
    """The feature version (8, 11, 17, 21, ...) of ``java``: from its JDK's release file, which
    costs nothing, else from `java -version`. None when neither tells."""
    found = release_version(java_release(java))
    if found:
        return found[0]
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        log.debug("java -version failed for %s", java, exc_info=True)
        return None
    found = JAVA_VERSION_OUTPUT.search(done.stderr + done.stdout)
    return int(found.group(1)) if found else None


def check_spark_home(environ) -> str:
    home = environ.get("SPARK_HOME", "")
    if not home or not os.path.isfile(os.path.join(home, "bin", "spark-submit")):
        raise SparkStartError(f"SPARK_HOME {home or '(unset)'} has no bin/spark-submit",
                              f"{REGENERATE}, or fix SPARK_HOME in its kernel.json")
    return home


def kernel_metadata(kernel_dir: str) -> dict:
    """What the generator recorded about the kernel (kernel.json's metadata.pyspark_kernel); empty
    when it cannot be read."""
    try:
        with open(os.path.join(kernel_dir, "kernel.json"), encoding="utf-8") as handle:
            found = json.load(handle)["metadata"]["pyspark_kernel"]
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        log.debug("no generator's record in %s", kernel_dir, exc_info=True)
        return {}


def pip_layout(spark_home: str) -> bool:
    """Whether SPARK_HOME is pip's pyspark package directory (site-packages/pyspark)."""
    parent = os.path.basename(os.path.dirname(os.path.normpath(spark_home))) if spark_home else ""
    return os.path.basename(os.path.normpath(spark_home)) == "pyspark" and parent in ("site-packages", "dist-packages")


def pyspark_missing(environ, kernel_dir: str, error: ImportError, python: str = sys.executable, prefix: str = sys.prefix) -> SparkStartError:
    """Why the kernel's Python cannot import pyspark, and the fix. A kernel made for a pip-installed
    pyspark whose SPARK_HOME went with it: pyspark left the environment (SPARK_HOME is only its
    directory), and installing the version the kernel was made for brings both back. A kernel of a
    Spark distribution: a broken SPARK_HOME, else pyspark missing from its PYTHONPATH."""
    recorded = kernel_metadata(kernel_dir)
    home = environ.get("SPARK_HOME", "")
    if recorded.get("spark_layout", "pip" if pip_layout(home) else "") == "pip":
        version = recorded.get("spark_version")
        command = f"{shlex.quote(python)} -m pip install {shlex.quote(f'pyspark=={version}') if version else 'pyspark'}"
        return SparkStartError(f"pyspark is not installed in the kernel's environment {prefix}", f"install it: {command}, then restart the kernel")
    check_spark_home(environ)  # a broken SPARK_HOME says best why pyspark is missing
    return SparkStartError(f"pyspark cannot be imported by {python}: {error}", f"check the kernel's PYTHONPATH, or {REGENERATE}")


def check_master_reachable(master: str) -> None:
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
        raise SparkStartError(f"Spark master {master} is unreachable: {'; '.join(problems)}",
                              f"start the cluster, then {RESTART}; or fix the master URL in the kernel's PYSPARK_KERNEL_SPARK_CONF")


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


def explain(error: BaseException, log: str) -> str:
    """A start-up exception as a cause and a fix, with the JVM's last output attached."""
    text = f"{type(error).__name__}: {error}".strip()
    tail = log_tail(log)
    cause = next((fix for needles, fix in KNOWN_CAUSES if any(n in text or n in tail for n in needles)), "see the error and the JVM's output below")
    return with_jvm_output(f"Spark did not start: {cause}.\n{text}", log)


# Exit codes Spark's driver uses for itself (SparkExitCode).
SPARK_EXIT_CODES = {52: "an OutOfMemoryError in the driver (raise spark.driver.memory)", 50: "an uncaught exception in the driver"}


def describe_exit(returncode: int, environ=None) -> str:
    """How a process ended, from its return code (negative: the signal that killed it). A SIGKILL
    names the memory limit of ``environ`` (the kernel's), if the hub declared one."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        why = ": often the out-of-memory killer" + killed_hint(os.environ if environ is None else environ) if -returncode == signal.SIGKILL else ""
        return f"killed by signal {-returncode} ({name}{why})"
    cause = SPARK_EXIT_CODES.get(returncode)
    return f"exited with code {returncode}" + (f" ({cause})" if cause else "")


def died_error(returncode: int, log_path: str) -> SparkDiedError:
    """The error for a driver JVM that exited with ``returncode``, with its last output."""
    return SparkDiedError(f"The Spark driver JVM has exited: {describe_exit(returncode)}. Spark objects made before are gone", RESTART_HINT,
                          jvm_output(log_path))


def died_message(returncode: int, log_path: str) -> str:
    return str(died_error(returncode, log_path))
