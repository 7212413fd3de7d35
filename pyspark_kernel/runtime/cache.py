"""The per-user cache, ~/.cache/pyspark-kernel (or $XDG_CACHE_HOME/pyspark-kernel): a
class-data-sharing archive per Java and Spark installation (cds/, 120-160 MB each), a packed
environment per version of an environment shipped to executors (environments/), and the Ivy
directory where Spark resolves Maven packages (ivy/, one entry: runtime.dependencies).

Each entry has a record beside it (ENTRY.json) of the paths it was made from; its modification
time is the entry's last use. Nothing else ever removes entries, so prune() does, at each kernel
start and from `pyspark-kernel cache prune`: an entry whose Java, Spark installation or
environment no longer exists goes, and then the least recently used go until the cache is within
its limit (DEFAULT_LIMIT, or $PYSPARK_KERNEL_CACHE_LIMIT such as 500M or 4G). An archive being
written (its lock held) is never removed; a JVM that has mapped a removed archive keeps its pages.
An archive's size record (ENTRY.size) goes with it, and an archive set aside (runtime.cds) goes at
the next prune. Standard library only: the kernel's runtime and the CLI share it. An archive's
lock (ENTRY.lock, taken by jvm.claim_archive) is read here: whether its holder is alive says
whether the entry is busy. The Ivy directory is busy while a kernel whose driver loaded jars from it
is alive (its pid in ivy.users/, written by claim_ivy).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import json
import logging
import os
import re
import shutil
import socket
import time

from .cds import SET_ASIDE, SIZE
from .diagnostics import FixableError

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 2 * 1024 ** 3
LIMIT_VARIABLE = "PYSPARK_KERNEL_CACHE_LIMIT"
PARTS = {"cds": (".jsa", "archive"), "environments": (".tar.gz", "environment")}
IVY = "ivy"  # a directory, one entry: Ivy's cache/ and the resolved jars/ that drivers load
IVY_USERS = "ivy.users"  # a file per kernel whose driver uses the Ivy directory: "host pid"
IVY_KIND = "packages"
LEFTOVER_AGE = 86400  # seconds after which a half-written file is a crash's leftover, not work in progress
LOCK_UNWRITTEN_AGE = 60  # seconds a lock file may stay empty: its maker is between create and write
LOCK_FOREIGN_AGE = 86400  # a lock from another host (a shared home) cannot be checked: trust it this long
UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


class LimitError(FixableError, ValueError):
    """A cache limit that is not a size: what was given, and how to write one."""


class Entry:
    """One cached file: its kind (archive or environment), size, last use and the paths it needs."""

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind
        self.record = record_path(path)
        stat = os.stat(path)
        self.size = tree_size(path) if kind == IVY_KIND else stat.st_size
        self.needs = []
        self.used = stat.st_mtime
        try:
            with open(self.record, encoding="utf-8") as handle:
                self.needs = [str(need) for need in json.load(handle).get("needs", [])]
            self.used = max(self.used, os.stat(self.record).st_mtime)
        except (OSError, ValueError, AttributeError):  # no record (made before records, or being written): judged by its age alone
            log.debug("no readable record for %s", path, exc_info=True)

    def missing(self) -> list[str]:
        """The paths this entry was made from that are gone."""
        return [need for need in self.needs if not os.path.exists(need)]

    def busy(self) -> bool:
        """Whether a JVM may be writing it right now (its lock's holder is alive), or, for the Ivy
        directory, a live kernel's driver loads jars from it."""
        if self.kind == IVY_KIND:
            return ivy_in_use(os.path.dirname(self.path))
        return lock_is_held(self.path + ".lock")


def tree_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                continue
    return total


def claim_ivy(environ) -> None:
    """This kernel's driver loads jars from the Ivy directory: no prune removes it while the kernel lives."""
    users = os.path.join(cache_root(environ), IVY_USERS)
    os.makedirs(users, mode=0o700, exist_ok=True)
    host = socket.gethostname()
    with open(os.path.join(users, f"{host}-{os.getpid()}"), "w", encoding="utf-8") as handle:
        handle.write(f"{host} {os.getpid()}\n")


def ivy_in_use(root: str) -> bool:
    """Whether a live kernel uses the Ivy directory; the records of kernels that have gone are removed."""
    users = os.path.join(root, IVY_USERS)
    try:
        names = os.listdir(users)
    except OSError:
        return False
    used = False
    for name in names:
        path = os.path.join(users, name)
        if lock_is_held(path):
            used = True
        else:
            try:
                os.remove(path)
            except OSError:
                log.debug("removing the gone kernel's record %s", path, exc_info=True)
    return used


def lock_is_held(lock: str) -> bool:
    """Whether the archive lock's holder (host and pid) is alive."""
    try:
        age = time.time() - os.stat(lock).st_mtime
    except FileNotFoundError:
        return False
    except OSError:
        log.debug("cannot read the lock %s: taken as held", lock, exc_info=True)
        return True  # cannot tell: as if held, and start without the archive
    try:
        with open(lock, encoding="utf-8") as handle:
            host, pid = handle.read().split()
        pid = int(pid)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return age < LOCK_UNWRITTEN_AGE
    if host != socket.gethostname():
        return age < LOCK_FOREIGN_AGE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def cache_root(environ) -> str:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyspark-kernel")


def record_path(entry: str) -> str:
    return entry + ".json"


def write_record(entry: str, needs) -> None:
    """Say what ``entry`` was made from (and that it is used now), whole or not at all."""
    partial = f"{record_path(entry)}.{os.getpid()}.partial"
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump({"needs": [os.path.abspath(need) for need in needs]}, handle)
    os.replace(partial, record_path(entry))


def mark_used(entry: str, needs) -> None:
    """A kernel uses ``entry`` now: its record says so (and is written if it has none yet)."""
    try:
        os.utime(record_path(entry))
    except FileNotFoundError:
        write_record(entry, needs)


def parse_limit(text) -> int:
    """Bytes from '2G', '500M', '1.5G' or a plain number of bytes; ValueError when it is none."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise LimitError(f"{text!r} is not a size", "write it in bytes or with K, M, G or T, for example 4G")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def limit(environ) -> int:
    text = environ.get(LIMIT_VARIABLE)
    return DEFAULT_LIMIT if text in (None, "") else parse_limit(text)


def read_entries(environ) -> list[Entry]:
    """Every cached entry, least recently used first."""
    entries = []
    for part, (suffix, kind) in PARTS.items():
        directory = os.path.join(cache_root(environ), part)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name.endswith(suffix):
                try:
                    entries.append(Entry(os.path.join(directory, name), kind))
                except FileNotFoundError:
                    continue  # removed meanwhile
    ivy = os.path.join(cache_root(environ), IVY)
    if os.path.isdir(ivy):
        try:
            entries.append(Entry(ivy, IVY_KIND))
        except FileNotFoundError:
            log.debug("the Ivy directory was removed meanwhile", exc_info=True)
    return sorted(entries, key=lambda entry: entry.used)


def leftovers(environ, now: float | None = None) -> list[str]:
    """Half-written files (a JVM or a packer that crashed) and records whose entry is gone."""
    now = time.time() if now is None else now
    found = []
    for part in PARTS:
        directory = os.path.join(cache_root(environ), part)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith((".json", SIZE)):
                entry = path[:-len(".json")] if name.endswith(".json") else path[:-len(SIZE)]
                # An archive's record comes first, while its JVM still writes it (under its lock).
                if not os.path.exists(entry) and not lock_is_held(entry + ".lock"):
                    found.append(path)
            elif SET_ASIDE in name:  # an archive a JVM crashed on or refused: never used again
                found.append(path)
            elif ".partial" in name or ".stale." in name:
                try:
                    if now - os.stat(path).st_mtime > LEFTOVER_AGE:
                        found.append(path)
                except FileNotFoundError:
                    continue
    return found


def remove(entry: Entry) -> None:
    paths = [entry.record]
    if entry.kind == IVY_KIND:
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        paths += [entry.path, entry.path + SIZE]
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:  # removed meanwhile (another kernel's prune), or never made: what was wanted
            log.debug("%s was already gone", path)


def total(entries) -> int:
    return sum(entry.size for entry in entries)


def prune(environ, keep=()) -> list[tuple[Entry, str]]:
    """Remove what the cache holds for a Java, Spark installation or environment that is gone,
    then the least recently used entries until it is within its limit; never ``keep`` (paths a
    kernel is using) or an archive being written. The entries removed, and why, as (entry, reason)."""
    cap = limit(environ)
    keep = {os.path.abspath(path) for path in keep}
    removed = []
    for path in leftovers(environ):
        try:
            os.remove(path)
        except OSError:
            log.debug("removing the leftover %s", path, exc_info=True)
    entries = read_entries(environ)
    for entry in list(entries):
        gone = entry.missing()
        if gone and entry.path not in keep and not entry.busy():
            remove(entry)
            entries.remove(entry)
            removed.append((entry, f"{gone[0]} no longer exists"))
    for entry in list(entries):  # least recently used first
        if total(entries) <= cap:
            break
        if entry.path in keep or entry.busy():
            continue
        remove(entry)
        entries.remove(entry)
        removed.append((entry, f"least recently used, over the limit of {size_text(cap)}"))
    return removed


def clear(environ, keep=()) -> list[Entry]:
    """Remove every entry but those in use; the entries removed."""
    keep = {os.path.abspath(path) for path in keep}
    removed = [entry for entry in read_entries(environ) if entry.path not in keep and not entry.busy()]
    for entry in removed:
        remove(entry)
    return removed


def size_text(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
