"""The version a pyspark package's version.py states, read without importing pyspark (which loads
pyspark.sql: 0.15 s). The generator reads it to describe a Spark installation (sparkhome, drift);
a first notebook's launcher, for its shared driver's key (driverstart)."""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import os
import re

VERSION_LINE = re.compile(r"""^__version__(?:: str)?\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def read_version(path: str) -> str | None:
    """The version version.py at ``path`` states; None when there is none to read."""
    try:
        with open(path, encoding="utf-8") as handle:
            found = VERSION_LINE.search(handle.read())
    except OSError:
        return None
    return found.group(1) if found else None


def package_version(directory: str) -> str | None:
    """The version of the pyspark package in ``directory``."""
    return read_version(os.path.join(directory, "version.py"))
