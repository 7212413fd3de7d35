"""What the cookiecutter hooks do; the hook files only hand over the context.

pre_gen checks everything before cookiecutter writes a file. post_gen writes kernel.json. When
cookiecutter overwrites an existing kernel (-f), pre_gen moves the old files aside and post_gen
deletes them once the new kernel is complete, or puts them back if it fails: no file of the old
kernel survives beside the new one, and a failure leaves the old kernel as it was.
"""

import importlib.util
import json
import logging
import os
import shutil
import sys

from .errors import InputError
from .runtime.options import OPTIONS
from .verbose import show_steps_if_asked

REPLACED = ".pyspark-kernel-replaced"
PUBLIC_ANSWERS = tuple(option.name for option in OPTIONS if option.cookiecutter)
PATH_ANSWERS = tuple(option.name for option in OPTIONS if option.kind in ("path", "profile"))
JSON_ANSWERS = tuple(option.name for option in OPTIONS if option.kind in ("mapping", "list"))
log = logging.getLogger(__name__)


HOOK_DEPENDENCIES = ("pyhocon", "jsonschema", "packaging")  # all the hooks import beyond cookiecutter's own


def require_dependencies():
    missing = [module for module in HOOK_DEPENDENCIES if importlib.util.find_spec(module) is None]  # found, not imported: importing costs time
    if missing:
        names = " ".join(HOOK_DEPENDENCIES)
        raise InputError(
            "cookiecutter",
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed for {sys.executable}",
            f"{sys.executable} -m pip install {names}, or for a pipx install: pipx inject cookiecutter {names}",
        )


def remove_rendered(path, template_root):
    """Cookiecutter renders each hook, with the whole context (env values included), into a
    temporary file that it never deletes: the running hook removes its own copy."""
    if os.path.dirname(os.path.abspath(path)) != os.path.join(template_root, "hooks"):  # never the template's own
        try:
            os.remove(path)
        except OSError:
            log.debug("removing the rendered hook %s", path, exc_info=True)


def answers_from(context: dict, launch_dir: str) -> dict:
    """`pyspark-kernel create` passes its answers in the private `_answers`, which cookiecutter
    neither renders as Jinja nor turns into strings; it overrides the public answers, whose
    defaults fill what it leaves out.
    Relative paths are taken from the directory cookiecutter was started in."""
    answers = {key: context[key] for key in PUBLIC_ANSWERS if key in context}
    answers.update(context.get("_answers") or {})
    for key in PATH_ANSWERS:
        if key == "profile" and not str(answers.get(key, "")).endswith(".conf"):
            continue  # a profile name, not a path
        if isinstance(answers.get(key), str) and answers[key]:
            answers[key] = os.path.join(launch_dir, os.path.expanduser(answers[key]))
    for key in JSON_ANSWERS:
        if isinstance(answers.get(key), str):  # --no-input key='{"...": "..."}' gives the JSON text
            try:
                answers[key] = json.loads(answers[key])
            except ValueError:
                pass  # reported by the check, with the expected form
    return answers


def set_aside_old_kernel(kernel_dir):
    # A replacement that was interrupted left the old kernel aside: put it back before starting.
    restore_old_kernel(kernel_dir)
    entries = os.listdir(kernel_dir)
    if not entries:
        return
    aside = os.path.join(kernel_dir, REPLACED)
    os.mkdir(aside)
    for entry in entries:
        os.rename(os.path.join(kernel_dir, entry), os.path.join(aside, entry))


def restore_old_kernel(kernel_dir):
    aside = os.path.join(kernel_dir, REPLACED)
    if not os.path.isdir(aside):
        return
    for entry in os.listdir(kernel_dir):
        path = os.path.join(kernel_dir, entry)
        if entry == REPLACED:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    for entry in os.listdir(aside):
        os.rename(os.path.join(aside, entry), os.path.join(kernel_dir, entry))
    os.rmdir(aside)


RUNTIME_PACKAGE = "pyspark_kernel_runtime"  # the kernel directory's copy of pyspark_kernel/runtime


def copy_runtime(kernel_dir):
    """The kernel-side runtime, as a package in the kernel's directory (it runs in the kernel's
    own Python, which does not have this project)."""
    from .kernelspec import RUNTIME_SOURCE

    shutil.copytree(RUNTIME_SOURCE, os.path.join(kernel_dir, RUNTIME_PACKAGE), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def compile_runtime(kernel_dir, python, python_version):
    """The runtime's byte code for the kernel's Python, written now: a kernel would otherwise
    compile it at every start wherever it cannot write it (a shared kernel's directory, a
    PYTHONDONTWRITEBYTECODE environment), 0.1 s of CPU in each kernel, shared driver and kernel
    starter. Byte code is per minor version: ours serves a kernel of our version, its own
    Python writes it otherwise. Only a cache: a kernel whose Python cannot write it imports the
    sources, as without it."""
    import compileall
    import subprocess

    package = os.path.join(kernel_dir, RUNTIME_PACKAGE)
    if python_version.split(".")[:2] == [str(part) for part in sys.version_info[:2]]:
        compiled = compileall.compile_dir(package, maxlevels=0, quiet=2)
    else:
        try:
            compiled = subprocess.run([python, "-m", "compileall", "-q", "-l", package], capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            compiled = False
    if not compiled:
        log.info("the runtime's byte code was not written for %s: the kernel compiles it as it imports it", python)


def write_text(path, text):
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


def report(error):
    print(error, file=sys.stderr)
    return 1


BUILT = ".pyspark-kernel-spec.json"  # pre_gen's finished spec, for post_gen: the checks and the environment probe run once


def pre_gen(context: dict, launch_dir: str, kernel_dir: str = ".") -> int:
    show_steps_if_asked()
    try:
        require_dependencies()
        from .build import build_spec

        spec = build_spec(answers_from(context, launch_dir))
    except InputError as error:
        return report(error)
    set_aside_old_kernel(kernel_dir)
    write_text(os.path.join(kernel_dir, BUILT), json.dumps(spec))
    return 0


def built_spec(context, launch_dir, kernel_dir):
    """The spec pre_gen built, or (a hook run on its own) one built now."""
    path = os.path.join(kernel_dir, BUILT)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
        os.remove(path)
        return spec
    from .build import build_spec

    return build_spec(answers_from(context, launch_dir))


def post_gen(context: dict, launch_dir: str, kernel_dir: str = ".") -> int:
    show_steps_if_asked()
    try:
        from .kernelspec import dump_spec, ships_environment
        from .pack import pack_environment, record_environment
        from .runtime.masters import is_connect

        spec = built_spec(context, launch_dir, kernel_dir)
        made = spec["metadata"]["pyspark_kernel"]
        if ships_environment(spec):
            made["packed_from"] = pack_environment(made["venv_dir"], kernel_dir)
            log.info("packed the environment for the executors")
        elif is_connect(made["master"]):  # what %pip adds after this, each session gets as artifacts
            record_environment(made["venv_dir"], kernel_dir)
        copy_runtime(kernel_dir)
        compile_runtime(kernel_dir, made["python"], made["python_version"])
        write_text(os.path.join(kernel_dir, "kernel.json"), dump_spec(spec))
        log.info("kernel.json and the runtime written")
    except (InputError, OSError) as error:
        restore_old_kernel(kernel_dir)
        return report(error if isinstance(error, InputError) else InputError("kernel_dir", str(error), "check the kernels directory is writable"))
    shutil.rmtree(os.path.join(kernel_dir, REPLACED), ignore_errors=True)
    return 0
