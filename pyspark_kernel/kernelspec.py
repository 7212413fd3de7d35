"""The kernel spec (kernel.json): built as a dict by one function, checked against our schema."""

import json
import os
import sys
from string import Template

from . import __version__
from .drift import runtime_version
from .errors import InputError
from .pack import ARCHIVE
from .runtime.options import CONF_VARIABLE, OPTIONS_VARIABLE, RUNTIME_OPTIONS, SPARK_VARIABLES, shared_driver  # noqa: F401 - one definition, read by the runtime too
from .runtime.starter import LAUNCHER
from .validate import master_kind

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# An installed wheel carries the template as package data (setup.py); a checkout is the template.
BUNDLED_TEMPLATE = os.path.join(PACKAGE_DIR, "_template")
TEMPLATE_ROOT = BUNDLED_TEMPLATE if os.path.isfile(os.path.join(BUNDLED_TEMPLATE, "cookiecutter.json")) else os.path.dirname(PACKAGE_DIR)
SCHEMA_PATH = os.path.join(TEMPLATE_ROOT, "schema", "kernel.schema.json")
SHIM = "pyspark_startup.py"
RUNTIME_SOURCE = os.path.join(PACKAGE_DIR, "runtime")
# The kernel's runtime reads the Spark settings and its own options from CONF_VARIABLE and
# OPTIONS_VARIABLE: env values, so kernel.json stays the one description of the kernel and
# launchers that copy its env carry them.
# A local driver on loopback: the Spark UI link works from the machine running the browser, and
# Spark no longer warns that the host name resolves to a loopback address.
LOCAL_DRIVER_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def make_argv(python, python_version, forked=False):
    """``forked``: through the kernel's launcher, whose kernel starter forks later notebooks' kernels
    (runtime/starter.py; a shared driver's kernels)."""
    argv = [python]
    if tuple(int(part) for part in python_version.split(".")[:2]) >= (3, 11):
        # As `ipykernel install` does: the debugger cannot step into frozen modules.
        argv.append("-Xfrozen_modules=off")
    # {resource_dir} is the kernel's own directory, filled in by Jupyter: the kernel can be moved.
    start = [f"{{resource_dir}}/{LAUNCHER}"] if forked else ["-m", "ipykernel_launcher"]
    return argv + start + ["-f", "{connection_file}", f"--IPKernelApp.exec_files={{resource_dir}}/{SHIM}"]


def spark_conf(kernel_name, config):
    """The settings the runtime starts Spark with, master first; the user's settings win. A Spark
    Connect session only takes SQL settings: the server owns the rest."""
    kind = master_kind(config["master"])
    if kind == "connect":
        return {"spark.master": config["master"], **{k: v for k, v in config["conf"].items() if k.startswith("spark.sql.")}}
    conf = {"spark.master": config["master"], "spark.app.name": kernel_name}
    if kind == "local":
        conf.update(LOCAL_DRIVER_CONF)
    conf.update(config["conf"])
    return conf


def executor_python(config, python_env):
    """(the executors' Python, whether the kernel ships its environment to them)."""
    choice = config.get("executor_python") or ""
    if master_kind(config["master"]) in ("local", "connect") or not choice:
        return python_env.python, False  # executors are the driver's threads, or see the same path
    if choice == "pack":
        return "./environment/bin/python", True  # where Spark unpacks the archive for each executor
    return choice, False


def runtime_options(answers: dict, config: dict, ships_environment: bool) -> dict:
    """PYSPARK_KERNEL_OPTIONS: each runtime option from the answers, or from the merged layers when
    a layer may set it."""
    options = {}
    for option in RUNTIME_OPTIONS:
        if option.runtime_if is None or option.runtime_if(config):
            options[option.runtime] = config[option.name] if option.in_profile else answers[option.name]
    if ships_environment:
        options["ship_environment"] = ARCHIVE
    if answers["env_from"]:
        options["env_from"] = list(answers["env_from"])  # the runtime unsets those the server lacks
    return options


def escape_env_value(value):
    """jupyter_client expands $NAME and ${NAME} in kernel.json env values with the server's
    environment when it starts a kernel (string.Template); $$ keeps a literal $."""
    return value.replace("$", "$$")


def kernel_environment(spec_env, environ):
    """The kernel.json env as the kernel process receives it from jupyter_client."""
    return {name: Template(value).safe_substitute(environ) for name, value in spec_env.items()}


def recorded_answers(answers: dict, python_env) -> dict:
    """Every answer that made the kernel, for `upgrade` and `create --force`: as given, with the
    environment used when none was named (the one running the generator, which may differ next
    time). Secrets are already references here (${env:NAME}, env_from names): the checks refuse
    their values."""
    return {**answers, "venv_dir": answers["venv_dir"] or python_env.prefix}


def make_spec(answers, python_env, spark, config):
    executors_python, ships_environment = executor_python(config, python_env)
    # Every variable that changes Spark is set here, "" meaning unset: the server's own never leak in.
    env = {name: "" for name in SPARK_VARIABLES}
    env.update({"SPARK_HOME": spark.home, "PYSPARK_PYTHON": executors_python, "PYTHONPATH": os.pathsep.join(spark.pythonpath)})
    env[CONF_VARIABLE] = json.dumps(spark_conf(answers["kernel_name"], config), ensure_ascii=False)
    env[OPTIONS_VARIABLE] = json.dumps(runtime_options(answers, config, ships_environment))
    if master_kind(config["master"]) == "connect":
        # pyspark's own switch to the Connect client (SPARK_REMOTE alone would start a local JVM).
        env.update({"SPARK_CONNECT_MODE_ENABLED": "1", "SPARK_REMOTE": config["master"]})
    env.update(config["env"])
    spec = {
        "argv": make_argv(python_env.python, python_env.python_version, forked=shared_driver(config)),
        "display_name": answers["display_name"],
        "language": "python",
        "interrupt_mode": "signal",
        # $NAME references are jupyter_client's: kept only for env_from, escaped everywhere else.
        "env": {**{name: escape_env_value(value) for name, value in env.items()}, **{name: f"${{{name}}}" for name in answers["env_from"]}},
        "metadata": {
            "debugger": True,
            "pyspark_kernel": {
                "generator_version": __version__,
                "runtime_version": runtime_version(RUNTIME_SOURCE),
                "master": config["master"],
                "spark_version": spark.spark_version,
                "py4j_version": spark.py4j_version,
                "python_version": python_env.python_version,
                "python": python_env.python,
                "spark_home": spark.home,
                "spark_layout": spark.layout,
                "venv_dir": python_env.prefix,
                "answers": recorded_answers(answers, python_env),
            },
        },
    }
    if python_env.supported_encryption:
        spec["metadata"]["supported_encryption"] = list(python_env.supported_encryption)
    return spec


def ships_environment(spec):
    return "ship_environment" in json.loads(Template(spec["env"][OPTIONS_VARIABLE]).safe_substitute({}))


def load_schema(path=SCHEMA_PATH):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def import_validator():
    """jsonschema's Draft 2020-12 validator, without the optional "iri" format checker: with
    rfc3987-syntax installed (Jupyter server brings it) that checker builds a grammar at import,
    0.7 s of every generation. Our schema uses no formats."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # an ImportError for jsonschema, which skips it
    from jsonschema import Draft202012Validator

    return Draft202012Validator


def schema_errors(spec, schema=None):
    """Every way ``spec`` breaks the schema, as ``path: message`` lines (empty when it is valid)."""
    Draft202012Validator = import_validator()

    validator = Draft202012Validator(schema or load_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.absolute_path)))
    ]


def check_spec(spec):
    errors = schema_errors(spec)
    if errors:
        raise InputError("kernel.json", f"does not match schema/kernel.schema.json: {errors[0]}", "check the template's defaults.conf and the answers")
    return spec


def dump_spec(spec):
    return json.dumps(spec, indent=1, ensure_ascii=False) + "\n"
