"""The Python environment a dedicated driver's cluster executors run, and what %pip changes for them.

A kernel that ships its environment (executor_python pack) ships the archive `create` packed,
unless the environment changed since (runtime.pipwatch): then the session's start packs it again
into the per-user cache (runtime.envpack, keyed by its contents, so kernels of one environment
share it), and ships a link to that in the kernel's scratch directory, which no pruning of the cache
can take from a running session. A kernel whose executors run a Python of the cluster's hosts
(an executor_python path) ships nothing, and %pip cannot reach them: its notice says what to do.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys

from . import envpack, pipwatch
from .cache import size_text
from .diagnostics import KERNEL_DIR
from .state import State

log = logging.getLogger(__name__)

RESTART = "%spark restart"
PACK_FIX = "pyspark-kernel create --force -k {kernel} -d {kernels_dir} --executor_python pack"  # keeps the kernel's other settings


def pack_fix(kernel_dir: str) -> str:
    """The command that makes this kernel ship its environment, placed where it is (without -d,
    create would make a new kernel in the user's kernels directory, from its defaults)."""
    kernel_dir = os.path.normpath(kernel_dir)
    return PACK_FIX.format(kernel=shlex.quote(os.path.basename(kernel_dir)), kernels_dir=shlex.quote(os.path.dirname(kernel_dir)))


def environment_archive(runtime, attempt, kernel_dir: str = KERNEL_DIR, prefix: str = sys.prefix) -> str | None:
    """The archive this session's executors unpack as ./environment, or None when the kernel
    ships none; packed again first if %pip (or anything) changed the environment's distributions
    since `create` packed it. Tells runtime.pip what the executors get."""
    name = runtime.options.get("ship_environment")
    if not name:
        return None
    archive = os.path.join(kernel_dir, name)
    packed = pipwatch.read_manifest(os.path.join(kernel_dir, pipwatch.MANIFEST))
    now = pipwatch.distributions(prefix)
    if packed is None or packed == now:  # None: a kernel made before manifests ships what it has
        runtime.pip.ship(now)
        return archive
    changes = pipwatch.Changes(packed, now)
    runtime.mark("packing the changed environment for the executors")
    try:
        fresh = envpack.pack_cached(prefix, runtime.environ)
    except envpack.PackError as error:
        log.warning("packing %s again failed: %s", prefix, error)
        attempt.notices.append(f"NOTE: the environment changed since it was packed ({changes.summary()}), but packing it again failed: "
                               f"{error.problem}. The executors run it as packed ({error.fix}).")
        runtime.pip.ship(packed)
        return archive
    shipped = os.path.join(runtime.scratch, f"environment-{fresh.key}.tar.gz")
    if not os.path.exists(shipped):
        try:
            os.link(fresh.path, shipped)
        except OSError:  # the cache on another file system than the scratch directory
            shutil.copyfile(fresh.path, shipped)
    how = f"packed in {fresh.seconds:.0f} s" if fresh.fresh else "from the per-user cache"
    attempt.notices.append(f"The executors get the environment as it is now ({changes.summary()}): {size_text(fresh.size)}, {how}.")
    runtime.pip.ship(now)
    return shipped


def pip_notice(runtime, changes: pipwatch.Changes, kernel_dir: str = KERNEL_DIR, prefix: str = sys.prefix) -> str | None:
    """The line a cell shows when it changed the environment (%pip) away from what a dedicated
    driver's executors run; None where they run it themselves (local masters)."""
    master = runtime.conf.get("spark.master", runtime.master)
    if master.startswith("local"):
        return None  # the executors are the driver's threads: its Python workers import what it has
    what = changes.summary()
    name = runtime.options.get("ship_environment")
    if name:
        try:
            size = f"about {size_text(os.path.getsize(os.path.join(kernel_dir, name)))}"
        except OSError:
            size = "its size"
        if runtime.state in (State.READY, State.STARTING):
            return (f"NOTE: %pip changed this environment ({what}); the executors run it as it was packed. "
                    f"They get it at the next restart, which packs it again ({size}): {RESTART}")
        return f"NOTE: %pip changed this environment ({what}); the session's start packs it again for the executors ({size})."
    python = runtime.environ.get("PYSPARK_PYTHON") or "python3"
    # The directory resolved, not the file: a virtualenv's bin/python links to the interpreter it was made from.
    if os.path.isabs(python) and os.path.realpath(os.path.dirname(python)).startswith(os.path.realpath(prefix) + os.sep):
        return (f"NOTE: %pip changed this environment ({what}); the executors run {python} on the cluster's hosts, "
                f"and see the change only where that path is this environment (a shared file system): else install it there, "
                f"or ship this environment: {pack_fix(kernel_dir)}")
    return (f"NOTE: %pip changed this environment only ({what}): the executors run {python} on the cluster's hosts, which %pip does not change. "
            f"Install it there, or ship this environment: {pack_fix(kernel_dir)}")
