"""Which driver a kernel runs: the one place that knows the three kinds (runtime.drivers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .connect import ConnectDriver
from .dedicated import DedicatedDriver
from .drivers import Driver
from .masters import is_connect
from .shared import SharedDriver

if TYPE_CHECKING:
    from .session import SparkRuntime


def choose(runtime: SparkRuntime) -> Driver:
    """The driver for the kernel's options and master: a shared driver when spark_driver is
    shared, a Spark Connect client for an sc:// master, else a dedicated driver."""
    if runtime.options["spark_driver"] == "shared":
        return SharedDriver(runtime)
    if is_connect(runtime.master):
        return ConnectDriver(runtime)
    return DedicatedDriver(runtime)
