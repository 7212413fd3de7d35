"""The kernel's options and Spark settings, as kernel.json passes them, and its secrets.

The generator imports the names defined here too (pyspark_kernel.kernelspec): the two sides of
kernel.json are written against one definition.
"""

import json
import re

from .diagnostics import SetupError, SparkStartError

OPTIONS_VARIABLE = "PYSPARK_KERNEL_OPTIONS"
CONF_VARIABLE = "PYSPARK_KERNEL_SPARK_CONF"
CONNECT_TOKEN_VARIABLE = "SPARK_CONNECT_TOKEN"
INIT_MODES = ("background", "lazy", "eager")
WARM_UP_MODES = ("python", "jvm", "off")  # what the warm-up runs before the first cell (session.warm_up)
DRIVER_MODES = ("dedicated", "shared")  # a driver JVM of the kernel's own, or one shared over Spark Connect (runtime.driver)
DRIVER_LINGER = 30  # seconds a shared driver stays after its last notebook has gone
# Variables of the Jupyter server's environment that would change the kernel's Spark behind
# kernel.json's back. kernel.json sets each one, to "" when the kernel wants it unset, and the
# runtime removes the empty ones before Spark starts.
SPARK_VARIABLES = ("SPARK_HOME", "PYSPARK_PYTHON", "PYTHONPATH", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR", "PYSPARK_DRIVER_PYTHON",
                   "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_API_MODE", "MASTER")
LOG_LEVELS = ("WARN", "ERROR", "INFO", "DEBUG", "TRACE", "FATAL", "OFF", "ALL")
DEFAULT_OPTIONS = {"init": "background", "progress": True, "log_level": "WARN", "start_timeout": 600, "idle_timeout": 0, "class_data_sharing": True,
                   "warm_up": "python", "spark_driver": "dedicated", "driver_linger": DRIVER_LINGER}
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


def read_json(environ, name, what):
    try:
        value = json.loads(environ.get(name) or "{}")
    except ValueError as error:
        raise SetupError(f"{name} in kernel.json is not valid JSON ({error}); regenerate the kernel with pyspark-kernel create --force") from None
    if not isinstance(value, dict):
        raise SetupError(f"{name} in kernel.json is not a JSON object of {what}; regenerate the kernel with pyspark-kernel create --force")
    return value


def read_options(environ):
    options = {**DEFAULT_OPTIONS, **read_json(environ, OPTIONS_VARIABLE, "options")}
    if options["init"] not in INIT_MODES:
        options["init"] = "background"
    if options["warm_up"] not in WARM_UP_MODES:
        options["warm_up"] = "python"
    if options["spark_driver"] not in DRIVER_MODES:
        raise SetupError(f"spark_driver in {OPTIONS_VARIABLE} is {json.dumps(options['spark_driver'])}, not one of {', '.join(DRIVER_MODES)}; "
                         "regenerate the kernel with pyspark-kernel create --force")
    for key, allowed in (("start_timeout", lambda seconds: seconds > 0), ("idle_timeout", lambda seconds: seconds >= 0),  # 0: never
                         ("driver_linger", lambda seconds: seconds >= 0)):
        try:
            options[key] = float(options[key])
            if not allowed(options[key]):
                raise ValueError
        except (TypeError, ValueError):
            raise SetupError(f"{key} in {OPTIONS_VARIABLE} is {json.dumps(options[key])}, not a number of seconds; "
                             "regenerate the kernel with pyspark-kernel create --force") from None
    return options


def read_conf(environ):
    return {str(key): str(value) for key, value in read_json(environ, CONF_VARIABLE, "Spark settings").items()}


def clear_unset(environ):
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


def name_segments(name):
    return [part.lower() for chunk in re.split(r"[._\-/]+", name) for part in SEGMENT.findall(chunk)]


def is_secret_name(name):
    """Whether a Spark setting or environment variable named ``name`` holds a secret."""
    segments = name_segments(name)
    if "secrets" in segments:
        return False  # Kubernetes secrets mounted into pods: spark.kubernetes.driver.secrets.NAME = a path
    for index, segment in enumerate(segments):
        pair = tuple(segments[index:index + 2])
        if segment in SECRET_SEGMENTS or pair in SECRET_PAIRS or segment.endswith(("password", "passwd", "secret", "token")):  # PGPASSWORD
            return not DESCRIBES.intersection(segments[index + 1:])
    return False


def is_secret(name, value=""):
    return is_secret_name(name) or bool(SECRET_VALUE.search(value or ""))


REDACTED = "*********(redacted)"


def shown_value(key, value):
    """A setting's value as the runtime may print it: secrets and ${env:...} references redacted."""
    return REDACTED if is_secret(key, value) or ENV_REFERENCE.search(value or "") else value
