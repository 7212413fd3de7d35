"""The hub's limits: a JupyterHub spawner with cpu_limit or mem_limit sets CPU_LIMIT (cores, a
float) and MEM_LIMIT (bytes) in the single-user server's environment, and kernels inherit them.
The kernel's own Spark driver (a dedicated driver, or the user's shared one) fits them:

- CPU_LIMIT: local[*], and local[N] with N above it, run floor(CPU_LIMIT) task threads, at least
  one (1.5 cores: 1 thread; 0.5: 1). Whole cores: a thread more than the share only waits for CPU.
- MEM_LIMIT: when no spark.driver.memory is set, the driver JVM's heap is half of MEM_LIMIT, at
  most Spark's own default (1 GiB) and at least 512 MiB (a Spark driver does not start on much
  less). The other half is the rest of the user's processes: the JVM's memory beyond its heap
  (a few hundred MiB), the kernel's Python, and the Python workers.
- A setting of the user's wins: spark.driver.memory from the kernel, its profile or `%spark
  restart --conf`, and a local[N] master from `%spark restart --conf`. The first cell of the
  session says in one line that it is above the limit.

Standard library only: the runtime's other modules and `pyspark-kernel doctor` read it.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import logging
import math
import re
from typing import NamedTuple

log = logging.getLogger(__name__)

CPU_VARIABLE = "CPU_LIMIT"
MEMORY_VARIABLE = "MEM_LIMIT"
MIB = 1024 * 1024
HEAP_SHARE = 0.5  # of MEM_LIMIT, for the driver's heap
HEAP_MOST_MIB = 1024  # Spark's default spark.driver.memory: the limit only ever lowers it
HEAP_LEAST_MIB = 512  # Spark's driver wants a heap of 450 MiB at least (its reserved memory times 1.5)
LOCAL_MASTER = re.compile(r"local\[(\*|[0-9]+)(,\s*[0-9]+)?\]")
# Spark's size strings (JavaUtils.byteStringAs): whole numbers, binary units; no unit is MiB for
# spark.driver.memory.
SIZE = re.compile(r"([0-9]+)\s*([a-z]*)")
UNITS = {"b": 1, "k": 1024, "kb": 1024, "m": MIB, "mb": MIB, "g": 1024 * MIB, "gb": 1024 * MIB,
         "t": 1024**2 * MIB, "tb": 1024**2 * MIB, "p": 1024**3 * MIB, "pb": 1024**3 * MIB, "": MIB}


class Limits(NamedTuple):
    """The limits the environment declares: cores and bytes, None when it declares none (or one
    that is not a positive number: ``ignored`` says which)."""

    cpu: float | None
    memory: int | None
    ignored: tuple = ()

    @property
    def any(self) -> bool:
        return self.cpu is not None or self.memory is not None


class Fitted(NamedTuple):
    """Spark settings fitted to the limits, and the notices the session's first cell shows."""

    conf: dict
    notices: list


def read_limits(environ) -> Limits:
    ignored = []

    def number(name):
        text = (environ.get(name) or "").strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            log.debug("%s=%r is not a positive number: ignored", name, text)  # %spark status and doctor say so
            ignored.append(name)
            return None
        return value

    cpu, memory = number(CPU_VARIABLE), number(MEMORY_VARIABLE)
    return Limits(cpu, None if memory is None else int(memory), tuple(ignored))


def task_threads(cpu: float) -> int:
    """The task threads a local master may run for a CPU_LIMIT of ``cpu`` cores."""
    return max(1, math.floor(cpu))


def heap_share_mib(memory: int) -> int:
    """The part of MEM_LIMIT (bytes) the driver's heap may take: above it, a setting gets a notice."""
    return int(memory * HEAP_SHARE) // MIB


def default_heap_mib(memory: int) -> int:
    """The driver's heap when no spark.driver.memory is set, for a MEM_LIMIT of ``memory`` bytes."""
    return max(HEAP_LEAST_MIB, min(HEAP_MOST_MIB, heap_share_mib(memory)))


def size_bytes(text: str) -> int | None:
    """A Spark size (spark.driver.memory: "2g", "1536m", "1024"), in bytes; None when Spark would
    not read it either (it then says so itself)."""
    found = SIZE.fullmatch(str(text).strip().lower())
    if not found or found.group(2) not in UNITS:
        return None
    return int(found.group(1)) * UNITS[found.group(2)]


def size_text(count: int) -> str:
    """Bytes as the hub's admins write them: 1.5 GiB, 768 MiB."""
    if count >= 1024 * MIB:
        return f"{count / (1024 * MIB):.3g} GiB"
    return f"{count / MIB:.4g} MiB"


def fit(conf: dict, kernel_conf: dict, environ) -> Fitted:
    """``conf`` (the session's settings: the kernel's, ``kernel_conf``, plus %spark restart's) for
    a driver JVM on this machine, fitted to the environment's limits."""
    limits = read_limits(environ)
    fitted, notices = dict(conf), []
    master = conf.get("spark.master", "local[*]")
    local = LOCAL_MASTER.fullmatch(master)
    if limits.cpu is not None and local:
        threads, most = local.group(1), task_threads(limits.cpu)
        chosen = kernel_conf.get("spark.master") != master  # %spark restart --conf spark.master=...
        if threads != "*" and int(threads) > most and chosen:
            notices.append(f"spark.master {master} runs {threads} task threads, more than this user's {CPU_VARIABLE} of {limits.cpu:g} allows "
                           f"({most}): the setting is used")
        elif threads == "*" or int(threads) > most:
            fitted["spark.master"] = f"local[{most}{local.group(2) or ''}]"
    if limits.memory is not None:
        share = heap_share_mib(limits.memory)
        given = conf.get("spark.driver.memory")
        if given is None:
            fitted["spark.driver.memory"] = f"{default_heap_mib(limits.memory)}m"
            if share < HEAP_LEAST_MIB:
                notices.append(f"{MEMORY_VARIABLE} is {size_text(limits.memory)}, too little for a Spark driver: its heap is {HEAP_LEAST_MIB} MiB, "
                               f"the least it starts with, and the out-of-memory killer may stop it (ask for a memory limit of 1 GiB or more)")
        elif (size_bytes(given) or 0) > share * MIB:
            notices.append(f"spark.driver.memory {given} is above half of this user's {MEMORY_VARIABLE} of {size_text(limits.memory)} "
                           f"({share} MiB): the setting is used, and the out-of-memory killer may stop the driver")
    return Fitted(fitted, notices)


def status_line(conf: dict, kernel_conf: dict, environ) -> str:
    """`%spark status`: the limits in force, and what they make of the session's settings."""
    limits = read_limits(environ)
    conf = fit(conf, kernel_conf, environ).conf
    parts = []
    if limits.cpu is not None:
        master = conf.get("spark.master", "local[*]")
        local = master == "local" or LOCAL_MASTER.fullmatch(master)
        parts.append(f"{CPU_VARIABLE} {limits.cpu:g} ({f'master {master}' if local else 'the cluster runs the tasks'})")
    if limits.memory is not None:
        parts.append(f"{MEMORY_VARIABLE} {size_text(limits.memory)} (driver heap {conf.get('spark.driver.memory', '1g')})")
    parts += [f"{name} ignored: not a positive number" for name in limits.ignored]
    return "limits: " + ("; ".join(parts) if parts else f"none declared (no {CPU_VARIABLE} or {MEMORY_VARIABLE})")


def killed_hint(environ) -> str:
    """What a driver killed by SIGKILL adds to its message: the memory limit it ran under."""
    memory = read_limits(environ).memory
    return f"; the user's memory limit is {size_text(memory)} ({MEMORY_VARIABLE})" if memory is not None else ""
