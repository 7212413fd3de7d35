"""What the kernel's Python environment (venv_dir) has: its interpreter, ipykernel, pyspark, py4j."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from .errors import InputError, quote

# Runs inside venv_dir's Python; a constant, so no answer can become code. It only looks packages
# up (no import of pyspark), to stay fast.
MARKER = "PYSPARK_KERNEL_PROBE "
PROBE = r"""
MARKER = "PYSPARK_KERNEL_PROBE "
import importlib.metadata, importlib.util, json, sys

def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None

# What `pyspark[connect]` adds: (distribution, module).
CONNECT_CLIENT = [("pandas", "pandas"), ("pyarrow", "pyarrow"), ("grpcio", "grpc"), ("grpcio-status", "grpc_status"),
                  ("googleapis-common-protos", "google.rpc"), ("zstandard", "zstandard")]

def found(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

def requires_python(dist):
    try:
        return importlib.metadata.metadata(dist).get("Requires-Python")
    except importlib.metadata.PackageNotFoundError:
        return None

def declared_metadata():
    # The metadata literal in ipykernel's get_kernel_dict, read without importing ipykernel (and
    # jupyter_client and zmq with it: 0.2 s of each kernel's creation); None if it is not a literal.
    import ast, os
    try:
        spec = importlib.util.find_spec("ipykernel")
        path = os.path.join(list(spec.submodule_search_locations)[0], "kernelspec.py")
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef) and function.name == "get_kernel_dict":
                for node in ast.walk(function):
                    if isinstance(node, ast.Dict):
                        for key, value in zip(node.keys, node.values):
                            if isinstance(key, ast.Constant) and key.value == "metadata":
                                return ast.literal_eval(value)
    except Exception:
        pass
    return None

def supported_encryption():
    # What `ipykernel install` declares: a client may then encrypt the kernel's channels.
    if not version("ipykernel"):
        return []
    declared = declared_metadata()
    if isinstance(declared, dict):
        return list(declared.get("supported_encryption") or [])
    try:
        from ipykernel.kernelspec import get_kernel_dict
        return list(get_kernel_dict().get("metadata", {}).get("supported_encryption") or [])
    except Exception:
        return []

def package_dir(name):
    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None

print(MARKER + json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "python_version": "%d.%d.%d" % sys.version_info[:3],
    "ipykernel": version("ipykernel"),
    "pyspark": version("pyspark") or version("pyspark-client"),
    "pyspark_dir": package_dir("pyspark"),
    "pyspark_requires_python": requires_python("pyspark"),
    "py4j": version("py4j"),
    "connect_missing": [name for name, module in CONNECT_CLIENT if not found(module)],
    "supported_encryption": supported_encryption(),
}))
"""
PROBE_TIMEOUT = 60


@dataclass(frozen=True)
class PythonEnv:
    python: str
    prefix: str
    python_version: str
    ipykernel: str | None
    pyspark: str | None
    pyspark_dir: str | None
    py4j: str | None
    pyspark_requires_python: str | None = None
    connect_missing: tuple = ()
    supported_encryption: tuple = ()


def find_python(venv_dir: str) -> str:
    """The interpreter of venv_dir, or of the environment running this code when it is empty."""
    if not venv_dir:
        return sys.executable
    root = os.path.abspath(os.path.expanduser(venv_dir))
    if not os.path.isdir(root):
        raise InputError("venv_dir", f"{quote(venv_dir)} is not a directory", "give the path of a Python virtual environment or conda env")
    for name in ("python", "python3"):
        candidate = os.path.join(root, "bin", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise InputError("venv_dir", f"{quote(venv_dir)} has no bin/python", "give the root of a virtual environment, the directory holding bin/python")


def probe(python: str) -> PythonEnv:
    """Ask the interpreter about itself. PYTHONPATH of the caller is left out: the kernel is judged
    by what its own environment holds."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InputError("venv_dir", f"{quote(python)} does not run: {err}", "recreate the environment") from err
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError("venv_dir", f"{quote(python)} fails: {last}", "recreate the environment")
    # A .pth file or sitecustomize may print too: take the probe's own line.
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise InputError("venv_dir", f"{quote(python)} did not report its packages", "check the environment's Python runs scripts normally")
    facts = json.loads(lines[-1][len(MARKER):])
    facts["connect_missing"] = tuple(facts["connect_missing"])
    facts["supported_encryption"] = tuple(facts["supported_encryption"])
    return PythonEnv(python=python, **{k: v for k, v in facts.items() if k != "executable"})


def check_connect_client(found: PythonEnv) -> PythonEnv:
    """A Spark Connect kernel is a gRPC client: pyspark[connect]'s packages must be there."""
    if found.connect_missing:
        version = f"=={found.pyspark}" if found.pyspark else ""
        raise InputError("venv_dir", f"{quote(found.prefix)} lacks the Spark Connect client's {', '.join(found.connect_missing)}", f"{found.python} -m pip install 'pyspark[connect]{version}'")
    return found


def find_environment(venv_dir: str) -> PythonEnv:
    """The checked Python environment for venv_dir: it runs and has ipykernel."""
    python = find_python(venv_dir)
    found = probe(python)
    if not found.ipykernel:
        raise InputError("venv_dir", f"{quote(found.prefix)} has no ipykernel", f"{python} -m pip install ipykernel")
    return found
