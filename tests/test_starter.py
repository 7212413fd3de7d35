"""The kernel starter's parts that need no kernel: which launches a starter may fork, and where it
listens. tests/test_shared_driver.py runs the real launcher, starter and forked kernels."""

import os
import shutil
import socket
import sys
import tempfile

import pytest

from pyspark_kernel.runtime import spare, starter
from pyspark_kernel.runtime.driverstart import runtime_dir

from .conftest import ROOT


@pytest.fixture
def kernel_dir(tmp_path):
    kernel = tmp_path / "kernel"
    shutil.copytree(os.path.join(ROOT, "pyspark_kernel", "runtime"), kernel / "pyspark_kernel_runtime", ignore=shutil.ignore_patterns("__pycache__"))
    (kernel / "kernel.json").write_text("{}")
    return str(kernel)


ENVIRON = {"PATH": "/usr/bin", "SPARK_HOME": "/opt/spark", "PYTHONPATH": "", "JPY_SESSION_NAME": "a.ipynb", "JPY_PARENT_PID": "10"}


def test_launches_that_differ_only_in_what_jupyter_gives_each_kernel_share_a_starter(kernel_dir):
    before = starter.fingerprint(ENVIRON, kernel_dir)
    # Each launch its own session name and parent; a name set empty is unset (the runtime unsets it).
    assert starter.fingerprint({**ENVIRON, "JPY_SESSION_NAME": "b.ipynb", "JPY_PARENT_PID": "11", "SPARK_CONF_DIR": ""}, kernel_dir) == before
    assert starter.fingerprint({name: value for name, value in ENVIRON.items() if value}, kernel_dir) == before


@pytest.mark.parametrize("change", ["a variable", "kernel.json", "a runtime file", "a sys.path directory"])
def test_a_launch_is_not_forked_from_modules_older_than_its_environment(kernel_dir, tmp_path, monkeypatch, change):
    directory = tmp_path / "site-packages"
    directory.mkdir()
    monkeypatch.setattr(sys, "path", [kernel_dir, *sys.path[1:], str(directory)])
    before = starter.fingerprint(ENVIRON, kernel_dir)
    environ = dict(ENVIRON)
    if change == "a variable":
        environ["SPARK_HOME"] = "/opt/other-spark"
    elif change == "kernel.json":
        os.utime(os.path.join(kernel_dir, "kernel.json"), ns=(1, 1))
    elif change == "a runtime file":  # an upgrade
        os.utime(os.path.join(kernel_dir, "pyspark_kernel_runtime", "session.py"), ns=(1, 1))
    else:  # what %pip install does to site-packages
        (directory / "newly_installed-1.0.dist-info").mkdir()
        os.utime(directory, ns=(1, 1))
    assert starter.fingerprint(environ, kernel_dir) != before


@pytest.fixture
def short_dir():
    """A directory whose path leaves room for a Unix socket's (pytest's own may not)."""
    path = tempfile.mkdtemp(prefix="pk-")
    yield path
    shutil.rmtree(path)


def test_the_starters_socket_is_in_the_users_own_directory_and_none_where_others_could_reach(kernel_dir, short_dir, tmp_path):
    environ = {**ENVIRON, "XDG_RUNTIME_DIR": short_dir}
    path = starter.socket_path(environ, kernel_dir)
    assert os.path.dirname(path) == runtime_dir(environ) and os.path.basename(path) == f"k-{starter.fingerprint(environ, kernel_dir)}.sock"
    os.chmod(os.path.dirname(path), 0o755)
    assert starter.socket_path(environ, kernel_dir) is None  # the kernel starts itself, forked by no one
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    assert starter.socket_path({**ENVIRON, "XDG_RUNTIME_DIR": str(deep)}, kernel_dir) is None  # too long for a Unix socket


def test_a_launch_hands_over_only_to_a_starter_of_its_own_user(tmp_path, monkeypatch):
    path = str(tmp_path / "k.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    pid = os.fork()
    if pid == 0:  # another user's starter, as far as the launcher can tell
        try:
            connection, _ = listener.accept()
            connection.recv(1)
        finally:
            os._exit(0)
    listener.close()
    try:
        other_uid = os.getuid() + 1
        monkeypatch.setattr(os, "getuid", lambda: other_uid)
        with pytest.raises(ValueError, match="not served by this user"):
            starter.hand_over(path, ["-f", "connection.json"])
    finally:
        monkeypatch.undo()
        os.waitpid(pid, 0)


def test_a_forked_kernel_takes_the_session_made_ahead_once_and_only_on_the_driver_it_was_made_on(monkeypatch):
    record = {"pid": 40, "port": 15002, "token": "secret", "key": "abc"}
    made = {"session": "4d7e5b1c-0b9e-4c41-9d5e-2f3a6c8b9e10", "keeper": 40, "key": "abc"}
    assert spare.url(record, made["session"]) == f"sc://localhost:15002/;token=secret;session_id={made['session']}"
    assert spare.url(record) == "sc://localhost:15002/;token=secret"
    for other in ({**record, "pid": 41}, {**record, "key": "abd"}):  # a driver started since, or another key's
        monkeypatch.setattr(starter, "SPARE", dict(made))
        assert starter.take_spare(other, other["key"]) is None and starter.SPARE == {}
    monkeypatch.setattr(starter, "SPARE", dict(made))
    assert starter.take_spare(record, "abc") == made["session"]
    assert starter.take_spare(record, "abc") is None  # a restart's new session is a new one


def test_a_spare_session_is_made_only_on_the_record_of_the_starters_own_driver(tmp_path):
    path = tmp_path / "abc.json"
    path.write_text('{"format": 1, "pid": 40, "port": 15002, "token": "secret", "key": "abc"}')
    read, write = os.pipe()
    try:
        # Another keeper's record (a driver started since), or none: nothing is made, nothing written.
        assert spare.make(str(path), 41, write) == 1 and spare.make(str(tmp_path / "gone.json"), 40, write) == 1
        # A record of another format (another version's server): nothing either.
        other = tmp_path / "old.json"
        other.write_text('{"format": 0, "pid": 40, "port": 15002, "token": "secret", "key": "abc"}')
        assert spare.make(str(other), 40, write) == 1
        os.close(write)
        write = None
        assert os.read(read, 100) == b""
    finally:
        os.close(read)
        if write is not None:
            os.close(write)


def test_a_starter_replaces_a_stale_spare_session_and_retries_a_failed_one_only_after_a_while(monkeypatch):
    made = []
    host = starter.Starter("/nonexistent", "/nonexistent/k-x.sock", -1, -1, 40, "/nonexistent/abc.json")
    monkeypatch.setattr(host, "make_spare", lambda release=None: made.append(release))
    now = starter.time.monotonic()
    host.tried = now  # a helper just made none (a busy server): no new one at each turn of the loop
    host.check_spare()
    assert made == []
    host.tried = now - starter.RECHECK - 1
    host.check_spare()
    assert made == [None]
    host.spare = ({"session": "old-one", "keeper": 40, "key": "abc"}, now - spare.ROTATE - 1)  # nobody took it: before the server forgets it
    host.check_spare()
    assert made == [None, "old-one"] and host.spare is None
    host.spare = ({"session": "fresh", "keeper": 40, "key": "abc"}, now)
    host.check_spare()
    assert made == [None, "old-one"]
    host.selector.close()
    for fd in (host.wake_read, host.wake_write):
        os.close(fd)
