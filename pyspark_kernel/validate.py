"""Checks on the user's answers that need nothing but the answers themselves.

Checks that need the machine (does venv_dir's Python run, where is Spark) live in
``environment.py`` and ``sparkhome.py``. Every check raises InputError with the fix.
"""

import functools
import os
import re
from typing import Any, Callable

from .errors import InputError, quote
from .runtime import dependencies
from .runtime.masters import MASTER_FORMS, MASTERS, is_connect  # one reading of master URLs, the kernel's too
from .runtime.options import DRIVER_MODES, ENV_REFERENCE, OPTIONS, RUNTIME_OPTIONS, Option, is_secret  # the runtime's own

# jupyter_client's rule (ASCII letters, digits, - . _). Jupyter lowercases names on install, so an
# uppercase name would be installed under another name than the one asked for: refuse it instead.
KERNEL_NAME = re.compile(r"[a-z0-9._-]+")
KERNEL_NAME_MAX = 64

CONF_KEY = re.compile(r"spark(?:\.[A-Za-z0-9_/-]+)+")
# Settings Spark reads as a byte size; a typo there only shows up when the JVM starts.
MEMORY_KEY = re.compile(r"spark\..*\.(?:memory|memoryOverhead|maxResultSize)|spark\.memory\.offHeap\.size")
BYTE_SIZE = re.compile(r"[0-9]+(?:b|k|kb|m|mb|g|gb|t|tb|p|pb)?", re.IGNORECASE)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Settings and variables that hold secrets must not be written into kernel.json (readable by
# everyone who can list the kernels directory): the runtime's own detector (is_secret), so that
# what is refused here is what the kernel redacts. ENV_REFERENCE is Spark's syntax for a value
# from the environment, which the kernel resolves when it starts.
# Set by the generator from other answers; a second source would silently win or lose.
RESERVED_ENV = {
    "SPARK_HOME": "set spark_home instead",
    "PYSPARK_PYTHON": "set venv_dir instead: driver and executors run its Python",
    "PYSPARK_DRIVER_PYTHON": "set venv_dir instead: driver and executors run its Python",
    "PYSPARK_KERNEL_SPARK_CONF": "set spark_conf instead",
    "PYSPARK_KERNEL_OPTIONS": f"set {', '.join(option.name for option in RUNTIME_OPTIONS[:-1])} or {RUNTIME_OPTIONS[-1].name} instead",
    "PYTHONPATH": "install packages into venv_dir instead",
    "SPARK_REMOTE": "set spark_master to the sc:// URL instead",
}


def check_kernel_name(name):
    if not isinstance(name, str) or not name:
        raise InputError("kernel_name", "is empty", "give a name such as pyspark-local")
    if len(name) > KERNEL_NAME_MAX:
        raise InputError("kernel_name", f"is {len(name)} characters long", f"use at most {KERNEL_NAME_MAX}")
    if not KERNEL_NAME.fullmatch(name.lower()):
        raise InputError(
            "kernel_name",
            f"invalid kernel name {quote(name)}",
            "kernel names can only contain ASCII letters and numbers and these separators: - . _",
        )
    if name != name.lower():
        raise InputError("kernel_name", f"{quote(name)} has uppercase letters", f"use {name.lower()}: Jupyter lowercases kernel names")
    if name.startswith("."):
        raise InputError("kernel_name", f"{quote(name)} starts with a dot", "start it with a letter or digit: Jupyter hides such kernels")
    return name


def check_text(field, value):
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, "is empty", "give a name people will see in the launcher")
    if "\x00" in value:
        raise InputError(field, "contains a NUL character", "remove it")
    return value


def check_master(master):
    if not isinstance(master, str) or not master:
        raise InputError("spark_master", "is empty", "use local[*] to run Spark inside the kernel")
    if not any(pattern.fullmatch(master) for pattern in MASTERS.values()):
        raise InputError("spark_master", f"{quote(master)} is not a Spark master URL", f"use one of {MASTER_FORMS}")
    if is_connect(master) and re.search(r";token=", master, re.IGNORECASE):
        raise InputError("spark_master", "has a token in it, which would be written into kernel.json",
                         "leave it out and set SPARK_CONNECT_TOKEN for the Jupyter server: the kernel adds it when it starts")
    return master


def master_kind(master):
    """Which kind of cluster a (valid) master URL names: local, standalone, yarn, kubernetes, connect."""
    return next(kind for kind, pattern in MASTERS.items() if pattern.fullmatch(master))


def conf_value_text(value):
    """Spark conf values are strings; HOCON and JSON layers may give booleans and numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def check_spark_conf(conf):
    if not isinstance(conf, dict):
        raise InputError("spark_conf", f"must be a mapping of spark.* keys to values, not {quote(conf)}", 'give a JSON object such as {"spark.executor.memory": "4g"}')
    checked = {}
    for key, value in conf.items():
        if not isinstance(key, str) or not CONF_KEY.fullmatch(key):
            raise InputError("spark_conf", f"key {quote(key)} is not a Spark setting", "Spark settings start with spark. and contain letters, digits, . _ - /")
        if key == "spark.master":
            raise InputError("spark_conf", "spark.master is set here", "set spark_master instead")
        value = conf_value_text(value)
        if not isinstance(value, str):
            raise InputError("spark_conf", f"{key} has a value of type {type(value).__name__}", "give a string")
        if value == "":
            raise InputError("spark_conf", f"{key} is empty", "give it a value, or leave the key out")
        if "\x00" in value:
            raise InputError("spark_conf", f"{key} contains a NUL character", "remove it")
        if is_secret(key, value) and not ENV_REFERENCE.fullmatch(value):
            raise InputError("spark_conf", f"{key} holds a secret, and its value would be written into kernel.json",
                             "give it as ${env:NAME} and set NAME for the Jupyter server: the kernel reads it when it starts")
        if MEMORY_KEY.fullmatch(key) and not BYTE_SIZE.fullmatch(value):
            raise InputError("spark_conf", f"{key} = {quote(value)} is not a size", "use a whole number with a unit, like 512m or 4g")
        checked[key] = value
    return checked


def check_env(env):
    if not isinstance(env, dict):
        raise InputError("env", f"must be a mapping of variable names to values, not {quote(env)}", 'give a JSON object such as {"HADOOP_CONF_DIR": "/etc/hadoop/conf"}')
    checked = {}
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise InputError("env", f"{quote(name)} is not an environment variable name", "use letters, digits and _, not starting with a digit")
        if name in RESERVED_ENV:
            raise InputError("env", f"{name} is set by the generator", RESERVED_ENV[name])
        value = conf_value_text(value)
        if not isinstance(value, str):
            raise InputError("env", f"{name} has a value of type {type(value).__name__}", "give a string")
        if "\x00" in value:
            raise InputError("env", f"{name} contains a NUL character", "remove it")
        if is_secret(name, value):
            raise InputError("env", f"{name} holds a secret, and its value would be written into kernel.json",
                             f"pass it with --env-from {name}: the kernel takes it from the Jupyter server's environment when it starts")
        checked[name] = value
    return checked


def check_env_from(names):
    """Variables the kernel takes from the Jupyter server's environment when it starts."""
    if not isinstance(names, (list, tuple)):
        raise InputError("env_from", f"must be a list of variable names, not {quote(names)}", 'give a JSON list such as ["MY_TOKEN"]')
    for name in names:
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise InputError("env_from", f"{quote(name)} is not an environment variable name", "use letters, digits and _, not starting with a digit")
        if name in RESERVED_ENV:
            raise InputError("env_from", f"{name} is set by the generator", RESERVED_ENV[name])
    return list(names)


def check_packages(value):
    """Maven coordinates, as text (comma-separated) or a list; the canonical comma-separated text."""
    if value is None:
        return ""
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(item, str) for item in ([value] if isinstance(value, str) else value)):
        raise InputError("packages", f"must be GROUP:ARTIFACT:VERSION coordinates, not {quote(value)}", dependencies.COORDINATE_FIX)
    try:
        return ",".join(dict.fromkeys(dependencies.coordinates(value)))
    except dependencies.DependencyError as error:
        raise InputError("packages", error.problem, error.fix) from None


def merge_packages(conf: dict, packages: str, kind: str, driver: str) -> dict:
    """The Spark settings with ``packages`` merged into the spark.jars.packages the layers set (each
    group:artifact once, the answer's version winning), every coordinate checked."""
    key = dependencies.PACKAGES
    if not packages and key not in conf:
        return conf
    if driver == "shared":  # the kernel starts the server, and gives it no packages
        raise InputError("packages", "the notebooks of a shared-driver kernel share one Spark Connect server, which takes no packages",
                         "use --spark_driver dedicated")
    if kind == "connect":
        raise InputError("packages", "a Spark Connect server loads its own packages, and this kernel's Spark runs in one",
                         "set spark.jars.packages where the server starts, or use --spark_driver dedicated with a local or cluster master")
    try:
        merged = dependencies.merge_packages(conf.get(key, ""), dependencies.coordinates(packages))
    except dependencies.DependencyError as error:
        raise InputError("packages", f"{key}: {error.problem}", error.fix) from None
    return {**conf, key: merged}


# Jupyter replaces {connection_file}, {resource_dir}, {prefix}... in a kernel's argv, where the
# environment's Python path goes, and has no escape for a literal brace pair.
ARGV_PLACEHOLDER = re.compile(r"\{[A-Za-z0-9_]+\}")


def check_path_text(field, value):
    if not isinstance(value, str):
        raise InputError(field, f"must be a path, not {quote(value)}", "give a directory path, or leave it empty")
    if any(ord(char) < 32 for char in value):
        raise InputError(field, f"{quote(value)} is not a usable path", "give a directory path without control characters")
    if ARGV_PLACEHOLDER.search(value):
        raise InputError(field, f"{quote(value)} contains a {{name}} that Jupyter would replace in the kernel's command line", "rename or link the directory to a path without braces")
    return value


SUPPORTED_PLATFORMS = {"linux": "Linux", "darwin": "macOS"}


def check_platform(platform):
    """The kernel's runtime needs a POSIX shell, signals and process groups: Linux and macOS."""
    if platform not in SUPPORTED_PLATFORMS:
        raise InputError("platform", f"{platform} is not supported", "pyspark-kernel runs on Linux and macOS; on Windows, use WSL")
    return platform


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "y", "1", "on"), ("false", "no", "n", "0", "off")
START_TIMEOUT_MAX = 3600
IDLE_TIMEOUT_MAX = 7 * 24 * 3600


def check_flag(field, value):
    """Cookiecutter gives yes/no answers as booleans, --no-input as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise InputError(field, f"{quote(value)} is not yes or no", "answer yes or no")


def check_choice(field, value, choices):
    if value not in choices:
        raise InputError(field, f"{quote(value)} is not one of {', '.join(choices)}", f"use one of {', '.join(choices)}")
    return value


def check_seconds(field, value, allowed, fix):
    """A number of seconds that ``allowed`` accepts, or None (empty) for the profile's own."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not allowed(seconds):  # NaN is never allowed
        raise InputError(field, f"{quote(value)} is not a number of seconds", fix)
    return int(seconds) if seconds == int(seconds) else seconds


def check_idle_timeout(value):
    """Seconds without a Spark job before the session is stopped, 0 for never."""
    return check_seconds("idle_timeout", value, lambda seconds: 0 <= seconds <= IDLE_TIMEOUT_MAX,
                         f"give 0 (never) or a number up to {IDLE_TIMEOUT_MAX}, like 3600, or leave it empty for the profile's")


def check_start_timeout(value):
    """The longest a start may take."""
    return check_seconds("start_timeout", value, lambda seconds: 0 < seconds <= START_TIMEOUT_MAX,
                         f"give a number between 1 and {START_TIMEOUT_MAX}, like 600, or leave it empty for the profile's")


def check_spark_driver(value):
    """Empty: the profile decides (dedicated unless it says)."""
    if value in ("", None):
        return None
    return check_choice("spark_driver", value, DRIVER_MODES)


DRIVER_LINGER_MAX = 24 * 3600


def check_driver_linger(value):
    return check_seconds("driver_linger", value, lambda seconds: 0 <= seconds <= DRIVER_LINGER_MAX,
                         f"give the seconds a shared driver stays after its last notebook, between 0 and {DRIVER_LINGER_MAX}, like 30, or leave it empty for the profile's")


PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def check_profile(value):
    """A profile name (profiles/<name>.conf in the template) or the path of a .conf file."""
    if isinstance(value, str) and (PROFILE_NAME.fullmatch(value) or value.endswith(".conf")):
        return check_path_text("profile", value)
    raise InputError("profile", f"{quote(value)} is neither a profile name nor a .conf file", "give a name from the template's profiles/ directory, or the path of a HOCON .conf file")


def check_executor_python(value):
    """Empty: the profile decides; "pack": ship the kernel's environment; else the executors' Python."""
    value = check_path_text("executor_python", value)
    if value not in ("", "pack") and not os.path.isabs(value):
        raise InputError("executor_python", f"{quote(value)} is neither pack nor an absolute path", "give pack, or the path of the Python the executors have, like /opt/venvs/etl/bin/python")
    return value


# The answers whose check is their own; the others are checked by their kind (runtime.options.OPTIONS).
SPECIAL_CHECKS = {
    "kernel_name": check_kernel_name,
    "profile": check_profile,
    "spark_master": check_master,
    "executor_python": check_executor_python,
    "spark_conf": check_spark_conf,
    "env": check_env,
    "env_from": check_env_from,
    "packages": check_packages,
    "start_timeout": check_start_timeout,
    "idle_timeout": check_idle_timeout,
    "spark_driver": check_spark_driver,
    "driver_linger": check_driver_linger,
}
COUNT = re.compile(r"[0-9]+")


def check_count(field: str, value: Any) -> int:
    """A whole number above 0; cookiecutter's --no-input and create's flags give it as text."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not COUNT.fullmatch(text) or int(text) == 0:
        raise InputError(field, f"{quote(value)} is not a whole number above 0", "give a number such as 20")
    return int(text)


KIND_CHECKS = {"text": check_text, "path": check_path_text, "flag": check_flag, "count": check_count}


def check_of(option: Option) -> Callable[[Any], Any]:
    if option.name in SPECIAL_CHECKS:
        return SPECIAL_CHECKS[option.name]
    if option.kind == "choice":
        return functools.partial(check_choice, option.name, choices=option.choices)
    return functools.partial(KIND_CHECKS[option.kind], option.name)


# Each answer's check and its value when it is not given; None fails the check (it is required).
CHECKS = {option.name: (check_of(option), None if option.required else option.default) for option in OPTIONS}


def check_answers(answers: dict) -> dict:
    """The answers with every value checked; raises InputError on the first bad one."""
    return {field: check(answers.get(field, default)) for field, (check, default) in CHECKS.items()}


def check_given(answers: dict) -> dict:
    """Check only the answers given (the template's defaults fill the others later)."""
    return {field: CHECKS[field][0](value) for field, value in answers.items() if field in CHECKS}


def check_value(field: str, value: Any) -> Any:
    """One answer, checked as its option says (a layer's kernel.* value too)."""
    return CHECKS[field][0](value)
