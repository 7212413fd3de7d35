"""Pack the kernel's Python environment for the executors of a cluster.

The archive must run on a worker that shares nothing with the driver's machine but the OS:
- a conda environment carries its own interpreter: conda-pack packs it;
- a virtualenv does not (its bin/python is a link to the interpreter it was made from), so the
  archive takes that interpreter along: its binary, its standard library and, for a shared
  build, libpython, beside the environment's site-packages. bin/python is then a small script that
  finds libpython next to it. No pyvenv.cfg: Python takes the unpacked directory as its prefix.
Archives are cached by the environment's contents, so an unchanged environment is packed once and
later kernels only copy (or hard-link) the archive; the cache's record of each names the
environment, so that runtime.cache can remove it once the environment is gone.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

from .errors import InputError, quote
from .runtime import cache

ARCHIVE = "environment.tar.gz"
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


def packer(prefix: str):
    """The module that packs this kind of environment, checked to be importable."""
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        module = "conda_pack"
    elif os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        module = "venv_pack"
    else:
        raise InputError("executor_python", f"{quote(prefix)} is neither a virtualenv nor a conda environment, so it cannot be packed",
                         "set executor_python to the path of the Python the executors have")
    try:
        return __import__(module)
    except ImportError:
        name = module.replace("_", "-")
        raise InputError("executor_python", f"{name} is not installed for {sys.executable}", f"{sys.executable} -m pip install {name}") from None


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


def cache_dir() -> str:
    return os.path.join(cache.cache_root(os.environ), "environments")


def interpreter(prefix: str) -> dict:
    """Where a virtualenv's interpreter lives: its base prefix, standard library, libpython."""
    python = os.path.join(prefix, "bin", "python")
    done = subprocess.run([python, "-I", "-c", INTERPRETER_PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise InputError("executor_python", f"{python} does not run: {done.stderr.strip().splitlines()[-1:]}", "recreate the environment")
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


def pack_environment(prefix: str, kernel_dir: str) -> str:
    """Put the packed environment in ``kernel_dir``; pack it only if its cache entry is missing.
    Returns the environment's fingerprint, which the kernel records (doctor compares it with the
    environment's at each check)."""
    module = packer(prefix)
    os.makedirs(cache_dir(), exist_ok=True)
    packed_from = fingerprint(prefix)
    cached = os.path.join(cache_dir(), f"{packed_from}-{PACK_FORMAT}.tar.gz")
    if not os.path.isfile(cached):
        partial = f"{cached}.{os.getpid()}.partial"
        print(f"Packing {prefix} for the executors (once per version of the environment)...", file=sys.stderr)
        try:
            if module.__name__ == "venv_pack":
                pack_with_interpreter(prefix, partial)
            else:
                module.pack(prefix=prefix, output=partial, format="tar.gz", verbose=True, force=True, filters=[("exclude", pattern) for pattern in LEAVE_OUT])
        except InputError:
            if os.path.exists(partial):
                os.remove(partial)
            raise
        except Exception as error:  # noqa: BLE001 - the packers raise their own error types
            if os.path.exists(partial):
                os.remove(partial)
            raise InputError("executor_python", f"packing {quote(prefix)} failed: {' '.join(str(error).split())}",
                             "fix the environment, or set executor_python to the executors' Python path") from None
        os.replace(partial, cached)
        cache.write_record(cached, [os.path.realpath(prefix)])
    else:
        cache.mark_used(cached, [os.path.realpath(prefix)])
    target = os.path.join(kernel_dir, ARCHIVE)
    try:
        os.link(cached, target)
    except OSError:
        shutil.copyfile(cached, target)
    return packed_from
