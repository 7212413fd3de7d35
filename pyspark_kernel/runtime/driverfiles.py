"""The files of one shared driver, by its key: the discovery record (0600, its port and token),
the Unix socket its notebooks lease through, its lock, log and scratch directory. The notebook's
side (shared), the server (driver_server) and the kernel starter's helper (spare) read them here.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import json
import logging
import os

log = logging.getLogger(__name__)

RECORD_FORMAT = 1


class Paths:
    """The files of one server, by its key."""

    def __init__(self, directory, key):
        self.directory, self.key = directory, key
        self.record = os.path.join(directory, f"{key}.json")
        self.socket = os.path.join(directory, f"{key}.sock")
        self.lock = os.path.join(directory, f"{key}.lock")
        self.log = os.path.join(directory, f"{key}.log")
        self.scratch = os.path.join(directory, f"{key}.d")


def read_record(path: str) -> dict | None:
    """The record at ``path``, or None: missing, unreadable, or of another format."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        log.debug("reading the shared driver's record %s", path, exc_info=True)
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def write_record(paths: Paths, record: dict) -> None:
    """Atomically, 0600: a reader sees a whole record or none."""
    partial = f"{paths.record}.{os.getpid()}.tmp"
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump({"format": RECORD_FORMAT, **record}, handle)
    os.replace(partial, paths.record)


def remove_files(paths: Paths) -> None:
    for path in (paths.record, paths.socket):
        try:
            os.unlink(path)
        except FileNotFoundError:
            log.debug("removing %s", path, exc_info=True)
