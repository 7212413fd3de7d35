"""`pyspark-kernel list` and `remove`, through jupyter_client's kernel paths."""

import os
import shutil
import subprocess
import sys

from .conftest import VENV_DIR, run_cli


def test_list_shows_our_kernels_and_what_is_missing(kernels_dir, tmp_path):
    assert run_cli("create", "-k", "alpha", "-d", str(kernels_dir), "--spark_master", "local[2]").returncode == 0
    venv = tmp_path / "gone-venv"
    shutil.copytree(VENV_DIR, venv, symlinks=True, ignore=shutil.ignore_patterns("lib"))  # a Python that will vanish
    os.symlink(os.path.join(VENV_DIR, "lib"), venv / "lib")
    assert run_cli("create", "-k", "beta", "-d", str(kernels_dir), "-e", str(venv)).returncode == 0
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp_path / "p"), "--name", "plain"], check=True, capture_output=True,
                   env={**os.environ, "TMPDIR": str(tmp_path)})  # ipykernel leaves its staging directory behind
    shutil.move(str(tmp_path / "p" / "share" / "jupyter" / "kernels" / "plain"), kernels_dir / "plain")  # not ours
    shutil.rmtree(venv)
    done = run_cli("list", "-d", str(kernels_dir))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DISPLAY", "NAME", "MASTER", "SPARK", "PYTHON", "STATE", "DIRECTORY"]
    assert [line.split()[0] for line in lines[1:]] == ["alpha", "beta"]
    assert "local[2]" in lines[1] and " ok " in lines[1]
    assert "Python missing" in lines[2]


def test_remove_takes_only_our_kernels(kernels_dir, tmp_path):
    assert run_cli("create", "-k", "gamma", "-d", str(kernels_dir)).returncode == 0
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp_path / "p"), "--name", "plain"], check=True, capture_output=True,
                   env={**os.environ, "TMPDIR": str(tmp_path)})  # ipykernel leaves its staging directory behind
    shutil.move(str(tmp_path / "p" / "share" / "jupyter" / "kernels" / "plain"), kernels_dir / "plain")
    done = run_cli("remove", "plain", "-d", str(kernels_dir))
    assert done.returncode == 1 and done.stderr.strip() == "ERROR: kernel: plain was not made by pyspark-kernel (remove it with jupyter kernelspec remove plain)"
    done = run_cli("remove", "gamma", "-d", str(kernels_dir))
    assert done.returncode == 0 and done.stdout.strip() == f"Removed kernel gamma from {kernels_dir / 'gamma'}"
    assert sorted(os.listdir(kernels_dir)) == ["plain"]
    assert run_cli("remove", "gamma", "-d", str(kernels_dir)).stderr.startswith("ERROR: kernel: no kernel named 'gamma'")
