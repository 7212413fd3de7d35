"""A shared driver started ahead of its first notebook (driver_prestart): the Jupyter server's
extension (pyspark_kernel.serverext) runs this module as it starts, in the kernel's own Python and
environment, from the kernel's directory. It finds or starts the kernel's shared driver, as a
notebook of that kernel would, and says where it is on one line of JSON: {"socket": ...}, or
{"error": ...}; then it runs one job on it, for the first notebook to find it warm. The extension then takes a lease of its own on it, held for as long as the Jupyter
server runs, and says so on this process's standard input; this process leaves.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import json
import shutil
import signal
import sys

from . import warmup
from .connect import load_client
from .diagnostics import FixableError
from .session import SparkRuntime
from .shared import SharedDriver


def main() -> int:
    # The Jupyter server stops its process group as it exits, maybe while this still warms the
    # driver up: an exit all the same, its scratch directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    runtime = SparkRuntime()  # kernel.json's options and settings: this process has the kernel's environment
    try:
        try:
            lease, _, _ = SharedDriver(runtime).find_server()
        except FixableError as error:
            print(json.dumps({"error": str(error)}), flush=True)
            return 1
        print(json.dumps({"socket": lease.paths.socket, "record": lease.paths.record, "pid": lease.record.get("pid"), "jvm": lease.record.get("jvm"),
                          "log": lease.paths.log}), flush=True)
        warm(lease)
        sys.stdin.readline()  # the Jupyter server holds a lease now (or gave up): this one may go
        lease.close()
        return 0
    finally:
        shutil.rmtree(runtime.scratch, ignore_errors=True)


def warm(lease) -> None:
    """One JVM job in a session of its own, which then goes: the first notebook's first query then
    finds the server's code loaded and its query planning compiled (about 1.5 s otherwise)."""
    try:
        load_client()
        from pyspark.sql import SparkSession

        session = SparkSession.builder.remote(lease.url).create()
        try:
            warmup.jvm_job(session)
        finally:
            session.stop()
    except Exception as error:  # noqa: BLE001 - the driver works without it: its first query is slower
        print(f"warming the shared driver up: {type(error).__name__}: {error}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
