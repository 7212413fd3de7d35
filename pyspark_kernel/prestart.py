"""The Jupyter server's side of driver_prestart: as the server starts (its extension,
pyspark_kernel.serverext), the shared driver of each of its kernels that asks for it starts too,
ahead of the first notebook, and the server holds a lease on it for as long as it runs. That driver
is an idle JVM (about 400 MiB at rest) all that time; the first notebook then attaches to it at
once. When the server exits, however it exits, the system closes its leases, and the driver leaves
after its linger as after a last notebook.

The driver is found or started by the kernel's own runtime (runtime.prestart), in the kernel's
Python, with the environment jupyter_client would give the kernel and in the server's root
directory, where a first notebook usually is: the same driver, by the same key, as a notebook of
that kernel would start.
"""

import json
import logging
import os
import string
import subprocess
import threading

from .runtime import starter
from .runtime.options import OPTIONS_VARIABLE
from .runtime.shared import ask

log = logging.getLogger(__name__)

HELD = []  # the server's leases: open while it runs


def asks_for_it(spec: dict) -> bool:
    """Whether kernel.json ``spec`` is of a shared-driver kernel made with driver_prestart."""
    try:
        options = json.loads((spec.get("env") or {}).get(OPTIONS_VARIABLE) or "{}")
    except (TypeError, ValueError):
        return False
    return isinstance(options, dict) and options.get("spark_driver") == "shared" and options.get("driver_prestart") is True


def kernel_environment(spec: dict, environ: dict) -> dict:
    """The environment jupyter_client gives the kernel: the server's, then kernel.json's env with
    $NAME and ${NAME} taken from the server's."""
    env = dict(environ)
    for name, value in (spec.get("env") or {}).items():
        env[name] = string.Template(str(value)).safe_substitute(environ)
    return env


def starter_command(spec: dict, directory: str) -> list | None:
    """kernel.json's argv up to the kernel's launcher, as Jupyter runs it; None for a kernel whose
    notebooks are not forked (made before the kernel starter)."""
    argv = [str(arg).replace("{resource_dir}", directory) for arg in spec.get("argv") or []]
    for index, arg in enumerate(argv):
        if os.path.basename(arg) == starter.LAUNCHER:
            return argv[:index + 1]
    return None


def start_drivers(kernel_spec_manager, root_dir: str, server_log=log) -> list[threading.Thread]:
    """Start (in threads of their own: the server does not wait) the drivers of the kernels that ask for it."""
    threads = []
    for name, directory in sorted(kernel_spec_manager.find_kernel_specs().items()):
        try:
            with open(os.path.join(directory, "kernel.json"), encoding="utf-8") as handle:
                spec = json.load(handle)
        except (OSError, ValueError):
            continue  # not ours to judge: Jupyter says what is wrong with it
        if asks_for_it(spec):
            thread = threading.Thread(target=hold, args=(name, directory, spec, root_dir, server_log), name=f"pyspark-kernel-prestart-{name}", daemon=True)
            thread.start()
            threads.append(thread)
    return threads


def hold(name: str, directory: str, spec: dict, root_dir: str, server_log=log) -> None:
    """Start kernel ``name``'s shared driver (or find it) and hold a lease on it."""
    env = kernel_environment(spec, os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [directory, env.get("PYTHONPATH")]))  # its runtime, pyspark_kernel_runtime
    try:
        proc = subprocess.Popen([spec["argv"][0], "-m", "pyspark_kernel_runtime.prestart"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=root_dir, text=True)
    except (OSError, KeyError, IndexError) as error:
        server_log.warning("pyspark-kernel: kernel %s's shared driver was not started ahead of its notebooks: %s", name, error)
        return
    with proc:
        said = proc.stdout.readline()
        try:
            answer = json.loads(said)
        except ValueError:
            proc.stdin.close()
            answer = {"error": (said + proc.stderr.read()).strip()[-2000:] or f"its start exited with code {proc.wait()}"}
        if "socket" in answer:
            try:
                connection, _ = ask(answer["socket"], {"attach": os.getpid(), "holder": True})
                HELD.append(connection)
                command = starter_command(spec, directory)
                if command is not None and answer.get("pid") and answer.get("record"):
                    # The first notebook, too, is forked from modules already loaded: its kernel starter
                    # starts now, with the environment its launches will have.
                    starter.start(command, kernel_environment(spec, os.environ), answer["pid"], answer["record"])
                server_log.info("pyspark-kernel: kernel %s's shared driver (JVM pid %s) started ahead of its notebooks; held while this server runs",
                                name, answer.get("jvm"))
            except (OSError, ValueError) as error:
                server_log.warning("pyspark-kernel: kernel %s's shared driver started but did not answer: %s (its log: %s)", name, error, answer.get("log"))
        else:
            server_log.warning("pyspark-kernel: kernel %s's shared driver was not started ahead of its notebooks: %s", name, answer.get("error"))
        try:
            proc.communicate(None if proc.stdin.closed else "held\n")  # it may still warm the driver up: its output is read to its end
        except (OSError, ValueError):
            log.debug("the prestart of %s has gone", name, exc_info=True)
            proc.wait()
