"""`pyspark-kernel upgrade [NAME ...|--all]`: regenerate kernels from their recorded answers with
this pyspark-kernel's template and runtime, keeping every setting, the kernel's place and its
file modes; then say what changed.

Kernels record every answer that made them (metadata.pyspark_kernel.answers). Kernels made by
earlier versions recorded less: their answers are read back from what kernel.json shows (master,
Spark settings, environment variables, display name, runtime options, environment), and what
cannot be read back is named.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from typing import Iterator

from .drift import create_command, runtime_version, shown_change
from .errors import InputError, quote
from .hooks import RUNTIME_PACKAGE
from .kernelspec import CONF_VARIABLE, LOCAL_DRIVER_CONF, OPTIONS_VARIABLE, TEMPLATE_ROOT, kernel_environment
from .runtime.masters import MASTERS
from .runtime.options import RUNTIME_OPTIONS, SPARK_VARIABLES

SHIPPED_PYTHON = "./environment/bin/python"  # kernelspec.executor_python for pack
# kernel.json entries the generator writes from other answers; a user's --env never sets them.
GENERATED_ENV = ("SPARK_HOME", "PYSPARK_PYTHON", "PYTHONPATH", CONF_VARIABLE, OPTIONS_VARIABLE)
CONNECT_ENV = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")


@dataclass
class Recovered:
    """A kernel's answers, and what an older kernel.json could not tell (each with what was used)."""

    answers: dict
    missing: list = field(default_factory=list)


def master_kind(master: str) -> str | None:
    return next((kind for kind, pattern in MASTERS.items() if pattern.fullmatch(master)), None)


def recover_answers(name: str, kernel_dir: str, spec: dict, create: str = "") -> Recovered:
    """The answers that made the kernel at ``kernel_dir``: recorded ones as they are, else read
    back from its kernel.json. ``create``: the command that makes it again, for the error."""
    made = (spec.get("metadata") or {}).get("pyspark_kernel") or {}
    if isinstance(made.get("answers"), dict):
        return Recovered({**made["answers"], "kernel_name": name})
    return read_back(name, spec, made, create or f"pyspark-kernel create --force -k {name}")


def read_back(name: str, spec: dict, made: dict, create: str) -> Recovered:
    """An earlier kernel's answers, from what its kernel.json shows."""
    env = kernel_environment(spec.get("env") or {}, {})  # $$ back to $: the values as written
    conf, options = json_object(env.get(CONF_VARIABLE) or "{}"), json_object(env.get(OPTIONS_VARIABLE) or "{}")
    if conf is None or options is None:
        raise InputError("kernel.json", f"{name}'s {CONF_VARIABLE} or {OPTIONS_VARIABLE} is not a JSON object, and it records no answers",
                         f"give its settings again: {create} --spark_master ... --spark.KEY VALUE ...")
    argv = spec.get("argv") or [""]
    master = conf.pop("spark.master", None) or made.get("master") or "local[*]"
    kind = master_kind(master) or "local"
    missing = []
    if conf.get("spark.app.name") == name:
        del conf["spark.app.name"]  # the generator's own
    if kind == "local":
        for key, value in LOCAL_DRIVER_CONF.items():
            if conf.get(key) == value:
                del conf[key]
    env_from = [entry for entry in options.get("env_from", []) if isinstance(entry, str)]
    own = set(GENERATED_ENV) | set(env_from) | (set(CONNECT_ENV) if kind == "connect" else set())
    user_env = {key: value for key, value in env.items() if key not in own and not (key in SPARK_VARIABLES and value == "")}
    answers = {
        "kernel_name": name,
        "display_name": spec.get("display_name") or f"PySpark ({name})",
        "venv_dir": made.get("venv_dir") or os.path.dirname(os.path.dirname(argv[0])),
        # A distribution stays where it was; pip's pyspark is found again in the environment.
        "spark_home": made.get("spark_home", "") if made.get("spark_layout") == "distribution" else "",
        # The profile named after the master's kind (profiles are named so); the profile's own settings
        # are in the kernel's Spark settings and options already, and are kept as answers.
        "profile": kind,
        "spark_master": master,
        "executor_python": executor_python(env.get("PYSPARK_PYTHON", ""), options, argv[0], kind),
        "spark_defaults": "",
        "spark_conf": {str(key): str(value) for key, value in conf.items()},
        "env": user_env,
        "env_from": env_from,
    }
    missing.append(f"profile (taken as {answers['profile']}, from the master; its settings are kept as the kernel had them)")
    for option in RUNTIME_OPTIONS:
        if option.runtime in options:
            answers[option.name] = options[option.runtime]
        elif option.runtime_if is not None and option.in_profile:
            answers[option.name] = None  # written only when it applies: the profile's
        else:
            answers[option.name] = option.default
            used = "the profile's" if option.in_profile else f"the default, {json.dumps(option.default)}"
            missing.append(f"{option.name} (not recorded: {used})")
    return Recovered(answers, missing)


def executor_python(python: str, options: dict, kernel_python: str, kind: str) -> str:
    if options.get("ship_environment") or python == SHIPPED_PYTHON:
        return "pack"
    if kind in ("local", "connect") or not python or python == kernel_python:
        return ""
    return python


def check_environment(name: str, answers: dict, create: str) -> None:
    """Refuse, before anything is built, a kernel whose Python environment is gone."""
    venv = answers.get("venv_dir") or ""
    python = next((os.path.join(venv, "bin", exe) for exe in ("python", "python3") if os.access(os.path.join(venv, "bin", exe), os.X_OK)), None)
    if not python:
        raise InputError("venv_dir", f"{name}'s environment {quote(venv)} is gone (no bin/python)",
                         f"recreate it there with ipykernel and pyspark, or point the kernel at another: {create} -e ENV")


def is_shared(kernel_dir: str) -> bool:
    """A kernel others may read (installed with --sys-prefix, --prefix or -d) stays so."""
    return bool(os.stat(kernel_dir).st_mode & (stat.S_IRGRP | stat.S_IROTH))


def read_spec(kernel_dir: str) -> dict:
    with open(os.path.join(kernel_dir, "kernel.json"), encoding="utf-8") as handle:
        return json.load(handle)


SETTINGS = ("argv", "display_name", "language", "interrupt_mode", "env")


def json_object(text: str) -> dict | None:
    """A JSON object's text read, or None (a kernel.json edited by hand may hold anything)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def changed_settings(before: dict, after: dict) -> list:
    """The names of what a notebook would see differently: kernel.json's fields, its environment
    variables, and each Spark setting and runtime option inside them (names only: values may be
    long, and some are references to secrets)."""
    changed = [key for key in SETTINGS if key != "env" and before.get(key) != after.get(key)]
    old_env, new_env = before.get("env") or {}, after.get("env") or {}
    for key in sorted(set(old_env) | set(new_env)):
        if old_env.get(key) == new_env.get(key):
            continue
        old, new = (json_object(kernel_environment({key: spec.get(key) or "{}"}, {})[key]) for spec in (old_env, new_env))
        if key in (CONF_VARIABLE, OPTIONS_VARIABLE) and old is not None and new is not None:
            changed += [entry for entry in sorted(set(old) | set(new)) if old.get(entry) != new.get(entry)]
        else:
            changed.append(f"env {key}")
    return sorted(changed)


def describe_change(name: str, kernel_dir: str, before: dict, recovered: Recovered) -> str:
    after = read_spec(kernel_dir)
    old, new = before["metadata"]["pyspark_kernel"], after["metadata"]["pyspark_kernel"]
    parts = [f"runtime {shown_change(old.get('runtime_version'), new.get('runtime_version'))}", f"spark {shown_change(old.get('spark_version'), new.get('spark_version'))}"]
    changed = changed_settings(before, after)
    parts.append(f"settings changed: {', '.join(changed)}" if changed else "settings unchanged")
    if recovered.missing:
        parts.append(f"not recorded by the pyspark-kernel that made it: {'; '.join(recovered.missing)}")
    return f"{name}: {'; '.join(parts)}"


@contextlib.contextmanager
def generating_environment(spec: dict) -> Iterator[None]:
    """The layers read the generating user's environment (defaults.conf's JAVA_HOME = ${?JAVA_HOME}):
    for the upgrade, a variable the kernel has and this shell lacks takes the kernel's value, so
    upgrading from another shell keeps it. The generator's own variables and env_from's are left out."""
    own = set(SPARK_VARIABLES) | {CONF_VARIABLE, OPTIONS_VARIABLE}
    added = {name: value.replace("$$", "$") for name, value in spec.get("env", {}).items()
             if name not in own and name not in os.environ and not value.startswith("${")}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def upgrade_one(name: str, kernel_dir: str, template: str, kernels_dir: str | None = None, out=sys.stdout) -> None:
    from .generate import generate_kernel

    try:
        before = read_spec(kernel_dir)
    except (OSError, ValueError) as error:
        raise InputError("kernel.json", f"cannot read {name}'s kernel.json: {error}", f"create it again: {create_command(name, kernel_dir, kernels_dir)} with its settings") from None
    create = create_command(name, kernel_dir, kernels_dir)
    recovered = recover_answers(name, kernel_dir, before, create)
    check_environment(name, recovered.answers, create)
    # The runtime the kernel has (earlier kernels recorded no hash, and a copy can be edited).
    before["metadata"]["pyspark_kernel"]["runtime_version"] = runtime_version(os.path.join(kernel_dir, RUNTIME_PACKAGE))
    with generating_environment(before):
        generate_kernel(template, name, recovered.answers, kernel_dir, shareable=is_shared(kernel_dir), force=True)
    print(describe_change(name, kernel_dir, before, recovered), file=out)


def upgrade(names: list, every: bool, kernels_dir: str | None = None, template: str = TEMPLATE_ROOT, out=sys.stdout) -> int:
    """Each named kernel (or, with ``every``, each one pyspark-kernel made) regenerated; one ERROR
    line for each that cannot be, the others done all the same."""
    from .generate import quiet_cookiecutter
    from .manage import find_kernel, our_kernels

    if bool(names) == bool(every):
        raise InputError("arguments", "name the kernels to upgrade, or pass --all", "pyspark-kernel upgrade NAME [NAME ...], or pyspark-kernel upgrade --all")
    if every:
        found = {name: entry[0] for name, entry in our_kernels(kernels_dir).items()}
    else:
        found = {name: find_kernel(name, kernels_dir, ours=True)[1].resource_dir for name in names}
    quiet_cookiecutter()
    failed = 0
    for name, kernel_dir in found.items():
        try:
            upgrade_one(name, kernel_dir, template, kernels_dir, out)
        except InputError as error:
            print(error, file=sys.stderr)
            failed += 1
        except SystemExit:
            failed += 1  # the hook printed its ERROR line
    if every and not found:
        print(f"no kernel made by pyspark-kernel in {kernels_dir or 'Jupyter kernel paths'}", file=out)
    return 1 if failed else 0
