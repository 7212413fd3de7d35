"""The class-data-sharing archive's health: an archive is mapped only if its writer recorded it
whole, and one the JVM crashed on or refused is set aside, so that the next start rebuilds it.

HotSpot validates a dynamic archive's header and the classpath it was built with (each jar's
name, size and modification time) and, with -Xshare:auto, starts without an archive that fails
those checks ("Unable to use shared archive"). It does not check that the file is as long as its
header says: JDK 17 maps an archive cut short and dies of SIGBUS on every start. So the writer's
size is recorded beside the archive (ARCHIVE.jsa.size, written by the watchdog once the JVM has
written the archive whole), an archive of another size is never mapped, and a JVM that crashes
or refuses an archive all the same has it set aside (renamed ARCHIVE.jsa.set-aside.PID, which the
cache's pruning removes).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import logging
import os

log = logging.getLogger(__name__)

SIZE = ".size"  # beside the archive: the size its writer wrote, in bytes
SET_ASIDE = ".set-aside."  # ARCHIVE.jsa.set-aside.PID: never mapped again, removed by the next prune
# In the JVM's output: the JVM died (HotSpot's crash report), or refused the archive and went on without it.
CRASHED = ("A fatal error has been detected by the Java Runtime Environment",)
REFUSED = ("Unable to use shared archive", "An error has occurred while processing the shared archive file",
           "created by a different version", "Loading dynamic archive failed", "shared archive file has been truncated")


def size_record(archive: str) -> str:
    return archive + SIZE


def recorded_size(archive: str) -> int | None:
    """The size the archive's writer wrote, or None when none was recorded."""
    try:
        with open(size_record(archive), encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        log.debug("no recorded size for %s", archive, exc_info=True)
        return None


def cut_short(archive: str) -> str | None:
    """Why ``archive`` (which exists) must not be mapped, or None when it is whole."""
    recorded = recorded_size(archive)
    try:
        size = os.path.getsize(archive)
    except OSError as error:
        return f"it cannot be read ({error.strerror})"
    if recorded is None:
        return "its writer did not record it as whole"
    if size != recorded:
        return f"it is {size} bytes long, and was written {recorded} bytes long"
    return None


def set_aside(archive: str) -> str | None:
    """Rename ``archive`` out of the way (a JVM that maps it keeps its pages); where it went, or None
    when it was already gone. Its size record goes: the next archive's writer records its own."""
    aside = f"{archive}{SET_ASIDE}{os.getpid()}"
    try:
        os.rename(archive, aside)
    except FileNotFoundError:
        log.debug("%s was already set aside", archive)
        aside = None
    try:
        os.remove(size_record(archive))
    except FileNotFoundError:
        log.debug("%s had no size record", archive)
    return aside


def output_from(path: str, offset: int) -> str:
    """What the JVM wrote to its output file ``path`` from ``offset`` on (this launch's part)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        log.debug("cannot read the JVM's output %s", path, exc_info=True)
        return ""


def output_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def maps(java_options) -> bool:
    """Whether these JVM options map an archive (one that exists, or that the JVM may write itself)."""
    return any(option.startswith("-XX:SharedArchiveFile=") for option in java_options)


def launch_failure(java_options, output: str) -> str | None:
    """Why a JVM launched with ``java_options`` that exited before it answered may have died of its
    archive, or None when it did not map one or died of something else."""
    if not maps(java_options):
        return None
    if any(sign in output for sign in CRASHED):
        return "the JVM crashed mapping it"
    if any(sign in output for sign in REFUSED):
        return "the JVM could not read it"
    return None


def refusal(java_options, output: str) -> str | None:
    """Why the JVM, started with ``java_options`` that map an existing archive, ran without it; None
    when it mapped it. A JVM that rewrites the archive itself (-XX:+AutoCreateSharedArchive) is not
    asked: it replaces a refused archive as it exits."""
    if "-XX:+AutoCreateSharedArchive" in java_options or not maps(java_options):
        return None
    lines = [line.strip() for line in output.splitlines() if any(sign in line for sign in REFUSED)]
    return f"the JVM refused it: {lines[0]}" if lines else None


def unusable_notice(archive: str, why: str, retried: bool) -> str:
    """The one line a notebook shows for an archive set aside."""
    now = "this start ran without it" if retried else "this start runs without it"
    return f"The class-data-sharing archive {archive} was unusable ({why}): set aside; {now} and the next rebuilds it."


def rebuilt_notice(archive: str, why: str) -> str:
    return f"The class-data-sharing archive {archive} was unusable ({why}): set aside; this kernel's JVM writes a new one as it exits."
