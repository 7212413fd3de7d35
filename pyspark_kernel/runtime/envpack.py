"""Pack a Python environment for the executors of a cluster, into the per-user cache.

The archive must run on a worker that shares nothing with the driver's machine but the OS:
- a conda environment carries its own interpreter: conda-pack packs it;
- a virtualenv does not (its bin/python is a link to the interpreter it was made from), so the
  archive takes that interpreter along: its binary, its standard library and, for a shared
  build, libpython, beside the environment's site-packages. bin/python is then a small script that
  finds libpython next to it. No pyvenv.cfg: Python takes the unpacked directory as its prefix.
Archives are cached by the environment's contents (fingerprint), so an unchanged environment is
packed once and every kernel of it ships the same file; the cache's record of each names the
environment, so that runtime.cache can remove it once the environment is gone.

Here, not in the generator, because both pack: `create` (pyspark_kernel.pack), and the kernel
itself when %pip changed its environment since then (runtime.pipwatch). Standard library only
(conda-pack for a conda environment).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

from . import cache
from .diagnostics import FixableError

PACK_FORMAT = "3"  # in the cache key: archives of an earlier format (before the interpreter travelled, with jedi's stubs) are not reused
# What no executor reads, under site-packages: Spark's jars (executors bring their own Spark) and
# the type stubs of the notebook's completer, jedi (5,600 files: a node that localises the archive
# sets each file's permissions, one call each, at every application's start).
LEAVE_OUT_UNDER_SITE = ("pyspark/jars/", "jedi/third_party/typeshed/")
LEAVE_OUT = [f"*/site-packages/{path}*" for path in LEAVE_OUT_UNDER_SITE]
# Parts of the standard library no executor imports.
STDLIB_LEAVE_OUT = {"site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip"}
INTERPRETER_PROBE = (
    "import json, sys, sysconfig\n"
    "print(json.dumps({'base_prefix': sys.base_prefix, 'version': '%d.%d' % sys.version_info[:2], 'executable': sys.executable,"
    " 'stdlib': sysconfig.get_paths()['stdlib'], 'purelib': sysconfig.get_paths()['purelib'],"
    " 'libdir': sysconfig.get_config_var('LIBDIR') or '', 'shared': bool(sysconfig.get_config_var('Py_ENABLE_SHARED')),"
    " 'soname': sysconfig.get_config_var('INSTSONAME') or ''}))"
)
LAUNCHER = """#!/bin/sh
# The interpreter shipped with this environment; libpython is beside it, wherever it is unpacked.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/../lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" exec "$here/python{version}-shipped" "$@"
"""


class PackError(FixableError):
    """The environment could not be packed: why, and what to do."""


def kind(prefix: str) -> str | None:
    """"conda", "venv", or None for what is neither (nothing to pack it with)."""
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        return "conda"
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        return "venv"
    return None


def fingerprint(prefix: str) -> str:
    """Changes when any file of the environment changes (path, size or modification time)."""
    digest = hashlib.sha256(os.path.realpath(prefix).encode())
    for root, dirs, files in os.walk(prefix):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            digest.update(f"{os.path.relpath(os.path.join(root, name), prefix)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def cache_dir(environ=os.environ) -> str:
    return os.path.join(cache.cache_root(environ), "environments")


def interpreter(prefix: str) -> dict:
    """Where a virtualenv's interpreter lives: its base prefix, standard library, libpython."""
    python = os.path.join(prefix, "bin", "python")
    done = subprocess.run([python, "-I", "-c", INTERPRETER_PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PackError(f"{python} does not run: {done.stderr.strip().splitlines()[-1:]}", "recreate the environment")
    return json.loads(done.stdout)


def leave_out(path: str) -> bool:
    posix = path.replace(os.sep, "/") + "/"
    return "__pycache__" in path.split(os.sep) or any(f"/site-packages/{under}" in posix for under in LEAVE_OUT_UNDER_SITE)


def add_tree(archive: tarfile.TarFile, source: str, name: str, skip=(), skip_everywhere=()) -> None:
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not (root == source and d in skip) and d != "__pycache__" and d not in skip_everywhere)
        for file_name in sorted(files):
            full = os.path.join(root, file_name)
            if not leave_out(full):
                archive.add(full, arcname=os.path.join(name, os.path.relpath(full, source)), recursive=False)
        for directory in dirs:  # empty directories and links to directories kept as such
            full = os.path.join(root, directory)
            if os.path.islink(full):
                archive.add(full, arcname=os.path.join(name, os.path.relpath(full, source)), recursive=False)


def add_text(archive: tarfile.TarFile, name: str, text: str, mode: int) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    archive.addfile(info, io.BytesIO(data))


def pack_with_interpreter(prefix: str, output: str) -> None:
    """A virtualenv and the interpreter it was made from, as one relocatable directory."""
    found = interpreter(prefix)
    version = found["version"]
    lib = f"lib/python{version}"
    with tarfile.open(output, "w:gz", compresslevel=1) as archive:  # speed: the archive is rebuilt only when the environment changes
        archive.add(os.path.realpath(found["executable"]), arcname=f"bin/python{version}-shipped")
        add_text(archive, "bin/python", LAUNCHER.format(version=version), 0o755)
        for alias in ("python3", f"python{version}"):
            link = tarfile.TarInfo(f"bin/{alias}")
            link.type, link.linkname = tarfile.SYMTYPE, "python"
            archive.addfile(link)
        add_tree(archive, found["stdlib"], lib, skip=STDLIB_LEAVE_OUT | {d for d in os.listdir(found["stdlib"]) if d.startswith("config-")},
                 skip_everywhere={"test", "tests", "idle_test"})
        if found["shared"] and found["soname"]:
            for name in os.listdir(found["libdir"]):
                if name.startswith(f"libpython{version}"):
                    archive.add(os.path.realpath(os.path.join(found["libdir"], name)), arcname=f"lib/{name}")
        add_tree(archive, found["purelib"], f"{lib}/site-packages")


def pack_conda(prefix: str, output: str) -> None:
    try:
        import conda_pack
    except ImportError:
        raise PackError("conda-pack is not installed in this environment, so it cannot be packed",
                        f"{os.path.join(prefix, 'bin', 'python')} -m pip install conda-pack") from None
    conda_pack.pack(prefix=prefix, output=output, format="tar.gz", verbose=False, force=True, filters=[("exclude", pattern) for pattern in LEAVE_OUT])


def write_archive(prefix: str, output: str) -> None:
    found = kind(prefix)
    if found is None:
        raise PackError(f"{prefix} is neither a virtualenv nor a conda environment, so it cannot be packed",
                        "set executor_python to the path of the Python the executors have")
    try:
        (pack_with_interpreter if found == "venv" else pack_conda)(prefix, output)
    except PackError:
        raise
    except Exception as error:  # noqa: BLE001 - tarfile's, the OS's and conda-pack's own error types
        raise PackError(f"packing {prefix} failed: {' '.join(str(error).split())}",
                        "fix the environment, or set executor_python to the executors' Python path") from None


class Packed:
    """A packed environment in the cache: the archive, the fingerprint it is keyed by, whether this
    call packed it (rather than finding it), its size and how long the packing took."""

    def __init__(self, path: str, key: str, fresh: bool, seconds: float) -> None:
        self.path, self.key, self.fresh, self.seconds = path, key, fresh, seconds
        self.size = os.path.getsize(path)


def pack_cached(prefix: str, environ=os.environ, announce=None) -> Packed:
    """The environment's archive in the per-user cache, keyed by its contents: packed only if that
    key has no archive yet (a second kernel of the same environment finds the first one's).
    ``announce`` is told before a packing starts."""
    directory = cache_dir(environ)
    os.makedirs(directory, exist_ok=True)
    key = fingerprint(prefix)
    cached = os.path.join(directory, f"{key}-{PACK_FORMAT}.tar.gz")
    needs = [os.path.realpath(prefix)]
    if os.path.isfile(cached):
        cache.mark_used(cached, needs)
        return Packed(cached, key, False, 0.0)
    if announce is not None:
        announce()
    began = time.monotonic()
    partial = f"{cached}.{os.getpid()}.partial"
    try:
        write_archive(prefix, partial)
        os.replace(partial, cached)  # whole or not at all: another kernel may pack the same at once
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    cache.write_record(cached, needs)
    return Packed(cached, key, True, time.monotonic() - began)
