"""What %pip changed in the kernel's environment since the executors got it.

The environment's distributions are read from its site-packages directories: one entry per
*.dist-info or *.egg-info, as pip writes them (name, version, and the entry's modification time,
which a reinstall of the same version changes). Looking after each cell must cost nothing a user
notices, so a cell first compares a stamp: the modification times of the site-packages
directories, which change whenever pip adds or removes an entry in them (one stat each). Only a
changed stamp reads the distributions again.

The kernel directory's MANIFEST records the environment's distributions at `create`: what it packed,
for a kernel that ships its environment, whose start packs it again if they differ now
(runtime.shipping); for a Spark Connect kernel, the baseline each new session gets the difference
from as artifacts (runtime.connect). Standard library only.
"""

from __future__ import annotations

import glob
import json
import os
import re

MANIFEST = "environment.json"  # beside the packed environment.tar.gz: its fingerprint and distributions
SUFFIXES = (".dist-info", ".egg-info")
SHOWN = 3  # distributions a notice names before "and N more"


def site_dirs(prefix: str) -> list[str]:
    """The environment's site-packages directories (a venv's and a conda environment's alike)."""
    found = glob.glob(os.path.join(prefix, "lib*", "python*", "site-packages"))
    return sorted({os.path.realpath(path) for path in found})


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions(prefix: str) -> dict[str, list]:
    """{normalized name: [version, modification time of its metadata directory]}."""
    found = {}
    for directory in site_dirs(prefix):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for entry in names:
            if not entry.endswith(SUFFIXES):
                continue
            name, _, version = entry.rsplit(".", 1)[0].partition("-")
            try:
                changed = os.stat(os.path.join(directory, entry)).st_mtime_ns
            except OSError:  # removed meanwhile
                continue
            found[normalize(name)] = [version.split("-")[0] or "?", changed]
    return found


def stamp(directories) -> tuple:
    """Changes whenever an entry of one of these site-packages directories is added or removed."""
    stamps = []
    for directory in directories:
        try:
            stamps.append((directory, os.stat(directory).st_mtime_ns))
        except OSError:
            stamps.append((directory, None))
    return tuple(stamps)


def write_manifest(path: str, found: dict, key: str | None, prefix: str | None = None) -> None:
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump({"fingerprint": key, "distributions": found, "prefix": prefix}, handle, sort_keys=True)
    os.replace(partial, path)


def read_manifest(path: str, prefix: str | None = None) -> dict | None:
    """The distributions a packed archive holds (with ``prefix``: recorded of that environment);
    None for a kernel made before manifests."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        found = record["distributions"]
        if prefix is not None and record.get("prefix") != prefix:
            return None
        return found if isinstance(found, dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class Changes:
    """How the environment differs from what the executors have: names and versions, each list sorted."""

    def __init__(self, before: dict, after: dict) -> None:
        self.added = sorted(f"{name} {after[name][0]}" for name in after.keys() - before.keys())
        self.removed = sorted(f"{name} {before[name][0]}" for name in before.keys() - after.keys())
        common = sorted(before.keys() & after.keys())
        self.upgraded = [f"{name} {before[name][0]} -> {after[name][0]}" for name in common if before[name][0] != after[name][0]]
        self.reinstalled = [f"{name} {after[name][0]}" for name in common if before[name] != after[name] and before[name][0] == after[name][0]]
        self.names = sorted(name for name in after if after[name] != before.get(name))  # what the executors lack or have otherwise
        self.after = after

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.upgraded or self.reinstalled)

    def summary(self) -> str:
        """'added tinypkg 0.1; upgraded six 1.16.0 -> 1.17.0', at most SHOWN names a kind."""
        parts = []
        for verb, items in (("added", self.added), ("upgraded", self.upgraded), ("reinstalled", self.reinstalled), ("removed", self.removed)):
            if items:
                more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
                parts.append(f"{verb} {', '.join(items[:SHOWN])}{more}")
        return "; ".join(parts)


class Watch:
    """The kernel's environment against the distributions its executors have, looked at after each
    cell: each change is told once (the same difference is not told again at every cell)."""

    def __init__(self, prefix: str, shipped: dict | None = None) -> None:
        self.prefix = prefix
        self.shipped = distributions(prefix) if shipped is None else shipped
        self.seen = self.shipped  # the distributions last told about
        self.initial = self.shipped  # at the kernel's start: the baseline of a kernel made before manifests
        self.directories = site_dirs(prefix)  # found once: a cell's look is a stat of each
        self.stamp = stamp(self.directories)

    def ship(self, found: dict) -> None:
        """A session starts whose executors have ``found``."""
        self.shipped = self.seen = found

    def changes(self) -> Changes | None:
        """What changed since the executors got the environment, if it changed since the last look
        and differs from the last change told about; else None (a stat per site-packages directory)."""
        now = stamp(self.directories)
        if now == self.stamp:
            return None
        self.stamp = now
        found = distributions(self.prefix)
        if found == self.seen:
            return None
        self.seen = found
        return Changes(self.shipped, found) or None
