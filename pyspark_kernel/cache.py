"""`pyspark-kernel cache [show|prune|clear]`: what the per-user cache holds, with sizes, and
removing it (runtime.cache, which kernels also prune with at each start)."""

import os
import sys
import time

from .errors import InputError
from .runtime import cache


def checked_limit(environ) -> int:
    try:
        return cache.limit(environ)
    except cache.LimitError as error:
        raise InputError(cache.LIMIT_VARIABLE, error.problem, error.fix) from None


def describe(entry: cache.Entry) -> list[str]:
    needs = ", ".join(entry.needs) or "no record of what it was made from"
    gone = entry.missing()
    busy = "in use" if entry.kind == cache.IVY_KIND else "being written"
    state = f"gone: {gone[0]}" if gone else (busy if entry.busy() else "ok")
    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.used))
    return [entry.kind, cache.size_text(entry.size), used, state, os.path.basename(entry.path), needs]


def entries_text(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def show(environ=os.environ, out=sys.stdout) -> int:
    cap = checked_limit(environ)
    entries = cache.read_entries(environ)
    print(f"{cache.cache_root(environ)}: {cache.size_text(cache.total(entries))} in {entries_text(len(entries))}, "
          f"limit {cache.size_text(cap)} ({cache.LIMIT_VARIABLE})", file=out)
    rows = [["KIND", "SIZE", "LAST USED", "STATE", "FILE", "MADE FROM"]] + [describe(entry) for entry in reversed(entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if entries:
        for row in rows:
            print("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip(), file=out)
    return 0


def prune(environ=os.environ, out=sys.stdout) -> int:
    checked_limit(environ)
    removed = cache.prune(environ)
    for entry, reason in removed:
        print(f"Removed {entry.path} ({cache.size_text(entry.size)}): {reason}", file=out)
    left = cache.read_entries(environ)
    print(f"Freed {cache.size_text(sum(entry.size for entry, _ in removed))}; the cache holds {cache.size_text(cache.total(left))} "
          f"in {entries_text(len(left))}", file=out)
    return 0


def clear(environ=os.environ, out=sys.stdout) -> int:
    removed = cache.clear(environ)
    for entry in removed:
        print(f"Removed {entry.path} ({cache.size_text(entry.size)})", file=out)
    busy = cache.read_entries(environ)
    kept = f"; kept {len(busy)} being written" if busy else ""
    print(f"Freed {cache.size_text(cache.total(removed))}{kept}", file=out)
    return 0
