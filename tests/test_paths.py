"""Paths as users have them: a HOME, TMPDIR, kernels directory and environment directory with
spaces, '#', '%', a quote and non-ASCII letters. The kernel passes smoke on its first start, which
writes the class-data-sharing archive under that HOME, and on its second, which maps it."""

import glob
import os

import nbformat
import pytest

from .conftest import run_cli, venv_with_project_packages
from .kernels import wait_until

pytestmark = pytest.mark.e2e

AWKWARD = "Jane O'Doe #1 100% ü"


def test_a_home_with_spaces_and_symbols_starts_spark_twice_and_maps_its_archive(tmp_path):
    home = tmp_path / AWKWARD / "home"
    tmp_dir, kernels = home / "tmp dir", home / "Jupyter kernels"
    tmp_dir.mkdir(parents=True)
    venv = venv_with_project_packages(home / "my env", ())
    env = {**{k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}, "HOME": str(home), "TMPDIR": str(tmp_dir)}
    created = run_cli("create", "-k", "awkward", "-d", str(kernels), "-e", str(venv), env=env)
    assert created.returncode == 0, created.stderr
    first = run_cli("smoke", "awkward", "-d", str(kernels), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    store = home / ".cache" / "pyspark-kernel" / "cds"
    wait_until(lambda: glob.glob(str(store / "*.jsa")) and not glob.glob(str(store / "*.lock")), 120,
               f"the first start wrote no class-data-sharing archive under {store}")
    [archive] = glob.glob(str(store / "*.jsa"))
    # The second start, as a team's own smoke check: its JVM maps the archive the first one wrote.
    check = tmp_path / "maps-the-archive.ipynb"
    source = ("_args = [str(arg) for arg in spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()]\n"
              f"assert {'-XX:SharedArchiveFile=' + archive!r} in _args, _args\n"
              f"assert any(arg.startswith({'-Djava.io.tmpdir=' + str(tmp_dir)!r}) for arg in _args), _args\n"
              "print('the JVM maps the archive')")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"tags": ["check:maps_archive"]})]), check)
    second = run_cli("smoke", "awkward", "-d", str(kernels), "--notebook", str(check), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "PASS maps_archive: the JVM maps the archive" in second.stdout, second.stdout
    wait_until(lambda: os.listdir(tmp_dir) == [], 120, f"the kernel left files in its TMPDIR: {os.listdir(tmp_dir)}")
