"""What a user gets outside this checkout: a wheel installed into a fresh environment, and the
template run by a plain cookiecutter that has only the packages the hooks' message names."""

import json
import os
import subprocess
import sys

import pytest

from jupyter_client.kernelspec import KernelSpecManager

from .conftest import PYTHON, ROOT, read_spec, venv_with_project_packages
from .environments import cached_environment, pinned, pinned_all
from .test_e2e import assert_smoke_passes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "test-output", "__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [built] = [name for name in os.listdir(out) if name.endswith(".whl")]
    assert built.startswith("pyspark_kernel_template-")  # the distribution name that is free on PyPI
    return out / built


def test_a_wheel_installed_outside_the_checkout_creates_a_kernel_that_passes_smoke(tmp_path, wheel):
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "pyspark_kernel/_template/cookiecutter.json" in names and "pyspark_kernel/runtime/watchdog.sh" in names
    assert "pyspark_kernel/_template/{{cookiecutter.kernel_name}}/pyspark_startup.py" in names
    # A fresh venv: the project's dependencies seen through a .pth file, this checkout nowhere.
    venv = venv_with_project_packages(tmp_path, ())
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", str(wheel)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    # Installed into a server's environment, it enables its Spark UI server extension there.
    enabling = json.loads((venv / "etc" / "jupyter" / "jupyter_server_config.d" / "pyspark-kernel.json").read_text())
    assert enabling == {"ServerApp": {"jpserver_extensions": {"pyspark_kernel.serverext": True}}}
    cli = str(venv / "bin" / "pyspark-kernel")
    kernels = tmp_path / "kernels"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    created = subprocess.run([cli, "create", "-k", "from-wheel", "-d", str(kernels), "-e", sys.prefix], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert created.returncode == 0, created.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import pyspark_kernel.kernelspec as k; print(k.TEMPLATE_ROOT)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv)) and where.stdout.strip().endswith("_template")  # not this checkout
    smoked = subprocess.run([cli, "smoke", "from-wheel", "-d", str(kernels)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert smoked.returncode == 0, smoked.stdout + smoked.stderr
    fork = subprocess.run([cli, "create", "-k", "from-fork", "-d", str(kernels), "-t", ROOT, "-e", sys.prefix], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert fork.returncode == 0, fork.stderr  # -t still points at a template of one's own


def test_a_plain_cookiecutter_with_the_packages_the_message_names_makes_a_kernel(tmp_path):
    from pyspark_kernel.hooks import HOOK_DEPENDENCIES

    env_dir = cached_environment("cookiecutter-only", pinned(["cookiecutter", *HOOK_DEPENDENCIES]), constraints=pinned_all())
    out = tmp_path / "kernels"
    done = subprocess.run([os.path.join(env_dir, "bin", "cookiecutter"), ROOT, "--no-input", "-o", str(out), "kernel_name=plain", f"venv_dir={sys.prefix}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    spec = read_spec(out / "plain")
    assert spec["argv"][0] == PYTHON and json.loads(spec["env"]["PYSPARK_KERNEL_SPARK_CONF"])["spark.master"] == "local[*]"
    # The default bake's smoke: every check, on Spark 4's local[*] (the only smoke of an unchanged
    # default spec; test_generation bakes the default with this checkout's cookiecutter).
    assert KernelSpecManager(kernel_dirs=[str(out)]).get_kernel_spec("plain").display_name == "PySpark (plain)"
    report = assert_smoke_passes("plain", out).stdout
    assert report.splitlines()[0].startswith("Spark 4") and "| master local[*] | app local-" in report, report
