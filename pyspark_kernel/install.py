"""Install a kernel directory built elsewhere: it appears whole or not at all.

The kernel is generated into a staging directory beside its final place (same filesystem), then
renamed into place. Replacing swaps old and new in one atomic step where Linux allows it.
"""

import ctypes
import os
import shutil
import tempfile
from contextlib import contextmanager

from .errors import InputError

STAGING_PREFIX = ".pyspark-kernel-staging-"
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(errno, os.strerror(errno), b)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_private(path: str, mask: int | None = None) -> None:
    """Only its owner can read a --user kernel (its env may name internal hosts and services):
    0700 and 0600, or tighter under a stricter umask. Copied files would otherwise keep their
    source's modes."""
    mask = (current_umask() if mask is None else mask) | 0o077
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def make_shareable(path: str) -> None:
    """Directories 0755, files 0644, whatever the caller's umask: every user of a shared Jupyter
    can read the kernel, only its owner can change it."""
    os.chmod(path, 0o755)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def first_missing(path: str) -> str | None:
    """The outermost directory of ``path`` that does not exist yet (None when it exists)."""
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def remove_stale_staging(kernels_dir: str) -> None:
    """Staging directories left by a create that was killed: their creator (named in the directory)
    is no longer running. Another create's, still running, stay."""
    try:
        entries = os.listdir(kernels_dir)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(STAGING_PREFIX):
            continue
        try:
            pid = int(entry[len(STAGING_PREFIX):].split("-")[0])
        except ValueError:
            continue  # not one of ours
        try:
            os.kill(pid, 0)
            continue  # its create is still running
        except ProcessLookupError:
            shutil.rmtree(os.path.join(kernels_dir, entry), ignore_errors=True)
        except PermissionError:
            continue  # another user's running process


@contextmanager
def staging_dir(kernels_dir: str):
    """A staging directory in ``kernels_dir``; on failure, the directories this created go too."""
    created = first_missing(kernels_dir)
    remove_stale_staging(kernels_dir)
    try:
        os.makedirs(kernels_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=kernels_dir)
    except OSError as error:
        raise InputError("kernels_dir", f"cannot write to {kernels_dir}: {error.strerror or error}", "install for your user with --user, or choose a writable directory with -d") from None
    installed = False
    try:
        yield staging
        installed = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not installed:
            remove_empty_dirs(kernels_dir, created)


def remove_empty_dirs(path: str, top: str) -> None:
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == top:
            return
        path = os.path.dirname(path)


def refuse_existing(target: str) -> None:
    if os.path.lexists(target):
        name, kernels_dir = os.path.basename(target), os.path.dirname(target)
        raise InputError("kernel_name", f"a kernel named {name} already exists in {kernels_dir}", "pass --force to replace it")


def move_into_place(built: str, target: str, force: bool) -> None:
    """Rename ``built`` to ``target``; with ``force`` an existing ``target`` is replaced and its
    old files end in ``built``'s staging directory, to be deleted with it."""
    name = os.path.basename(target)
    kernels_dir = os.path.dirname(target)
    try:
        if force and os.path.lexists(target):
            replace(built, target)
            return
        refuse_existing(target)
        os.rename(built, target)
    except InputError:
        raise
    except OSError as error:
        if os.path.lexists(target) and not force:
            raise InputError("kernel_name", f"a kernel named {name} appeared in {kernels_dir} while this one was being built", "pass --force to replace it") from None
        raise InputError("kernels_dir", f"cannot install into {kernels_dir}: {error.strerror or error}", "check the directory's permissions") from None


def replace(built: str, target: str) -> None:
    if exchange(built, target):
        return
    aside = built + ".replaced"
    os.rename(target, aside)
    try:
        os.rename(built, target)
    except OSError:
        os.rename(aside, target)  # the old kernel back where it was
        raise
