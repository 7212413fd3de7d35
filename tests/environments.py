"""Python environments the tests build from pinned requirements, cached by their pinned contents
(the interpreter's version and the requirement lines), so a second `make test` reuses them.

The cache lives in $PYSPARK_KERNEL_TEST_CACHE, else ~/.cache/pyspark-kernel-tests; an environment
appears whole or not at all (built beside, then renamed), and a broken one is rebuilt.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys

BUILD_TIMEOUT = 900
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_root():
    return os.environ.get("PYSPARK_KERNEL_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyspark-kernel-tests")


def pinned_all():
    """Every pin of requirements.txt."""
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def pinned(names):
    """Lines of requirements.txt for these distributions (the project's own pins)."""
    wanted = {re.sub(r"[-_.]+", "-", name).lower() for name in names}
    found = [line for line in pinned_all() if re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() in wanted]
    assert len(found) == len(wanted), f"requirements.txt pins {found}, not all of {sorted(wanted)}"
    return found


def find_python(version):
    """An interpreter of this minor version on this machine: one of pyenv's versions, else
    pythonX.Y on PATH (a pyenv shim there may not run, so each candidate is tried). None when none runs."""
    candidates = []
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    versions = os.path.join(pyenv_root, "versions")
    if os.path.isdir(versions):
        candidates += [os.path.join(versions, name, "bin", f"python{version}") for name in sorted(os.listdir(versions), reverse=True)
                       if name.startswith(version + ".")]
    if shutil.which(f"python{version}"):
        candidates.append(shutil.which(f"python{version}"))
    for candidate in candidates:
        try:
            if os.access(candidate, os.X_OK) and python_version(candidate).startswith(version + "."):
                return candidate
        except (OSError, subprocess.CalledProcessError):
            continue
    return None


def python_version(python):
    return subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def cached_environment(name, requirements, python=sys.executable, constraints=()):
    """A venv of ``python`` with ``requirements`` installed (and ``constraints`` applied)."""
    import fcntl

    key = hashlib.sha256("\n".join([python_version(python), *requirements, "--", *constraints]).encode()).hexdigest()[:16]
    target = os.path.join(cache_root(), f"{name}-{key}")
    marker = os.path.join(target, ".complete")
    os.makedirs(cache_root(), exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it right now
        if os.path.isfile(marker):
            return target
        shutil.rmtree(target, ignore_errors=True)  # an unfinished one
        try:
            # Built in place (a venv records its own path in its scripts), marked complete last.
            subprocess.run([python, "-m", "venv", target], check=True, capture_output=True)
            command = [os.path.join(target, "bin", "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements]
            if constraints:
                listed = os.path.join(target, "constraints.txt")
                with open(listed, "w", encoding="utf-8") as handle:
                    handle.write("\n".join(constraints) + "\n")
                command += ["-c", listed]
            done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            if done.returncode != 0:
                raise AssertionError(f"cannot build the test environment {name}: pip said:\n{done.stderr[-3000:]}")
            open(marker, "w").close()
            prune(name, keep=target)
            return target
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise


def prune(name, keep):
    """Environments of this name built from other pins: superseded, and large."""
    for entry in os.listdir(cache_root()):
        path = os.path.join(cache_root(), entry)
        if entry.startswith(f"{name}-") and path != keep and os.path.isdir(path) and not entry.endswith(".lock"):
            shutil.rmtree(path, ignore_errors=True)
            try:
                os.remove(path + ".lock")
            except OSError:
                pass
