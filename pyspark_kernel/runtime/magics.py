"""The %spark line magic: `%spark status`, `%spark restart [--conf KEY=VALUE ...]`, `%spark log [-n N]`."""

import shlex
import time

from .diagnostics import log_lines
from .options import shown_value

USAGE = "%spark status | %spark restart [--conf KEY=VALUE ...] | %spark log [-n N]"
LOG_LINES = 40


class MagicError(ValueError):
    """A %spark line that cannot be run; shown as one line."""


def parse_restart(words):
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
        key, equals, value = setting.partition("=")
        if not equals or not key.startswith("spark."):
            raise MagicError(f"%spark restart: --conf {setting!r} is not KEY=VALUE with a spark.* key (for example --conf spark.driver.memory=4g)")
        overrides[key] = value
    return overrides


def parse_log(words):
    if not words:
        return LOG_LINES
    if len(words) == 2 and words[0] == "-n" and words[1].isdigit() and int(words[1]) > 0:
        return int(words[1])
    raise MagicError("%spark log: usage: %spark log [-n N]")


def duration(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def status_lines(runtime):
    lines = [f"state: {runtime.state}"]
    if runtime.state == "ready":
        lines[0] += f" (started in {runtime.elapsed():.1f} s, up {duration(time.monotonic() - runtime.ready_at)})"
    if runtime.connect:
        lines.append(f"Spark Connect server: {runtime.master}")
    else:
        lines.append(f"master: {runtime.conf.get('spark.master', runtime.master)}")
    if runtime.state == "ready" and not runtime.connect:
        sc = runtime.context
        executors = sc._jsc.sc().getExecutorMemoryStatus().size() - (0 if sc.master.startswith("local") else 1)
        lines.append(f"application: {sc.applicationId} | UI {runtime.ui_link() or 'off'}")
        lines.append(f"executors: {executors}" + (" (the driver itself, in local mode)" if sc.master.startswith("local") else ""))
    lines.append(f"executor Python: {runtime.environ.get('PYSPARK_PYTHON') or '(unset: python3 on the executors PATH)'}")
    overrides = {key: value for key, value in runtime.conf.items() if runtime.kernel_conf.get(key) != value}
    if overrides:
        lines.append("restarted with: " + " ".join(f"--conf {key}={shown_value(key, value)}" for key, value in overrides.items()))
    lines.append(f"JVM log: {runtime.log}")
    if runtime.state in ("failed", "dead"):
        lines.append(str(runtime.error).splitlines()[0])
    return lines


def run(notebook, line):
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
        notebook.restart(parse_restart(rest))
    elif command == "log":
        count = parse_log(rest)
        found = log_lines(runtime.log)
        print("\n".join(found[-count:]) if found else f"(nothing in {runtime.log} yet)")
    else:
        raise MagicError(f"%spark: unknown command {line.strip()!r} (usage: {USAGE})")


def register(shell, notebook):
    from IPython.core.error import UsageError

    def spark(line):
        try:
            run(notebook, line)
        except MagicError as error:
            raise UsageError(str(error)) from None

    spark.__doc__ = f"The kernel's Spark session: {USAGE}"
    shell.register_magic_function(spark, "line", "spark")
