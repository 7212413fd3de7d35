"""Pack the kernel's Python environment for the executors of a cluster, at `create`: the packing
itself is the runtime's (runtime.envpack), which a kernel also runs when %pip changed its
environment since (runtime.pipwatch). Here: the generator's checks, with its one error type, and
the archive put into the kernel directory beside a record of what it holds."""

from __future__ import annotations

import json
import os
import shutil
import sys

from .errors import InputError, quote
from .runtime import envpack, pipwatch

ARCHIVE = "environment.tar.gz"


def packer(prefix: str) -> str:
    """The kind of environment (runtime.envpack.kind), checked to have a packer here."""
    found = envpack.kind(prefix)
    if found is None:
        raise InputError("executor_python", f"{quote(prefix)} is neither a virtualenv nor a conda environment, so it cannot be packed",
                         "set executor_python to the path of the Python the executors have")
    if found == "conda":
        try:
            import conda_pack  # noqa: F401 - only whether it is there
        except ImportError:
            raise InputError("executor_python", f"conda-pack is not installed for {sys.executable}", f"{sys.executable} -m pip install conda-pack") from None
    return found


def pack_environment(prefix: str, kernel_dir: str) -> str:
    """Put the packed environment in ``kernel_dir``; pack it only if its cache entry is missing.
    Returns the environment's fingerprint, which the kernel records (doctor compares it with the
    environment's at each check)."""
    packer(prefix)
    announce = lambda: print(f"Packing {prefix} for the executors (once per version of the environment)...", file=sys.stderr)  # noqa: E731
    try:
        packed = envpack.pack_cached(prefix, os.environ, announce)
    except envpack.PackError as error:
        raise InputError("executor_python", error.problem, error.fix) from None
    target = os.path.join(kernel_dir, ARCHIVE)
    try:
        os.link(packed.path, target)
    except OSError:
        shutil.copyfile(packed.path, target)
    record_environment(prefix, kernel_dir, packed.key)
    return packed.key


def record_environment(prefix: str, kernel_dir: str, key: str | None = None) -> None:
    """The environment's distributions now, beside the kernel (a listing of its site-packages): what
    the archive packed (``key``, its fingerprint), or for a Spark Connect kernel what each session
    gets the difference from as artifacts."""
    pipwatch.write_manifest(os.path.join(kernel_dir, pipwatch.MANIFEST), pipwatch.distributions(prefix), key, prefix)


def keep_record(built: str, replaced: str) -> None:
    """A Spark Connect kernel ``built`` to replace the one at ``replaced`` (create --force, upgrade)
    of the same environment keeps the old record: what %pip added since that first create still
    reaches each session. A kernel that packs its environment records what it packed now."""
    path = os.path.join(built, pipwatch.MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or record.get("fingerprint") is not None or not record.get("prefix"):
        return
    earlier = pipwatch.read_manifest(os.path.join(replaced, pipwatch.MANIFEST), record["prefix"])
    if earlier is not None:
        pipwatch.write_manifest(path, earlier, None, record["prefix"])
