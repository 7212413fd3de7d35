"""The runtime's own log: kernel.log in the kernel's scratch directory, beside the JVM's driver.log.

Each module of the runtime logs with ``logging.getLogger(__name__)``, under the package's logger
(``pyspark_kernel_runtime`` in a kernel, ``pyspark_kernel.runtime`` in tests). setup() gives that
logger a file handler, and stops its records at the package: the notebook's root logger, which
IPython and ipykernel print into cells, never sees them.

The level is PYSPARK_KERNEL_LOG_LEVEL in the kernel's environment: DEBUG, INFO, WARNING (the
default) or ERROR. At WARNING the file stays empty unless something went wrong that a cell did not
show; at DEBUG it also holds each failure the runtime puts up with (a progress display that could
not update, a cache file already gone), with its traceback. The file is 0600, as the scratch
directory is 0700: it may name paths and settings of the user's.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import logging
import os

LEVEL_VARIABLE = "PYSPARK_KERNEL_LOG_LEVEL"
DEFAULT_LEVEL = logging.WARNING
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "WARN": logging.WARNING, "ERROR": logging.ERROR}
FILE_NAME = "kernel.log"
PACKAGE = __name__.rpartition(".")[0]
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)
_handler = None  # the handler setup() added last: a second setup replaces it


def level(environ) -> int:
    """The level PYSPARK_KERNEL_LOG_LEVEL names; the default when it names none."""
    return LEVELS.get(str(environ.get(LEVEL_VARIABLE) or "").strip().upper(), DEFAULT_LEVEL)


def setup(directory: str, environ) -> logging.Handler | None:
    """Write the runtime's records to ``directory``/kernel.log (0600) at the level ``environ``
    sets. None, and no log, when the file cannot be opened: a kernel never fails over its log."""
    path = os.path.join(directory, FILE_NAME)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # 0600 before the handler opens it
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None  # nowhere to say so: the notebook runs on without the runtime's log
    return attach(handler, environ)


def setup_stream(stream, environ) -> logging.Handler:
    """The same, to an open stream (the shared driver's process: its log file is its stderr)."""
    return attach(logging.StreamHandler(stream), environ)


def attach(handler: logging.Handler, environ) -> logging.Handler:
    global _handler
    logger = logging.getLogger(PACKAGE)
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler.close()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level(environ))
    logger.propagate = False
    _handler = handler
    given = environ.get(LEVEL_VARIABLE)
    if given and str(given).strip().upper() not in LEVELS:
        log.warning("%s is %r, not one of %s: logging at %s", LEVEL_VARIABLE, given, ", ".join(LEVELS), logging.getLevelName(DEFAULT_LEVEL))
    return handler
