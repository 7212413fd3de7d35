"""Where and how kernels are installed: locations as `ipykernel install` has them, shareable or
private permissions whatever the umask, and two installs of one name racing."""

import json
import os
import shutil
import stat
import subprocess

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from .conftest import CLI, KERNEL_FILES, VENV_DIR, read_spec, run_cli


def modes(path):
    return {os.path.relpath(os.path.join(root, name), path): stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            for root, dirs, files in os.walk(path) for name in dirs + files}


def test_a_kernel_is_readable_by_all_and_writable_by_its_owner_whatever_the_umask(kernels_dir):
    done = subprocess.run([CLI, "create", "-k", "shared", "-d", str(kernels_dir)], capture_output=True, text=True,
                          preexec_fn=lambda: os.umask(0o077), timeout=120)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(kernels_dir / "shared").st_mode) == 0o755
    found = modes(kernels_dir / "shared")
    assert {mode for path, mode in found.items() if os.path.isdir(kernels_dir / "shared" / path)} == {0o755}  # the runtime package
    assert {mode for path, mode in found.items() if not os.path.isdir(kernels_dir / "shared" / path)} == {0o644}


def test_prefix_installs_where_jupyter_looks_for_that_prefix(tmp_path):
    done = run_cli("create", "-k", "in-prefix", "--prefix", str(tmp_path / "prefix"))
    assert done.returncode == 0, done.stderr
    kernels = tmp_path / "prefix" / "share" / "jupyter" / "kernels"
    assert sorted(os.listdir(kernels / "in-prefix")) == KERNEL_FILES
    assert "in-prefix" in KernelSpecManager(kernel_dirs=[str(kernels)]).find_kernel_specs()


def test_sys_prefix_installs_into_the_running_environment():
    target = os.path.join(VENV_DIR, "share", "jupyter", "kernels", "in-sys-prefix")
    try:
        done = run_cli("create", "-k", "in-sys-prefix", "--sys-prefix")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"Installed kernel in-sys-prefix in {target}"
        assert read_spec(target)["display_name"] == "PySpark (in-sys-prefix)"
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_one_place_at_a_time(kernels_dir):
    done = run_cli("create", "-k", "x", "-d", str(kernels_dir), "--user")
    assert done.returncode == 1 and done.stderr.startswith("ERROR: arguments: argument --user: not allowed with argument -d")


def test_an_unwritable_kernels_dir_says_how_to_install_instead(tmp_path):
    if os.geteuid() == 0:
        locked = "/proc/pyspark-kernel-cannot-write-here"  # root writes anywhere a mode allows
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
    done = run_cli("create", "-k", "x", "-d", str(locked))
    assert done.returncode == 1
    assert done.stderr.startswith(f"ERROR: kernels_dir: cannot write to {locked}") and "--user" in done.stderr


def test_two_creates_of_one_name_at_once_end_with_one_whole_kernel_and_one_error(kernels_dir):
    runs = [subprocess.Popen([CLI, "create", "-k", "race", "-d", str(kernels_dir), "--spark_master", f"local[{n}]"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    results = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
    assert sorted(code for _, _, code in results) == [0, 1], results
    error = next(err for _, err, code in results if code == 1)
    assert error.startswith("ERROR: kernel_name: a kernel named race ") and "--force" in error
    assert os.listdir(kernels_dir) == ["race"]  # no staging directory left
    assert sorted(os.listdir(kernels_dir / "race")) == KERNEL_FILES
    winner = next(out for out, _, code in results if code == 0)
    master = json.loads(read_spec(kernels_dir / "race")["env"]["PYSPARK_KERNEL_SPARK_CONF"])["spark.master"]
    assert winner.startswith("Installed kernel race") and master in ("local[1]", "local[2]")


def test_the_load_script_stops_its_busy_loops_and_keeps_the_exit_status(tmp_path):
    """make test-busy runs the suite beside CPU-bound loops; they must not outlive it."""
    import sys

    import psutil

    from .conftest import ROOT

    pids = tmp_path / "pids"
    list_loops = ("import os, psutil, sys\n"
                  "loops = [p.pid for p in psutil.Process(os.getppid()).children() if p.pid != os.getpid() and 'while :' in ' '.join(p.cmdline())]\n"
                  f"open({str(pids)!r}, 'w').write(' '.join(map(str, loops)))\n"
                  "sys.exit(3)\n")
    done = subprocess.run([os.path.join(ROOT, "tests", "beside_load.sh"), "2", sys.executable, "-c", list_loops], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "2 busy loops running" in done.stderr, done.stderr
    loops = [int(pid) for pid in pids.read_text().split()]
    assert len(loops) == 2
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in loops if psutil.pid_exists(pid)], timeout=10)
    assert alive == []


def test_create_leaves_no_rendered_hook_in_tmpdir(tmp_path, kernels_dir):
    """Cookiecutter writes each hook, with the whole context, to $TMPDIR and never deletes it."""
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    done = run_cli("create", "-k", "tidy", "-d", str(kernels_dir), "--env", "TEAM_VALUE=visible-in-context",
                   env={**os.environ, "TMPDIR": str(tmp_dir)})
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp_dir) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_user_install_is_private_whatever_the_umask(tmp_path, umask):
    """--user (the default): nobody else can read the kernel (its env may name internal hosts),
    under the common umask 022 too; a shared install stays readable by all (the test above)."""
    data = tmp_path / "jupyter-data"
    done = subprocess.run([CLI, "create", "-k", "mine"], capture_output=True, text=True, preexec_fn=lambda: os.umask(umask), timeout=120,
                          env={**os.environ, "JUPYTER_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    kernel = data / "kernels" / "mine"
    found = modes(kernel)
    assert stat.S_IMODE(os.stat(kernel).st_mode) == 0o700
    assert {mode for path, mode in found.items() if os.path.isdir(kernel / path)} == {0o700}
    assert {mode for path, mode in found.items() if not os.path.isdir(kernel / path)} == {0o600}


def test_a_killed_creates_staging_directory_is_cleaned_by_the_next_create(kernels_dir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = kernels_dir / f".pyspark-kernel-staging-{dead.pid}-abc123"
    (stale / "half-made").mkdir(parents=True)
    running = kernels_dir / f".pyspark-kernel-staging-{os.getpid()}-def456"  # a create still running
    running.mkdir()
    done = run_cli("create", "-k", "after-crash", "-d", str(kernels_dir))
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and running.exists()
    assert sorted(os.listdir(kernels_dir)) == sorted(["after-crash", running.name])
