"""What changed under a kernel since it was made: its runtime's age and the Spark it runs now.

A kernel records what generation found (metadata.pyspark_kernel), and the machine moves on: pip
upgrades pyspark in place, an environment is rebuilt, a new pyspark-kernel ships a new runtime.
`doctor`, `list` and `upgrade` read what is installed now from here, never the record alone.
"""

from __future__ import annotations

import hashlib
import os
import shlex

from .runtime.versionfile import read_version

RUNTIME_HASH_LENGTH = 12
IGNORED_SUFFIXES = (".pyc",)  # what copying the runtime leaves out (hooks.copy_runtime), and what Python writes beside it
IGNORED_DIRS = ("__pycache__",)


def runtime_version(directory: str) -> str | None:
    """A hash of a runtime package's files, names and contents: the same files give the same hash,
    whatever their order on disk or their modes; None when ``directory`` holds no runtime."""
    entries = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [name for name in dirs if name not in IGNORED_DIRS]
        for name in files:
            if name.endswith(IGNORED_SUFFIXES):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                entries.append((os.path.relpath(path, directory).replace(os.sep, "/"), hashlib.sha256(handle.read()).hexdigest()))
    if not entries:
        return None
    whole = hashlib.sha256("".join(f"{name}\0{digest}\n" for name, digest in sorted(entries)).encode())
    return whole.hexdigest()[:RUNTIME_HASH_LENGTH]


def spark_version_now(metadata: dict, env: dict) -> str | None:
    """The Spark version the kernel runs today: read from the SPARK_HOME its kernel.json sets (for
    pip's layout, the environment's pyspark package, upgraded or downgraded in place), not the one
    recorded at generation. None when that Spark is gone."""
    layout = metadata.get("spark_layout")
    home = env.get("SPARK_HOME") or metadata.get("spark_home") or ""
    if layout == "distribution":
        return read_version(os.path.join(home, "python", "pyspark", "version.py"))
    return read_version(os.path.join(home, "version.py")) if home else None


def shown_change(before: str | None, after: str | None) -> str:
    """``before → after``, or the one value when they are the same."""
    before, after = before or "none", after or "none"
    return f"{after} (unchanged)" if before == after else f"{before} → {after}"


def upgrade_command(name: str, kernels_dir: str | None = None) -> str:
    """The command that upgrades kernel ``name`` as printed: with -d when the kernel was looked up
    in a directory of its own (Jupyter's paths may not include it)."""
    return f"pyspark-kernel upgrade {shlex.quote(name)}" + (f" -d {shlex.quote(kernels_dir)}" if kernels_dir else "")


def create_command(name: str, kernel_dir: str, kernels_dir: str | None = None) -> str:
    """`pyspark-kernel create --force` for the kernel at ``kernel_dir``, placed where it is: a
    kernel outside the user's own kernels directory is in a shared place, which -d names."""
    from jupyter_core.paths import jupyter_data_dir

    place = kernels_dir or os.path.dirname(os.path.normpath(kernel_dir))
    user = os.path.realpath(os.path.join(jupyter_data_dir(), "kernels")) == os.path.realpath(place) and not kernels_dir
    return f"pyspark-kernel create --force -k {shlex.quote(name)}" + ("" if user else f" -d {shlex.quote(place)}")
