"""Hostile and broken input, through every variable and flag of `pyspark-kernel create`.

Each case replaces an existing kernel (`-k victim --force`) or names a bad kernel, and must end
with exactly one line `ERROR: <field>: <problem> (<fix>)`, exit 1, nothing new in the kernels
directory and the existing kernel byte-identical."""

import os
import re
import subprocess
import sys

import pytest

from pyspark_kernel.cli import main

from .conftest import ROOT, tree_snapshot
from .test_sparkhome import make_distribution

V = ["-k", "victim", "--force"]  # would replace the existing kernel if the input were accepted


def cases(paths):
    bare_venv, a_file, two_py4j, no_py4j, future_python = paths
    return [
        # kernel_name
        ("kernel_name", ["-k", "a/b"]), ("kernel_name", ["-k", ".."]), ("kernel_name", ["-k", "."]),
        ("kernel_name", ["-k", "my kernel"]), ("kernel_name", ["-k", "Victim"]), ("kernel_name", ["-k", "ünï"]),
        ("kernel_name", ["-k", ""]), ("kernel_name", ["-k", "x" * 300]), ("kernel_name", ["-k", "a\nb"]),
        ("kernel_name", ["-k", "{{7*7}}"]), ("kernel_name", ["-k", "$(id)"]), ("kernel_name", ["-k", "../victim"]),
        ("kernel_name", ["-k", "victim"]),  # exists, and no --force
        # display_name
        ("display_name", [*V, "--display_name", ""]), ("display_name", [*V, "--display_name", "   "]),
        ("display_name", [*V, "--display_name", "a\x00b"]),
        # venv_dir
        ("venv_dir", [*V, "-e", "/nonexistent/venv"]), ("venv_dir", [*V, "-e", a_file]), ("venv_dir", [*V, "-e", ROOT]),
        ("venv_dir", [*V, "-e", bare_venv]), ("venv_dir", [*V, "-e", "/tmp/{connection_file}/venv"]), ("venv_dir", [*V, "-e", "/tmp/a\nb"]),
        # spark_home
        ("spark_home", [*V, "--spark_home", "/nonexistent/spark"]), ("spark_home", [*V, "--spark_home", ROOT]),
        ("spark_home", [*V, "--spark_home", two_py4j]), ("spark_home", [*V, "--spark_home", no_py4j]),
        ("spark_home", [*V, "--spark_home", "/opt/{prefix}/spark"]),
        ("venv_dir", [*V, "--spark_home", future_python]),  # this Python is not one that Spark supports
        # spark_master
        ("spark_master", [*V, "--spark_master", "locl[*]"]), ("spark_master", [*V, "--spark_master", "local[0]"]),
        ("spark_master", [*V, "--spark_master", "spark://"]), ("spark_master", [*V, "--spark_master", "spark://host"]),
        ("spark_master", [*V, "--spark_master", "yarn-client"]), ("spark_master", [*V, "--spark_master", "mesos://m:5050"]),
        ("spark_master", [*V, "--spark_master", "k8s://"]), ("spark_master", [*V, "--spark_master", "sc://h:abc"]),
        ("spark_master", [*V, "--spark_master", "local[*] ; rm -rf ~"]), ("spark_master", [*V, "--spark_master", "sc://h:1/;token=x"]),
        # spark_conf
        ("spark_conf", [*V, "--spark.", "x"]), ("spark_conf", [*V, "--spark..x", "1"]), ("spark_conf", [*V, "--spark.a b", "1"]),
        ("spark_conf", [*V, "--spark.app.name", ""]), ("spark_conf", [*V, "--spark.executor.memory", "4 gb"]),
        ("spark_conf", [*V, "--spark.driver.memory", "-1g"]), ("spark_conf", [*V, "--spark.master", "yarn"]),
        ("spark_conf", [*V, "--spark.hadoop.fs.s3a.secret.key", "AKIA-plain"]), ("spark_conf", [*V, "--spark.x", "a\x00b"]),
        ("spark_conf", [*V, "--spark.x"]), ("spark_conf", [*V, "--spark.a\"b", "1"]),
        # env
        ("env", [*V, "--env", "A=B=C", "--env", "X Y=1"]), ("env", [*V, "--env", "1X=1"]), ("env", [*V, "--env", "SPARK_HOME=/opt"]),
        ("env", [*V, "--env", "PYTHONPATH=/x"]), ("env", [*V, "--env", "X=a\x00b"]), ("env", [*V, "--env", "DB_PASSWORD=hunter2"]),
        ("env", [*V, "--env", "NOEQUALS"]), ("env_from", [*V, "--env-from", "A=B"]), ("env_from", [*V, "--env-from", "SPARK_HOME"]),
        # runtime options and profiles
        ("arguments", [*V, "--spark_init", "soon"]), ("arguments", [*V, "--log_level", "LOUD"]),
        ("start_timeout", [*V, "--start_timeout", "0"]), ("start_timeout", [*V, "--start_timeout", "abc"]),
        ("executor_python", [*V, "--executor_python", "relative/python"]), ("profile", [*V, "--profile", "nope"]),
        ("profile", [*V, "--profile", "../etc/passwd"]), ("spark_defaults", [*V, "--from-spark-defaults", "/nonexistent/spark-defaults.conf"]),
        # the command line itself
        ("arguments", [*V, "--no-such-flag"]), ("arguments", [*V, "-d"]), ("kernels_template_path", [*V, "-t", "/nonexistent/template"]),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    kernels = root / "kernels"
    assert main(["create", "-k", "victim", "-d", str(kernels)]) == 0
    bare = root / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    a_file = root / "a-file"
    a_file.write_text("not a directory")
    two = make_distribution(root / "two-py4j", zips=("py4j-0.10.9.7-src.zip", "py4j-0.10.9.9-src.zip"))
    none = make_distribution(root / "no-py4j", zips=())
    future = make_distribution(root / "future-python", python_requires=">=3.99")
    return kernels, (str(bare), str(a_file), str(two), str(none), str(future))


CASES = cases(("BARE", "FILE", "TWO", "NONE", "FUTURE"))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{field}-{i}" for i, (field, _) in enumerate(CASES)])
def test_hostile_input_is_one_error_line_and_changes_nothing(world, capfd, index):
    kernels, paths = world
    field, args = cases(paths)[index]
    before = tree_snapshot(kernels)
    capfd.readouterr()
    assert main(["create", "-d", str(kernels), *args]) == 1
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert re.fullmatch(rf"ERROR: {re.escape(field)}: .+ \(.+\)", err[0]), err[0]
    assert tree_snapshot(kernels) == before
    assert sorted(os.listdir(kernels)) == ["victim"]


def test_there_are_at_least_sixty_cases_across_every_variable():
    fields = {field for field, _ in CASES}
    assert len(CASES) >= 60
    assert {"kernel_name", "display_name", "venv_dir", "spark_home", "spark_master", "spark_conf", "env", "env_from",
            "start_timeout", "executor_python", "profile", "spark_defaults", "arguments", "kernels_template_path"} <= fields
