"""The %spark line magic (`%spark status`, `%spark restart [--conf KEY=VALUE ...]`, `%spark conf
[KEY=VALUE ...]`, `%spark packages G:A:V ...`, `%spark jars PATH ...`, `%spark log [-n N]`), and
the %%sql cell magic of the sql module."""

from __future__ import annotations

import logging
import re
import shlex
import os
import time

from . import dependencies, sql
from .diagnostics import SparkStartError, check_spark_home, find_java, log_lines
from .notebook import split_options
from .options import REDACTED, shown_value
from .profile import duration
from .state import State

log = logging.getLogger(__name__)

USAGE = ("%spark status | %spark restart [--conf KEY=VALUE ...] | %spark conf [KEY=VALUE ...] | %spark packages GROUP:ARTIFACT:VERSION ... "
         "| %spark jars PATH ... | %spark log [-n N]")
PACKAGES_USAGE = "%spark packages GROUP:ARTIFACT:VERSION ..."
JARS_USAGE = "%spark jars PATH.jar ..."
# Spark's own default for spark.redaction.regex, for a session that does not say.
SPARK_REDACTION = r"(?i)secret|password|token|access[.]?key"
LOG_LINES = 40


class MagicError(ValueError):
    """A %spark line that cannot be run; shown as one line."""


def parse_restart(words: list[str]) -> dict:
    """The --conf overrides of `%spark restart`, as {key: value}."""
    overrides = {}
    words = list(words)
    while words:
        word = words.pop(0)
        if word == "--conf" and words:
            setting = words.pop(0)
        elif word.startswith("--conf="):
            setting = word[len("--conf="):]
        else:
            raise MagicError(f"%spark restart: unexpected {word!r} (usage: %spark restart [--conf KEY=VALUE ...])")
        key, value = read_setting(setting, f"%spark restart: --conf {setting!r}", "(for example --conf spark.driver.memory=4g)")
        overrides[key] = value
    return overrides


def read_setting(word: str, what: str, fix: str) -> tuple[str, str]:
    """(key, value) of a KEY=VALUE word with a spark.* key."""
    key, equals, value = word.partition("=")
    if not equals or not key.startswith("spark."):
        raise MagicError(f"{what} is not KEY=VALUE with a spark.* key {fix}")
    return key, value


def parse_settings(words: list[str], usage: str) -> dict:
    """KEY=VALUE words as {key: value}, each key a spark.* setting."""
    return dict(read_setting(word, f"{usage.split(' [')[0]}: {word!r}", f"(usage: {usage})") for word in words)


def parse_log(words: list[str]) -> int:
    if not words:
        return LOG_LINES
    if len(words) == 2 and words[0] == "-n" and words[1].isdigit() and int(words[1]) > 0:
        return int(words[1])
    raise MagicError("%spark log: usage: %spark log [-n N]")


def status_lines(runtime) -> list[str]:
    lines = [f"state: {runtime.state}"]
    if runtime.state == State.READY:
        lines[0] += f" (started in {runtime.elapsed():.1f} s, up {duration(time.monotonic() - runtime.attempt.ready_at)})"
    lines += runtime.driver.status_lines()
    lines.append(f"executor Python: {runtime.environ.get('PYSPARK_PYTHON') or '(unset: python3 on the executors PATH)'}")
    packages, jars = dependencies.in_force(runtime.conf)
    if packages:
        lines.append(f"packages: {', '.join(packages)} (resolved into {runtime.conf.get(dependencies.IVY) or dependencies.ivy_dir(runtime.environ)})")
    if jars:
        lines.append(f"jars: {', '.join(jars)}")
    overrides = restarted_with(runtime)
    if overrides:
        lines.append("restarted with: " + " ".join(f"--conf {key}={shown_value(key, value)}" for key, value in overrides.items()))
    lines.append(f"JVM log: {runtime.log}")
    if runtime.profile.steps:
        lines.append("last start, step by step:")
        lines += ["  " + line for line in runtime.profile.lines()]
    if runtime.state in (State.FAILED, State.DEAD):
        lines.append(str(runtime.error).splitlines()[0])
    return lines


def conf_lines(session) -> list[str]:
    """The session's effective settings, one `key = value` a line, sorted; a secret's value is
    redacted as Spark's spark.redaction.regex (and the kernel's own check) say."""
    found = {row[0]: row[1] for row in session.sql("SET").collect()}
    try:
        pattern = re.compile(found.get("spark.redaction.regex") or SPARK_REDACTION)
    except re.error:  # a Java-only regex: Spark's default, and the kernel's own check, still apply
        log.debug("reading the session's spark.redaction.regex", exc_info=True)
        pattern = re.compile(SPARK_REDACTION)
    return [f"{key} = {REDACTED if pattern.search(key) or pattern.search(value or '') else shown_value(key, value)}" for key, value in sorted(found.items())]


def apply_conf(notebook, settings: dict) -> None:
    """%spark conf KEY=VALUE ...: runtime settings now; the others by a restart, merged into the
    settings the session has (Python variables stay)."""
    session = notebook.session()
    current = {key: session.conf.get(key, None) for key in settings}
    now, later = split_options(settings, current, session.conf.isModifiable)
    for key, value in now.items():
        session.conf.set(key, value)
    if now:
        print("set now: " + " ".join(f"{key}={shown_value(key, value)}" for key, value in now.items()), flush=True)
    if later:
        check_resolution(notebook.runtime, {**notebook.runtime.kernel_conf, **restarted_with(notebook.runtime), **later}, "%spark conf")
        print("restarting the session for " + " ".join(f"{key}={shown_value(key, value)}" for key, value in later.items())
              + " (they need a new driver; Python variables are kept)", flush=True)
        notebook.restart({**restarted_with(notebook.runtime), **later})
    if not now and not later:
        print("unchanged: the session has these settings already", flush=True)


def restarted_with(runtime) -> dict:
    """The settings the session was restarted with beyond the kernel's own (a restart keeps them)."""
    return {key: value for key, value in runtime.conf.items() if runtime.kernel_conf.get(key) != value}


def add_packages(notebook, words: list[str]) -> None:
    """%spark packages: the coordinates merged into spark.jars.packages, resolved first by Spark's own
    resolver (runtime.dependencies), then the session restarted with them. A coordinate that does not
    resolve stops here: the session stays."""
    runtime = notebook.runtime
    try:
        added = dependencies.coordinates(words)
        if not added:
            raise dependencies.DependencyError("no package given", f"usage: {PACKAGES_USAGE}")
        merged = dependencies.merge_packages(runtime.conf.get(dependencies.PACKAGES), added)
        if merged == runtime.conf.get(dependencies.PACKAGES) and runtime.state == State.READY:
            print(f"unchanged: the session has {', '.join(added)} already", flush=True)
            return
        refuse_without_own_driver(runtime, "packages")
        print(f"resolving {', '.join(added)} (the first time downloads them; the cache keeps them)", flush=True)
        seconds = dependencies.resolve({**runtime.conf, dependencies.PACKAGES: merged}, runtime.environ, check_spark_home(runtime.environ),
                                       find_java(runtime.environ), log_path=runtime.log)
    except (dependencies.DependencyError, SparkStartError) as error:
        raise MagicError(f"%spark packages: {error}") from None
    print(f"resolved in {seconds:.1f} s; restarting the session with {dependencies.PACKAGES}={merged} (Python variables are kept)", flush=True)
    notebook.restart({**restarted_with(runtime), dependencies.PACKAGES: merged})


def check_resolution(runtime, conf: dict, command: str) -> None:
    """A restart (`%spark restart --conf`, `%spark conf`) whose settings change what spark-submit
    resolves, checked first by Spark's own resolver as `%spark packages` is: a package that does not
    resolve leaves the running session as it is. Without a running session there is nothing to keep."""
    if runtime.state != State.READY or not runtime.driver.has_context or not conf.get(dependencies.PACKAGES):
        return
    if all(conf.get(key) == runtime.conf.get(key) for key in dependencies.RESOLUTION_KEYS):
        return
    try:
        print(f"resolving {conf[dependencies.PACKAGES]} before the restart (the first time downloads them; the cache keeps them)", flush=True)
        dependencies.resolve(conf, runtime.environ, check_spark_home(runtime.environ), find_java(runtime.environ), log_path=runtime.log)
    except (dependencies.DependencyError, SparkStartError) as error:
        raise MagicError(f"{command}: {error}") from None


def add_jars(notebook, words: list[str]) -> None:
    """%spark jars: local jars merged into spark.jars, then the session restarted with them."""
    runtime = notebook.runtime
    try:
        if not words:
            raise dependencies.DependencyError("no jar given", f"usage: {JARS_USAGE}")
        added = [dependencies.check_jar(word, os.getcwd()) for word in words]
        refuse_without_own_driver(runtime, "jars")
    except dependencies.DependencyError as error:
        raise MagicError(f"%spark jars: {error}") from None
    merged = dependencies.merge_jars(runtime.conf.get(dependencies.JARS), added)
    if merged == runtime.conf.get(dependencies.JARS) and runtime.state == State.READY:
        print(f"unchanged: the session has {', '.join(added)} already", flush=True)
        return
    print(f"restarting the session with {dependencies.JARS}={merged} (Python variables are kept)", flush=True)
    notebook.restart({**restarted_with(runtime), dependencies.JARS: merged})


def refuse_without_own_driver(runtime, what: str) -> None:
    if runtime.driver.has_context:
        return
    if runtime.options.get("spark_driver") == "shared":  # the kernel starts the server, and gives it no packages or jars
        raise dependencies.DependencyError(f"this kernel's notebooks share one Spark Connect server (spark_driver shared), which takes no {what}",
                                           "use a kernel created with --spark_driver dedicated")
    raise dependencies.DependencyError(f"this kernel's Spark runs in a Spark Connect server, which loads its own {what}",
                                       "set spark.jars.packages or spark.jars where the server starts, or use a kernel created with --spark_driver dedicated")


def run(notebook, line: str) -> None:
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise MagicError(f"%spark: cannot read {line.strip()!r}: {error} (usage: {USAGE})") from None
    command, rest = (words[0], words[1:]) if words else ("status", [])
    runtime = notebook.runtime
    runtime.check_alive()  # a JVM that died since the last cell shows as dead, not ready
    if command == "status" and not rest:
        print("\n".join(status_lines(runtime)))
    elif command == "restart":
        overrides = parse_restart(rest)
        check_resolution(runtime, {**runtime.kernel_conf, **overrides}, "%spark restart")
        notebook.restart(overrides)
    elif command == "conf":
        if rest:
            apply_conf(notebook, parse_settings(rest, "%spark conf [KEY=VALUE ...]"))
        else:
            print("\n".join(conf_lines(notebook.session())))
    elif command == "packages":
        add_packages(notebook, rest)
    elif command == "jars":
        add_jars(notebook, rest)
    elif command == "log":
        count = parse_log(rest)
        found = log_lines(runtime.log)
        print("\n".join(found[-count:]) if found else f"(nothing in {runtime.log} yet)")
    else:
        raise MagicError(f"%spark: unknown command {line.strip()!r} (usage: {USAGE})")


def register(shell, notebook) -> None:
    from IPython.core.error import UsageError

    def spark(line):
        try:
            run(notebook, line)
        except MagicError as error:
            raise UsageError(str(error)) from None

    spark.__doc__ = f"The kernel's Spark session: {USAGE}"
    shell.register_magic_function(spark, "line", "spark")

    def run_sql(line, cell):
        from IPython.display import display

        try:
            options = sql.parse(line, notebook.runtime.options.get("sql_rows", sql.DEFAULT_ROWS))
            sql.run(notebook.session(), cell, options, notebook.namespace, display)
        except sql.SQLUsageError as error:
            raise UsageError(str(error)) from None

    run_sql.__doc__ = f"Run the cell as Spark SQL: {sql.USAGE}"
    shell.register_magic_function(run_sql, "cell", "sql")
