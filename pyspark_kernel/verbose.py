"""`create --verbose`: cookiecutter's steps and ours, on stderr.

Cookiecutter runs a template's hooks as child processes (create runs the package's own in its
process: generate), which do not share the parent's logging set-up: the parent says so in an
environment variable and each hook sets up its own.
"""

import logging
import os
import sys

VARIABLE = "PYSPARK_KERNEL_VERBOSE"
LOGGERS = ("cookiecutter", "pyspark_kernel")


def show_steps(names: tuple = LOGGERS) -> logging.Handler:
    """Log these loggers' records, DEBUG and up, to stderr; returns the handler, to remove after."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return handler


def hide_steps(handler: logging.Handler, names: tuple = LOGGERS) -> None:
    for name in names:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(logging.NOTSET)


def show_steps_if_asked(environ: dict = os.environ) -> None:
    """In a hook: show our steps when the create that runs cookiecutter was asked to."""
    if environ.get(VARIABLE) == "1" and not logging.getLogger("pyspark_kernel").handlers:  # run in create's own process, it shows them already
        show_steps(("pyspark_kernel",))
