"""The kernel's options and Spark settings, as kernel.json passes them, and its secrets.

The generator imports the names defined here too (pyspark_kernel.kernelspec): the two sides of
kernel.json are written against one definition.
"""

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .diagnostics import REGENERATE, KernelJsonError, SparkStartError
from .sql import DEFAULT_ROWS

OPTIONS_VARIABLE = "PYSPARK_KERNEL_OPTIONS"
CONF_VARIABLE = "PYSPARK_KERNEL_SPARK_CONF"
CONNECT_TOKEN_VARIABLE = "SPARK_CONNECT_TOKEN"
# Variables of the Jupyter server's environment that would change the kernel's Spark behind
# kernel.json's back. kernel.json sets each one, to "" when the kernel wants it unset, and the
# runtime removes the empty ones before Spark starts.
SPARK_VARIABLES = ("SPARK_HOME", "PYSPARK_PYTHON", "PYTHONPATH", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR", "PYSPARK_DRIVER_PYTHON",
                   "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_API_MODE", "MASTER")
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
# What makes a setting or variable a secret, by whole segments of its name (split at . _ - and
# camelCase): Spark's own spark.redaction.regex (secret, password, token, access key) plus cloud
# credentials (account keys, SAS tokens, private and API keys, client secrets).
SECRET_SEGMENTS = {"secret", "password", "passwd", "pwd", "passphrase", "token", "sas", "apikey", "secretkey", "accesskey"}
SECRET_PAIRS = {("access", "key"), ("account", "key"), ("private", "key"), ("secret", "key"), ("encryption", "key"), ("api", "key"), ("client", "secret"), ("session", "token"),
                ("credentials", "json"), ("credential", "json")}
# A segment after the secret words that says the setting describes a secret, not holds one:
# oauthTokenFile, credentials.provider, keySizeBits, secretKeyRef.
DESCRIBES = {"provider", "providers", "file", "path", "location", "dir", "enabled", "enable", "type", "class", "impl", "algorithm",
             "mode", "size", "bits", "length", "interval", "timeout", "ttl", "endpoint", "ref", "name", "mount"}
# A value that is a secret whatever its name: a URL with a password, or a password= setting.
SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@|(?i:\bpassword\s*=)|-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key\"\s*:")
SEGMENT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def shared_driver(config: dict) -> bool:
    return config.get("spark_driver") == "shared"


@dataclass(frozen=True)
class Option:
    """One answer of the template, declared once: the create flags, the answer checks, the
    runtime's defaults, cookiecutter.json (tested), the layers' kernel.* keys, kernel.json's
    runtime options and the README's table are derived from it."""

    name: str  # the answer: a cookiecutter variable, create's --NAME, a layer's kernel.NAME
    kind: str  # text, path, profile, choice, flag, seconds, count (a whole number above 0), mapping, list: how it is read and checked
    help: str  # create's --help, and the README's table
    default: Any = ""  # when not given (cookiecutter.json's value; a choice's default is its first)
    choices: tuple = ()
    prompt: str = ""  # cookiecutter's prompt
    choice_prompts: tuple = ()  # cookiecutter's text for each choice, in the order of choices
    flags: Optional[tuple] = None  # create's flags (None: --NAME; empty: none argparse can declare)
    usage: str = ""  # how to give it to create, when argparse does not declare its flag
    metavar: str = ""
    repeat: bool = False  # a flag given once per item
    required: bool = False  # no default outside cookiecutter.json (whose default may be Jinja: options_doc.JINJA_DEFAULTS)
    cookiecutter: bool = True  # a variable of cookiecutter.json (else only create's flags give it)
    in_profile: bool = False  # a configuration layer (defaults.conf, a profile) may set it as kernel.NAME
    runtime: str = ""  # its key in kernel.json's PYSPARK_KERNEL_OPTIONS ("": not the runtime's)
    runtime_if: Optional[Callable[[dict], bool]] = None  # written only when this holds for the merged configuration
    fallback: Any = None  # when neither an answer nor a layer sets it (None: the default)
    if_bad: str = "keep"  # what the runtime does with a value it cannot use: keep it, "default", "refuse"
    zero_ok: bool = False  # seconds: 0 is allowed (it means never, or at once)

    @property
    def create_flags(self) -> tuple:
        return ("--" + self.name,) if self.flags is None else self.flags

    @property
    def runtime_default(self) -> Any:
        return self.default if self.fallback is None else self.fallback


INIT_MODES = ("background", "lazy", "eager")
WARM_UP_MODES = ("python", "jvm", "off")  # what the warm-up runs before the first cell (runtime.warming)
DRIVER_MODES = ("dedicated", "shared")  # a driver JVM of the kernel's own, or one shared over Spark Connect (runtime.dedicated, runtime.shared)
DRIVER_LINGER = 30  # seconds a shared driver stays after its last notebook has gone
UI_ACCESS = ("owner", "anyone")  # who may open the Spark UI (runtime.uiauth)
DATAFRAME_DISPLAYS = ("table", "schema")  # a DataFrame as a cell's value: its schema line, with its first rows or alone (runtime.frames)
LOG_LEVELS = ("WARN", "ERROR", "INFO", "DEBUG", "TRACE", "FATAL", "OFF", "ALL")
PROFILES = ("local", "standalone", "yarn", "kubernetes", "connect")  # the template's profiles/*.conf, as cookiecutter offers them

# In cookiecutter's order: it asks in this order (dict answers last).
OPTIONS = (
    Option("kernel_name", "text", "kernel name (default: the template's, pyspark-local)", default="pyspark-local", required=True, flags=("-k", "--kernel_name"),
           prompt="Kernel name (letters, digits, - . _; the directory name Jupyter uses)"),
    Option("display_name", "text", "name shown in Jupyter (default: PySpark (KERNEL_NAME))", required=True,
           prompt="Name shown in the Jupyter launcher"),
    Option("venv_dir", "path", "Python environment for driver and executors (default: this one)", flags=("-e", "--venv_dir_path"), metavar="VENV_DIR_PATH",
           prompt="Python environment for driver and executors (empty: the one running cookiecutter)"),
    Option("spark_home", "path", "SPARK_HOME (default: the environment's pyspark, else $SPARK_HOME)",
           prompt="SPARK_HOME (empty: the pyspark installed in that environment, else $SPARK_HOME)"),
    Option("profile", "profile", "cluster profile: a name from the template's profiles/ (local, standalone, yarn, kubernetes, connect) or a .conf file",
           default=PROFILES[0], choices=PROFILES, prompt="Cluster profile (profiles/*.conf)",
           choice_prompts=("local: Spark inside the kernel", "standalone: a spark:// cluster", "yarn: Hadoop YARN, client mode",
                           "kubernetes: k8s:// executors as pods", "connect: a Spark Connect server")),
    Option("spark_master", "text", "Spark master URL (default: the template's, local[*])", required=True,
           prompt="Spark master (the profile's by default)"),
    Option("executor_python", "text", "executors' Python for cluster masters: pack (ship this environment) or a path",
           prompt="Executors' Python for cluster masters (empty: the profile's; pack: ship this environment; or a path)"),
    Option("packages", "text", "Maven packages for the session, GROUP:ARTIFACT:VERSION, comma-separated: merged into spark.jars.packages, "
                               "which Spark resolves as it starts (the first time downloads them; the per-user cache keeps them)",
           metavar="G:A:V[,G:A:V...]", prompt="Maven packages, GROUP:ARTIFACT:VERSION, comma-separated (empty: none)"),
    Option("spark_defaults", "path", "import a spark-defaults.conf as a configuration layer", flags=("--from-spark-defaults",), metavar="FILE", cookiecutter=False),
    Option("spark_conf", "mapping", "any Spark setting (repeatable)", default={}, flags=(), usage="--spark.KEY VALUE, --spark.KEY=VALUE",
           prompt='Spark settings as JSON, e.g. {"spark.executor.memory": "4g"}'),
    Option("env", "mapping", "environment variable for the kernel (repeatable)", default={}, metavar="NAME=VALUE", repeat=True,
           prompt='Extra environment variables as JSON, e.g. {"HADOOP_CONF_DIR": "/etc/hadoop/conf"}'),
    Option("env_from", "list", "a variable the kernel takes from the Jupyter server's environment when it starts, for secrets (repeatable)", default=[],
           flags=("--env-from",), metavar="NAME", repeat=True, cookiecutter=False),
    Option("spark_init", "choice", "when Spark starts: background (default), lazy (first use), eager (before the kernel answers)",
           default=INIT_MODES[0], choices=INIT_MODES, runtime="init", if_bad="default", prompt="When Spark starts",
           choice_prompts=("background: as the kernel starts, without delaying it", "lazy: when a cell first uses spark or sc", "eager: before the kernel answers")),
    Option("warm_up", "choice", "what runs before the first cell: python (default: a JVM job, then the Python workers of RDDs and UDFs), "
                                "jvm (the JVM job only: no Python workers until a cell needs them, less memory), off",
           default=WARM_UP_MODES[0], choices=WARM_UP_MODES, runtime="warm_up", if_bad="default", prompt="What runs before the first cell, while you type",
           choice_prompts=("python: a JVM job, then the Python workers of RDDs and UDFs (the first Python function is fast)",
                           "jvm: the JVM job only (no Python workers until a cell needs them: less memory)", "off: nothing")),
    Option("progress", "flag", "progress line for running Spark jobs (default: on)", default=True, runtime="progress",
           prompt="Show a progress line for running Spark jobs in cell output?"),
    Option("dataframe_display", "choice", "a DataFrame as a cell's value: table (default: PySpark's schema line, then its first rows; a job) "
                                          "or schema (the line alone); sets spark.sql.repl.eagerEval.enabled",
           default=DATAFRAME_DISPLAYS[0], choices=DATAFRAME_DISPLAYS, prompt="A DataFrame as a cell's value",
           choice_prompts=("table: its schema line, then its first rows (runs a job)", "schema: its schema line alone, as PySpark prints it")),
    Option("log_level", "choice", "Spark log level (default: WARN)", default=LOG_LEVELS[0], choices=LOG_LEVELS, runtime="log_level", prompt="Spark log level"),
    # A fork whose defaults.conf and profile set no start limit still gets one a busy machine can meet.
    Option("start_timeout", "seconds", "the longest Spark may take to start, in seconds (default: the profile's; 600 for local)", in_profile=True,
           runtime="start_timeout", fallback=600, if_bad="refuse", prompt="The longest Spark may take to start, in seconds (empty: the profile's)"),
    Option("idle_timeout", "seconds", "stop the Spark session after this many seconds without a job, freeing its cluster resources; 0: never "
                                      "(default: the profile's: off for local and connect, 3600 for clusters)",
           in_profile=True, runtime="idle_timeout", fallback=0, if_bad="refuse", zero_ok=True,
           prompt="Stop the Spark session after this many seconds without a job, 0 for never (empty: the profile's)"),
    Option("class_data_sharing", "flag", "class-data-sharing archive for the driver JVM (default: on)", default=True, runtime="class_data_sharing",
           prompt="Speed up the driver JVM's start with a class-data-sharing archive?"),
    # Empty: the profile's. A dedicated driver's kernel.json does not name the driver options at all.
    Option("spark_driver", "choice", "dedicated (default: each notebook its own driver JVM) or shared "
                                     "(Spark 4: the notebooks of this kernel share one local Spark Connect server)",
           choices=DRIVER_MODES, in_profile=True, runtime="spark_driver", runtime_if=shared_driver, fallback=DRIVER_MODES[0], if_bad="refuse",
           prompt="Driver: dedicated (each notebook its own JVM) or shared (one Spark Connect server for this kernel's notebooks; Spark 4) (empty: the profile's)"),
    Option("driver_linger", "seconds", "seconds a shared driver stays after its last notebook has gone (default: the profile's; 30)",
           in_profile=True, runtime="driver_linger", runtime_if=shared_driver, fallback=DRIVER_LINGER, if_bad="refuse", zero_ok=True,
           prompt="Seconds a shared driver stays after its last notebook has gone (empty: the profile's)"),
    Option("driver_prestart", "flag", "the Jupyter server starts this kernel's shared driver as it starts and holds it while it runs, "
                                      "so that the first notebook attaches at once (costs an idle JVM, about 400 MiB; default: off)",
           default=False, runtime="driver_prestart", runtime_if=shared_driver,
           prompt="Start the shared driver with the Jupyter server, ahead of the first notebook (an idle JVM while the server runs)?"),
    Option("ui_access", "choice", "who may open the Spark UI and its REST API: owner (default: you, through your Jupyter server; "
                              "Spark 4, and the UI stays off on Spark 3.5) or anyone (every user of this machine, as Spark does by default)",
           default=UI_ACCESS[0], choices=UI_ACCESS, runtime="ui_access", if_bad="default", prompt="Who may open the Spark UI",
           choice_prompts=("owner: you alone, through your Jupyter server (Spark 4; off on Spark 3.5)", "anyone: every user of this machine")),
    Option("sql_rows", "count", f"rows %%sql shows when its cell gives no -n (default: {DEFAULT_ROWS})", default=DEFAULT_ROWS, runtime="sql_rows",
           if_bad="default", prompt="Rows %%sql shows when its cell gives no -n"),
)
OPTION = {option.name: option for option in OPTIONS}
RUNTIME_OPTIONS = tuple(option for option in OPTIONS if option.runtime)
DEFAULT_OPTIONS = {option.runtime: option.runtime_default for option in RUNTIME_OPTIONS}


def read_json(environ: dict, name: str, what: str) -> dict:
    try:
        value = json.loads(environ.get(name) or "{}")
    except ValueError as error:
        raise KernelJsonError(f"{name} in kernel.json is not valid JSON ({error})", REGENERATE) from None
    if not isinstance(value, dict):
        raise KernelJsonError(f"{name} in kernel.json is not a JSON object of {what}", REGENERATE)
    return value


def read_options(environ: dict) -> dict:
    options = {**DEFAULT_OPTIONS, **read_json(environ, OPTIONS_VARIABLE, "options")}
    # Choices first, then seconds: a kernel.json wrong in both names the choice.
    for option in sorted(RUNTIME_OPTIONS, key=lambda option: option.kind == "seconds"):
        options[option.runtime] = read_value(option, options[option.runtime])
    return options


def read_value(option: Option, value: Any) -> Any:
    """An option's value from kernel.json, as the runtime uses it; SetupError when it cannot."""
    key = option.runtime
    if option.kind == "seconds":
        try:
            seconds = float(value)
            if not (seconds >= 0 if option.zero_ok else seconds > 0):  # NaN is never allowed
                raise ValueError
        except (TypeError, ValueError):
            raise KernelJsonError(f"{key} in {OPTIONS_VARIABLE} is {json.dumps(value)}, not a number of seconds", REGENERATE) from None
        return seconds
    if option.kind == "count" and not (type(value) is int and value > 0) and option.if_bad == "default":
        return option.runtime_default
    if option.choices and value not in option.choices and option.if_bad == "default":
        return option.runtime_default
    if option.choices and value not in option.choices and option.if_bad == "refuse":
        raise KernelJsonError(f"{key} in {OPTIONS_VARIABLE} is {json.dumps(value)}, not one of {', '.join(option.choices)}", REGENERATE)
    return value


def read_conf(environ: dict) -> dict:
    return {str(key): str(value) for key, value in read_json(environ, CONF_VARIABLE, "Spark settings").items()}


def clear_unset(environ: dict) -> None:
    """Remove the Spark variables kernel.json set to "" (jupyter_client cannot unset a variable),
    and the variables taken from the server's environment (env_from) that the server lacks: for
    those, jupyter_client leaves the text "${NAME}", which code would take for a value."""
    for name in SPARK_VARIABLES:
        if environ.get(name) == "":
            del environ[name]
    from_server = read_json(environ, OPTIONS_VARIABLE, "options").get("env_from", [])
    for name in from_server if isinstance(from_server, list) else []:
        if environ.get(name) == f"${{{name}}}":
            del environ[name]


def resolve_secrets(settings: dict, environ: dict) -> dict:
    """Settings written as ${env:NAME}, with NAME's value from the environment the kernel started in."""
    secrets = {}
    for key, value in settings.items():
        found = ENV_REFERENCE.fullmatch(value)
        if found:
            if found.group(1) not in environ:
                raise SparkStartError(f"{key} comes from ${found.group(1)}, which is not set", "set it in the Jupyter server's environment and restart the kernel")
            secrets[key] = environ[found.group(1)]
    return secrets


def name_segments(name: str) -> list:
    return [part.lower() for chunk in re.split(r"[._\-/]+", name) for part in SEGMENT.findall(chunk)]


def is_secret_name(name: str) -> bool:
    """Whether a Spark setting or environment variable named ``name`` holds a secret."""
    segments = name_segments(name)
    if "secrets" in segments:
        return False  # Kubernetes secrets mounted into pods: spark.kubernetes.driver.secrets.NAME = a path
    for index, segment in enumerate(segments):
        pair = tuple(segments[index:index + 2])
        if segment in SECRET_SEGMENTS or pair in SECRET_PAIRS or segment.endswith(("password", "passwd", "secret", "token")):  # PGPASSWORD
            return not DESCRIBES.intersection(segments[index + 1:])
    return False


def is_secret(name: str, value: str = "") -> bool:
    return is_secret_name(name) or bool(SECRET_VALUE.search(value or ""))


REDACTED = "*********(redacted)"


def shown_value(key: str, value: str) -> str:
    """A setting's value as the runtime may print it: secrets and ${env:...} references redacted."""
    return REDACTED if is_secret(key, value) or ENV_REFERENCE.search(value or "") else value
