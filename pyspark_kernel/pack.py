"""Pack the kernel's Python environment for the executors of a cluster.

venv-pack for a virtualenv, conda-pack for a conda environment, chosen by what the environment
is. Archives are cached by the environment's contents, so an unchanged environment is packed once
and later kernels only copy (or hard-link) the archive.
"""

import hashlib
import os
import shutil
import sys

from .errors import InputError, quote

ARCHIVE = "environment.tar.gz"
# Executors bring their own Spark: its jars need not travel with every kernel's environment.
LEAVE_OUT = "*/site-packages/pyspark/jars/*"


def packer(prefix):
    """The module that packs this kind of environment, checked to be importable."""
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        module = "conda_pack"
    elif os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        module = "venv_pack"
    else:
        raise InputError("executor_python", f"{quote(prefix)} is neither a virtualenv nor a conda environment, so it cannot be packed", "set executor_python to the path of the Python the executors have")
    try:
        return __import__(module)
    except ImportError:
        name = module.replace("_", "-")
        raise InputError("executor_python", f"{name} is not installed for {sys.executable}", f"{sys.executable} -m pip install {name}") from None


def fingerprint(prefix):
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


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyspark-kernel", "environments")


def pack_environment(prefix, kernel_dir):
    """Put the packed environment in ``kernel_dir``; pack it only if its cache entry is missing."""
    module = packer(prefix)
    os.makedirs(cache_dir(), exist_ok=True)
    cached = os.path.join(cache_dir(), f"{fingerprint(prefix)}.tar.gz")
    if not os.path.isfile(cached):
        partial = f"{cached}.{os.getpid()}.partial"
        print(f"Packing {prefix} for the executors (once per version of the environment)...", file=sys.stderr)
        kind = {"format": "tar.gz", "verbose": True, "force": True, "filters": [("exclude", LEAVE_OUT)]}
        try:
            module.pack(prefix=prefix, output=partial, **kind)
        except Exception as error:  # the packers raise their own error types
            if os.path.exists(partial):
                os.remove(partial)
            raise InputError("executor_python", f"packing {quote(prefix)} failed: {' '.join(str(error).split())}", "fix the environment, or set executor_python to the executors' Python path") from None
        os.replace(partial, cached)
    target = os.path.join(kernel_dir, ARCHIVE)
    try:
        os.link(cached, target)
    except OSError:
        shutil.copyfile(cached, target)
    return target
