"""Maven packages and local jars: checked, merged into Spark's own settings (spark.jars.packages,
spark.jars), and resolved ahead of a restart by Spark's own resolver.

Spark resolves spark.jars.packages with Ivy when spark-submit launches the driver JVM: a coordinate
that does not resolve makes the launch fail, after the old session has gone. So `%spark packages`
first runs spark-submit on a script that does nothing, with the same spark.jars.* settings (the
repositories and Ivy settings of a team's profile included): what fails there would fail the
restart, and the notebook keeps its session. Resolved jars go to the Ivy directory (spark.jars.ivy),
by default one in the per-user cache (runtime.cache counts and prunes it), so a second kernel
resolves the same packages without a download.

Standard library only: the kernel's runtime, create and doctor share it.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from . import cache
from .diagnostics import ShortError
from .options import SPARK_VARIABLES

log = logging.getLogger(__name__)

PACKAGES = "spark.jars.packages"
JARS = "spark.jars"
IVY = "spark.jars.ivy"
# The settings spark-submit's resolution reads (Spark's SparkSubmitArguments and its Ivy code).
RESOLUTION_KEYS = (PACKAGES, IVY, "spark.jars.repositories", "spark.jars.ivySettings", "spark.jars.excludes")
# group:artifact:version, as Spark reads spark.jars.packages (three parts, comma-separated). Stricter
# than Ivy: no version ranges (their commas would split them) and nothing a command line or a
# properties file could read otherwise.
NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
COORDINATE = re.compile(rf"{NAME}:{NAME}:[A-Za-z0-9_][A-Za-z0-9_.+-]*")
COORDINATE_FIX = "write GROUP:ARTIFACT:VERSION, for example org.apache.spark:spark-avro_2.13:4.2.0"
# Ivy's report of a module it could not resolve: ":: org.nope#nothing_2.13;1.0: not found".
UNRESOLVED = re.compile(r"^\s*::\s+([^\s#:]+)#([^\s;]+);([^\s:]+):\s*(.+?)\s*$")
RESOLVE_TIMEOUT = 600  # seconds: a first resolution downloads every jar a package needs
LOCAL_ONLY = ("PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_API_MODE", "MASTER")
NOTHING = "# pyspark-kernel: resolving packages; nothing to run\n"
CENTRAL = "Maven Central"
UNRESOLVED_FIX = "check the coordinate's spelling and version, or name its repository in spark.jars.repositories"
# A repository URL's user and password (https://USER:PASSWORD@host/...), never printed.
CREDENTIALS = re.compile(r"(://)[^/\s@]+@")
# Ivy's words for a repository it could not reach: it then reports the module as "not found".
UNREACHABLE = re.compile(r"Host (\S+) not found|UnknownHostException: ([^\s:]+)")
# Spark's own second repository, which Ivy tries after Maven Central: many networks do not reach it.
SPARK_PACKAGES_HOST = "repos.spark-packages.org"


class DependencyError(ShortError):
    """A package or jar the kernel cannot use: what is wrong, and how to fix it; ``unresolved``:
    (coordinate, Ivy's reason) for each package Ivy could not resolve."""

    unresolved: tuple = ()


def coordinates(words) -> list[str]:
    """Maven coordinates from words or comma-separated text, each checked; DependencyError naming
    the first that is not one."""
    if isinstance(words, str):
        words = [words]
    found = []
    for word in words:
        for item in str(word).split(","):
            item = item.strip()
            if not item:
                continue
            if not COORDINATE.fullmatch(item):
                raise DependencyError(f"{item!r} is not a Maven coordinate", COORDINATE_FIX)
            found.append(item)
    return found


def module(coordinate: str) -> str:
    return coordinate.rsplit(":", 1)[0]


def merge_packages(current: str | None, added) -> str:
    """spark.jars.packages with ``added`` merged in: each group:artifact once, the later version
    in the earlier's place."""
    merged = {}
    for coordinate in coordinates(current or "") + list(added):
        merged[module(coordinate)] = coordinate
    return ",".join(merged.values())


def check_jar(path: str, base: str | None = None) -> str:
    """The absolute path of a local jar; DependencyError when it is none."""
    full = os.path.abspath(os.path.join(base or os.getcwd(), os.path.expanduser(path)))
    if "," in full or any(ord(char) < 32 for char in full):
        raise DependencyError(f"{path!r} has a comma or a control character, which spark.jars cannot hold", "rename the jar or its directory")
    if not os.path.isfile(full):
        raise DependencyError(f"{full} does not exist" if not os.path.exists(full) else f"{full} is not a file", "give the path of a .jar file")
    if not zipfile.is_zipfile(full):
        raise DependencyError(f"{full} is not a jar (not a zip archive)", "give the path of a .jar file")
    return full


def merge_jars(current: str | None, added) -> str:
    """spark.jars with ``added`` (absolute paths) merged in, each once, in order."""
    found = [item.strip() for item in (current or "").split(",") if item.strip()]
    return ",".join(dict.fromkeys(found + list(added)))


def in_force(conf: dict) -> tuple[list[str], list[str]]:
    """(packages, jars) that ``conf`` names."""
    return ([item.strip() for item in conf.get(PACKAGES, "").split(",") if item.strip()],
            [item.strip() for item in conf.get(JARS, "").split(",") if item.strip()])


def ivy_dir(environ) -> str:
    """The per-user Ivy directory: its cache/ and the resolved jars/ (runtime.cache prunes it)."""
    return os.path.join(cache.cache_root(environ), cache.IVY)


def ivy_settings(conf: dict, environ) -> dict:
    """spark.jars.ivy in the per-user cache, when the kernel resolves packages and the user named
    no Ivy directory of their own."""
    if not conf.get(PACKAGES) or conf.get(IVY):
        return {}
    directory = ivy_dir(environ)
    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return {IVY: directory}


def resolution_conf(conf: dict, environ) -> dict:
    """The settings spark-submit resolves packages with: the kernel's, with the default Ivy directory."""
    merged = {**conf, **ivy_settings(conf, environ)}
    return {key: merged[key] for key in RESOLUTION_KEYS if merged.get(key)}


def hide_credentials(text: str) -> str:
    return CREDENTIALS.sub(r"\1***@", text)


def where_from(conf: dict) -> str:
    if conf.get("spark.jars.ivySettings"):
        return f"the Ivy settings {conf['spark.jars.ivySettings']}"
    repositories = conf.get("spark.jars.repositories")
    return hide_credentials(f"{CENTRAL} and {repositories}" if repositories else CENTRAL)


def unreachable(output: str) -> str | None:
    """The first host Ivy could not find ('Host repo1.maven.org not found'), as 'no host
    repo1.maven.org'; Spark's spark-packages repository, which many networks do not reach, aside."""
    for match in UNREACHABLE.finditer(output):
        host = (match.group(1) or match.group(2)).rstrip(".")
        if host != SPARK_PACKAGES_HOST:
            return f"no host {host}"
    return None


def unresolved(output: str) -> list[tuple[str, str]]:
    """(coordinate, Ivy's reason) for each module Ivy's report lists as unresolved."""
    found = []
    for line in output.splitlines():
        match = UNRESOLVED.match(line)
        if match:
            found.append((f"{match.group(1)}:{match.group(2)}:{match.group(3)}", match.group(4)))
    return list(dict.fromkeys(found))


def resolution_error(output: str, conf: dict, returncode: int, log_path: str | None = None) -> DependencyError:
    missing = unresolved(output)
    network = unreachable(output)
    reach = f"check that {where_from(conf)} can be reached, where Ivy found {network}" if network else None
    if missing:
        named = ", ".join(f"{coordinate} ({why})" for coordinate, why in missing)
        error = DependencyError(hide_credentials(f"{named}: not resolved from {where_from(conf)}"), f"{reach}; or {UNRESOLVED_FIX}" if reach else UNRESOLVED_FIX)
        error.unresolved = tuple(missing)
        return error
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if "Exception" in line or "Error" in line), lines[-1] if lines else f"exit code {returncode}")
    fix = reach or "check the coordinates and spark.jars.repositories or spark.jars.ivySettings"
    return DependencyError(hide_credentials(f"the packages did not resolve: {last}"), f"{fix}; %spark log shows the resolver's output" if log_path else fix)


def resolve(conf: dict, environ, spark_home: str, java: str | None = None, timeout: float = RESOLVE_TIMEOUT, log_path: str | None = None) -> float:
    """Resolve ``conf``'s packages as the driver's launch would, with spark-submit on a script
    that does nothing (no Spark session, no cluster); the seconds it took. DependencyError naming
    what did not resolve. ``log_path``: a log (the kernel's JVM log) that keeps the resolver's output
    when it fails."""
    settings = resolution_conf(conf, environ)
    if not settings.get(PACKAGES):
        return 0.0
    submit = os.path.join(spark_home, "bin", "spark-submit")
    # The resolution runs locally, whatever the kernel's master; kernel.json's "" means unset.
    env = {key: value for key, value in environ.items() if key not in LOCAL_ONLY and not (key in SPARK_VARIABLES and value == "")}
    env.update({"SPARK_HOME": spark_home, "PYSPARK_DRIVER_PYTHON": env.get("PYSPARK_DRIVER_PYTHON") or sys.executable or "python3"})
    if java:
        env["JAVA_HOME"] = os.path.dirname(os.path.dirname(os.path.realpath(java)))
    work = tempfile.mkdtemp(prefix="pyspark-kernel-resolve-", dir=environ.get("TMPDIR") or None)
    try:
        script = os.path.join(work, "nothing.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(NOTHING)
        # Values as list items, never through a shell; each key is one of ours, each value checked.
        command = [submit, "--master", "local[1]", "--name", "pyspark-kernel-resolve"]
        for key, value in settings.items():
            command += ["--conf", f"{key}={value}"]
        started = time.monotonic()
        try:
            done = subprocess.run(command + [script], capture_output=True, text=True, errors="replace", env=env, cwd=work, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DependencyError(f"resolving {settings[PACKAGES]} took over {timeout:g} s", f"check that {where_from(settings)} can be reached") from None
        except OSError as error:
            raise DependencyError(f"cannot run {submit}: {error.strerror}", "check SPARK_HOME in the kernel's kernel.json") from None
        if done.returncode != 0:
            if log_path:
                keep_output(log_path, done.stdout + done.stderr)
            raise resolution_error(done.stdout + done.stderr, settings, done.returncode, log_path)
        if settings.get(IVY) == ivy_dir(environ):
            cache.mark_used(ivy_dir(environ), ())  # its last use, for the cache's pruning
        return time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)



def keep_output(log_path: str, output: str) -> None:
    """The failed resolution's output at the end of the kernel's log (its owner's alone)."""
    try:
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8") as handle:
            handle.write(f"--- pyspark-kernel: spark-submit's resolution of the packages failed ---\n{hide_credentials(output.rstrip())}\n")
    except OSError:  # the error line still says what failed
        log.debug("keeping the resolver's output in %s", log_path, exc_info=True)
