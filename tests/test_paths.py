"""Paths as users have them: a HOME, TMPDIR, kernels directory and environment directory with
spaces, '#', '%', a quote and non-ASCII letters. The kernel passes smoke on its first start, which
writes the class-data-sharing archive under that HOME, and on its second, which maps it."""

import glob
import os

import pytest

from .conftest import assert_left_nothing, run_cli, spark_jvms, venv_with_project_packages
from .kernels import Kernel, wait_until

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
    kernel = Kernel(kernels, "awkward", env)
    try:
        assert kernel.run("spark.range(1000).count()").result == "1000"
        args = [arg for jvm in spark_jvms("awkward") for arg in jvm.cmdline()]
        assert f"-XX:SharedArchiveFile={archive}" in args and f"-Djava.io.tmpdir={tmp_dir}" in " ".join(args)
    finally:
        kernel.stop()
    assert_left_nothing("awkward", tmp_dir)
    second = run_cli("smoke", "awkward", "-d", str(kernels), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
