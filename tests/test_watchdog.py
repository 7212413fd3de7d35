"""The watchdog (watchdog.sh), on its own: it removes a kernel's scratch directory once the kernel
has exited, without /proc as on macOS, and takes an unreaped zombie for an exited kernel."""

import os
import shutil
import subprocess
import time

import pytest

from pyspark_kernel.runtime import jvm

from .kernels import wait_until

GONE_TIMEOUT = 30
WATCHDOG_CHECKS = 3  # seconds of the watchdog's 1 s checks, for the one thing a test must not see


def start_watchdog(kernel_pid, scratch, hide_proc=False):
    command = ["/bin/sh", jvm.WATCHDOG, str(kernel_pid), str(scratch)]
    if hide_proc:  # a mount namespace of its own, where /proc is an empty tmpfs
        command = ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh", *command]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("hide_proc", [False, pytest.param(True, marks=pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="hiding /proc needs root and unshare (CI runs as root)"))],
    ids=["with-proc", "without-proc"])
def test_the_scratch_directory_goes_only_after_the_kernel_exits(tmp_path, hide_proc):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "driver.log").write_text("log")
    kernel = subprocess.Popen(["sleep", "600"])
    watchdog = start_watchdog(kernel.pid, scratch, hide_proc)
    assert_acts_only_once_the_kernel_exits(kernel, watchdog, scratch)


def assert_acts_only_once_the_kernel_exits(kernel, watchdog, scratch, no_children=False):
    """The watchdog leaves the scratch directory while the kernel runs (and, with ``no_children``,
    runs no process meanwhile), then removes it once the kernel is killed."""
    try:
        time.sleep(WATCHDOG_CHECKS)  # not synchronisation: the watchdog must NOT act in this time
        assert scratch.exists() and watchdog.poll() is None, watchdog.stderr.read() if watchdog.poll() is not None else ""
        if no_children:
            children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(watchdog.pid)], capture_output=True, text=True).stdout.split()
            assert children == [], f"the waiting watchdog runs {children}: it should block on the pipe"
        kernel.kill()
        kernel.wait()
        wait_until(lambda: not scratch.exists(), GONE_TIMEOUT, "the watchdog did not remove the scratch directory after the kernel exited")
        assert watchdog.wait(GONE_TIMEOUT) == 0
    finally:
        kernel.kill()
        watchdog.kill()
        watchdog.wait()


def test_with_the_kernels_pipe_the_watchdog_acts_when_the_kernel_exits_and_starts_no_process_meanwhile(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    read_end, write_end = os.pipe()
    kernel = subprocess.Popen(["sleep", "600"], pass_fds=(write_end,))  # the only holder of the write end
    os.close(write_end)
    watchdog = subprocess.Popen(["/bin/sh", jvm.WATCHDOG, str(kernel.pid), str(scratch), "pipe"], stdin=read_end,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(read_end)
    assert_acts_only_once_the_kernel_exits(kernel, watchdog, scratch, no_children=True)


KERNEL_THAT_FORKS = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
from pyspark_kernel.runtime import jvm
jvm.start_watchdog(sys.argv[1])
child = os.fork()  # as multiprocessing's fork does: the child lives on after the kernel
if child == 0:
    read_end, write_end = os.pipe()  # may reuse the number of the pipe the child let go of
    grandchild = os.fork()
    if grandchild == 0:
        os.fstat(read_end), os.fstat(write_end)  # the grandchild's own pipe is left alone
        os._exit(0)
    status = os.waitpid(grandchild, 0)[1]
    print("grandchild", os.waitstatus_to_exitcode(status), flush=True)
    time.sleep(600)
    os._exit(0)
print("child", child, flush=True)
time.sleep(600)
"""


def test_a_killed_kernel_whose_forked_child_lives_on_is_cleaned_up_after(tmp_path):
    import signal
    import sys

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL_THAT_FORKS, str(scratch), root], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        lines = [kernel.stdout.readline().split() for _ in range(2)]
        child = int(dict(lines)["child"])
        assert dict(lines)["grandchild"] == "0", lines
        os.kill(kernel.pid, signal.SIGKILL)
        kernel.wait()
        wait_until(lambda: not scratch.exists(), GONE_TIMEOUT, "the watchdog waited for the kernel's forked child, which held its pipe")
    finally:
        kernel.kill()
        kernel.wait()
        if child is not None:
            os.kill(child, signal.SIGKILL)


def test_a_zombie_kernel_counts_as_exited(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    kernel = subprocess.Popen(["true"])  # exits at once; not reaped until kernel.wait()
    wait_until(lambda: open(f"/proc/{kernel.pid}/stat").read().split(") ")[1][0] == "Z", GONE_TIMEOUT, "the child did not become a zombie")
    watchdog = start_watchdog(kernel.pid, scratch)
    try:
        wait_until(lambda: not scratch.exists(), GONE_TIMEOUT, "the watchdog waited for a zombie")
    finally:
        kernel.wait()
        watchdog.kill()
        watchdog.wait()


def test_jvms_the_kernel_started_are_waited_for_then_killed(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    lingering = subprocess.Popen(["sleep", "600"])  # a JVM that does not exit with its kernel
    (scratch / "jvm.pids").write_text(f"{lingering.pid}\n")
    kernel = subprocess.Popen(["true"])
    kernel.wait()
    watchdog = start_watchdog(kernel.pid, scratch)
    try:
        assert lingering.wait(timeout=60) == -9  # after its grace period of 20 s
        wait_until(lambda: not scratch.exists(), GONE_TIMEOUT, "the scratch directory stayed")
    finally:
        lingering.kill()
        watchdog.kill()
        watchdog.wait()


KERNEL_THAT_RESTARTS = """
import os, sys
sys.path.insert(0, sys.argv[3])
registered = []
register = os.register_at_fork
os.register_at_fork = lambda **handlers: registered.append(handlers) or register(**handlers)
from pyspark_kernel.runtime import jvm
jvm.start_watchdog(sys.argv[1])
jvm.start_watchdog(sys.argv[2])  # a second watchdog in one process, as the unit tests start them
print(sum(handlers.get('after_in_child') is jvm.release_kernel_pipe for handlers in registered), flush=True)
"""


def test_the_fork_handler_that_lets_go_of_the_pipe_is_registered_once_a_process(tmp_path):
    import sys

    scratches = [tmp_path / "one", tmp_path / "two"]
    for scratch in scratches:
        scratch.mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", KERNEL_THAT_RESTARTS, *map(str, scratches), root], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    wait_until(lambda: not any(scratch.exists() for scratch in scratches), GONE_TIMEOUT, "a watchdog left its scratch directory")


@pytest.mark.parametrize("in_place", [False, True], ids=["jdk13-18", "jdk19+"])
def test_an_archive_written_whole_is_kept_with_its_size_and_a_half_written_one_never(tmp_path, in_place):
    cds = tmp_path / "cds"
    cds.mkdir()
    archive = cds / "spark-k.jsa"
    for finished in (False, True):
        scratch = tmp_path / f"scratch-{finished}"
        scratch.mkdir()
        written = archive if in_place else cds / "spark-k.jsa.1.partial"
        written.write_bytes(b"x" * 1000)
        (cds / "spark-k.jsa.lock").write_text("host 1\n")
        (scratch / "cds-training.log").write_text("[info][cds,dynamic] Written dynamic archive 0x1 - 0x2\n" if finished else "")
        facts = {"lock": cds / "spark-k.jsa.lock", "archive": archive, "log": scratch / "cds-training.log"}
        if not in_place:
            facts["partial"] = written
        (scratch / "cds-training.sh").write_text("".join(f"{name}='{value}'\n" for name, value in facts.items()))
        kernel = subprocess.Popen(["true"])
        kernel.wait()
        watchdog = start_watchdog(kernel.pid, scratch)
        assert watchdog.wait(timeout=GONE_TIMEOUT) == 0, watchdog.stderr.read()
        assert not scratch.exists() and not (cds / "spark-k.jsa.lock").exists()
        assert ((cds / "spark-k.jsa.size").read_text() if finished else None) == ("1000\n" if finished else None)
        assert archive.exists() == (finished or in_place) and not list(cds.glob("*.partial"))
        if not finished and in_place:  # the JVM was stopped writing it: no size, so no kernel maps it
            assert not (cds / "spark-k.jsa.size").exists()
