"""The user's own runtime directory (0700), where the shared drivers and the kernel starters keep
their records and sockets. Standard library only: the kernel's launcher reads it before anything
else has loaded."""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import logging
import os
import stat
import sys
import tempfile

log = logging.getLogger(__name__)

# Bytes of a Unix socket's path (sun_path, less its NUL): 107 on Linux, 103 on macOS.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


def socket_path_fits(path: str) -> bool:
    return len(os.fsencode(path)) <= SOCKET_PATH_MAX


class NotPrivate(Exception):
    """The directory could be entered or changed by someone else."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} ({fix})")
        self.problem, self.fix = problem, fix


def private_dir(environ: dict) -> str:
    """The directory, made 0700; NotPrivate if anyone else could enter or change it (a token must
    not be readable, a socket not replaceable)."""
    base = environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.stat(base).st_uid == os.getuid():
        path = os.path.join(base, "pyspark-kernel")
    else:
        path = os.path.join(tempfile.gettempdir(), f"pyspark-kernel-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        log.debug("making the shared drivers' directory %s", path, exc_info=True)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise NotPrivate(f"{path} is not a directory of yours alone (mode {stat.filemode(found.st_mode)}): the shared driver keeps its token there",
                         "remove it, or set XDG_RUNTIME_DIR to a directory of yours with mode 0700")
    return path
