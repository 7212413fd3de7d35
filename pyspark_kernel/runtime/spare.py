"""A warm Spark Connect session made ahead for the next notebook that the kernel starter forks
(runtime.starter). A new session's first query costs the shared driver more than the next ones
(the server builds the session's state as it plans it): a helper forked from the starter makes a
session with an id of its own, runs the warm-up's JVM job in it and says the id; the next forked
kernel's client attaches to that session (Spark Connect's session_id) and skips that warm-up job.
The server forgets a session idle for its session timeout (an hour unless configured): the starter
makes a new one every ROTATE seconds and releases the old one. A kernel whose spare session has
gone all the same starts a new session, as it would without one.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import json
import os
import sys
import uuid

from .driverfiles import read_record

ROTATE = 1800  # seconds a spare session waits for a notebook before a new one replaces it
MAKE_TIMEOUT = 60  # seconds a helper may take (a busy server): then it is killed, and there is no spare


def url(record: dict, session_id: str | None = None) -> str:
    """The shared driver's Spark Connect URL from its record; with ``session_id``, that session's."""
    # localhost: gRPC's local credentials
    return f"sc://localhost:{record['port']}/;token={record['token']}" + (f";session_id={session_id}" if session_id else "")


def make(record_path: str, keeper: int, out: int, release: str | None = None) -> int:
    """In the helper: release ``release`` (a spare nobody took), make and warm a new session on
    the shared driver whose record is ``record_path`` (the starter's, ``keeper``), and write
    {"session", "key", "keeper"} to ``out``. Its exit code."""
    record = keepers_record(record_path, keeper)
    if record is None:
        return 1  # the starter's driver has gone, or another has its files: no spare
    try:
        from . import warmup

        if release:
            stop(session_on(record, release))
        session_id = str(uuid.uuid4())
        warmup.jvm_job(session_on(record, session_id))  # the session stays on the server: this process leaves without releasing it
    except Exception as error:  # noqa: BLE001 - the next kernel makes its own session, as without a spare
        # Its type only: the message of a failed connection may quote the URL, and its token.
        print(f"making a spare Spark Connect session for the next notebook failed: {type(error).__name__}", file=sys.stderr, flush=True)
        return 1
    os.write(out, json.dumps({"session": session_id, "key": record["key"], "keeper": keeper}).encode() + b"\n")
    return 0


def release(record_path: str, keeper: int, session_id: str) -> int:
    """In a helper of a starter that leaves while its driver stays: release its spare session."""
    record = keepers_record(record_path, keeper)
    if record is None:
        return 0  # its driver has gone, and its sessions with it
    try:
        stop(session_on(record, session_id))
    except Exception:  # noqa: BLE001 - the server forgets it after its session timeout
        return 1
    return 0


def keepers_record(record_path: str, keeper: int) -> dict | None:
    """The shared driver's record at ``record_path``, if it is still the starter's (``keeper``'s)."""
    record = read_record(record_path)
    return record if record is not None and record.get("pid") == keeper else None


def session_on(record: dict, session_id: str):
    """The Spark Connect session ``session_id`` on the shared driver of ``record`` (made if new)."""
    from pyspark.sql.connect.session import SparkSession

    return SparkSession.builder.remote(url(record, session_id)).create()


def stop(session) -> None:
    try:
        session.stop()  # releases the session on the server
    except Exception:  # noqa: BLE001 - already gone (timed out): nothing to release
        pass


def choose(spare: dict | None, record: dict, key: str) -> str | None:
    """The spare session id a forked kernel may attach to: one made on the server it attached to."""
    if spare and spare.get("keeper") == record.get("pid") and spare.get("key") == key:
        return spare["session"]
    return None
