"""Installed distributions as Spark Connect session artifacts, for what %pip added to a Connect
kernel's environment.

A Connect client has no environment to ship: the server's executors run the server's Python. What
Spark Connect does take (PySpark 4.x, `SparkSession.addArtifacts(path, pyfile=True)`) are .py, .zip
and .egg files that the server's Python workers put on their import path for the session. A
distribution's files (its RECORD) zipped with their site-packages paths import from there, as long
as they are pure Python: zipimport cannot load compiled extensions, so those are named instead.
Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import sys
import zipfile

from . import pipwatch

COMPILED = (".so", ".pyd", ".dylib")


class NotShippable(Exception):
    """A distribution Spark Connect's Python artifacts cannot carry: ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def distribution_files(name: str, prefix: str = sys.prefix) -> list[tuple[str, str]]:
    """(file on disk, path in the zip) for each of the distribution's files under site-packages."""
    importlib.invalidate_caches()  # installed after the kernel started: the finders must look again
    # Looked up in the environment's site-packages, not on sys.path: PySpark puts each zip it sent
    # there (ahead of site-packages), where an upgraded distribution's earlier version would be found.
    found = next(iter(importlib.metadata.distributions(name=name, path=pipwatch.site_dirs(prefix))), None)
    if found is None:
        raise NotShippable(name, f"not found in {prefix}'s site-packages")
    files = found.files
    if files is None:
        raise NotShippable(name, "its metadata lists no files (no RECORD)")
    pairs = []
    for file in files:
        inside = str(file).replace(os.sep, "/")
        if inside.startswith("../") or "__pycache__" in inside:  # scripts in bin/, compiled bytecode
            continue
        if inside.endswith(COMPILED):
            raise NotShippable(name, f"it has compiled code ({inside}), which zipped Python files cannot carry")
        pairs.append((str(found.locate_file(file)), inside))
    return pairs


def zip_distribution(name: str, version: str, directory: str, prefix: str = sys.prefix) -> str:
    """A zip of the distribution's files in ``directory``, named by its contents (Spark Connect
    refuses an artifact of a known name with other contents)."""
    pairs = distribution_files(name, prefix)
    digest = hashlib.sha256()
    for path, inside in sorted(pairs, key=lambda pair: pair[1]):
        digest.update(inside.encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
    target = os.path.join(directory, f"pip-{name}-{version}-{digest.hexdigest()[:12]}.zip")
    if not os.path.exists(target):
        partial = target + ".partial"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, inside in pairs:
                archive.write(path, inside)
        os.replace(partial, target)
    return target
