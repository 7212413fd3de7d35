"""Shared fixtures: an isolated Jupyter and cookiecutter home, kernel bakes, Spark layouts, JVM checks."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import psutil
import pytest

from pyspark_kernel.kernelspec import kernel_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pytest-cookies bakes in this process: the template's package must import from the checkout.
sys.path.insert(0, ROOT)

VENV_DIR = sys.prefix
PYTHON = os.path.join(VENV_DIR, "bin", "python")
CLI = os.path.join(VENV_DIR, "bin", "pyspark-kernel")
JVM_GONE_TIMEOUT = 60
KERNEL_FILES = ["kernel.json", "logo-32x32.png", "logo-64x64.png", "pyspark_kernel_runtime.py", "pyspark_startup.py"]
SCRATCH = tempfile.mkdtemp(prefix="pyspark-kernel-tests-")


def pytest_configure(config):
    """Tests never touch the user's Jupyter kernels or cookiecutter replay files."""
    scratch = SCRATCH
    os.environ["JUPYTER_DATA_DIR"] = os.path.join(scratch, "jupyter-data")
    os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(scratch, "jupyter-runtime")
    os.environ["JUPYTER_CONFIG_DIR"] = os.path.join(scratch, "jupyter-config")
    # The class-data-sharing archive (150 MB) is built once per test run, not in the user's cache.
    os.environ["XDG_CACHE_HOME"] = os.path.join(scratch, "cache")
    rc = os.path.join(scratch, "cookiecutterrc")
    with open(rc, "w", encoding="utf-8") as handle:
        handle.write(f"cookiecutters_dir: {json.dumps(os.path.join(scratch, 'cookiecutters'))}\n")
        handle.write(f"replay_dir: {json.dumps(os.path.join(scratch, 'replay'))}\n")
    os.environ["COOKIECUTTER_CONFIG"] = rc


def pytest_unconfigure(config):
    shutil.rmtree(SCRATCH, ignore_errors=True)


def read_spec(kernel_dir):
    with open(os.path.join(kernel_dir, "kernel.json"), encoding="utf-8") as handle:
        return json.load(handle)


def kernel_env(spec):
    """kernel.json's env as the kernel receives it (jupyter_client turns $$ into $)."""
    return kernel_environment(spec["env"], {})


def spark_conf_of(spec):
    return json.loads(kernel_env(spec)["PYSPARK_KERNEL_SPARK_CONF"])


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def tree_snapshot(path):
    """{relative path: bytes} of every file below ``path``."""
    found = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = handle.read()
    return found


def spark_jvms(app_name):
    """Live JVMs started for a Spark application of this name (spark-submit gets the conf)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "java" and f"spark.app.name={app_name}" in cmdline:
            found.append(proc)
    return found


def assert_no_jvm_left(app_name, timeout=JVM_GONE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while spark_jvms(app_name):
        if time.monotonic() > deadline:
            left = [p.pid for p in spark_jvms(app_name)]
            for proc in spark_jvms(app_name):
                proc.kill()
            pytest.fail(f"JVMs of Spark app {app_name} still running {timeout}s after the kernel stopped: {left}")
        time.sleep(0.2)


@pytest.fixture
def kernels_dir(tmp_path):
    path = tmp_path / "kernels"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def spark_distribution(tmp_path_factory):
    """A Spark distribution's layout (bin/, jars/, python/, python/lib/py4j-*-src.zip) made from
    the installed pyspark, as a downloaded Spark would have it."""
    import py4j
    import pyspark

    pip_home = os.path.dirname(pyspark.__file__)
    home = tmp_path_factory.mktemp("spark-dist") / "spark"
    (home / "python" / "lib").mkdir(parents=True)
    shutil.copytree(os.path.join(pip_home, "bin"), home / "bin")
    os.symlink(os.path.join(pip_home, "jars"), home / "jars")
    shutil.copytree(pip_home, home / "python" / "pyspark", ignore=shutil.ignore_patterns("jars", "bin", "sbin", "python", "__pycache__", "examples", "tests"))
    py4j_dir = os.path.dirname(py4j.__file__)
    version = importlib.metadata.version("py4j")
    with zipfile.ZipFile(home / "python" / "lib" / f"py4j-{version}-src.zip", "w") as archive:
        for root, _, files in os.walk(py4j_dir):
            for name in files:
                if not name.endswith(".pyc"):
                    full = os.path.join(root, name)
                    archive.write(full, os.path.relpath(full, os.path.dirname(py4j_dir)))
    (home / "RELEASE").write_text(f"Spark {pyspark.__version__} (layout built by the tests)\n")
    return home


def venv_with_project_packages(root, leave_out):
    """A virtual environment seeing this project's installed packages except those whose names
    start with ``leave_out``, through a .pth file and symlinks (no download)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shared = root / "site"
    shared.mkdir()
    site = next(p for p in sys.path if p.startswith(VENV_DIR) and p.endswith("site-packages"))
    for entry in os.listdir(site):
        if not entry.lower().startswith(("__editable__", "pyspark_kernel", *leave_out)):
            os.symlink(os.path.join(site, entry), shared / entry)
    target_site = next((venv / "lib").glob("python3*/site-packages"))
    (target_site / "project-packages.pth").write_text(str(shared) + "\n")
    return venv


@pytest.fixture(scope="session")
def venv_without_pyspark(tmp_path_factory):
    """ipykernel without pyspark and py4j: a kernel environment that needs a Spark distribution."""
    return venv_with_project_packages(tmp_path_factory.mktemp("venv-no-pyspark"), ("pyspark", "py4j"))
