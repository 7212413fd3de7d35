"""SPARK_HOME and py4j resolution for pip-installed pyspark and Spark distributions."""

import os
import sys

import pytest

from pyspark_kernel import environment, sparkhome
from pyspark_kernel.errors import InputError

from .conftest import VENV_DIR


@pytest.fixture(scope="module")
def project_env():
    return environment.find_environment(VENV_DIR)


def make_distribution(root, zips=("py4j-0.10.9.9-src.zip",), submit=True, version="3.5.1", python_requires=None):
    (root / "bin").mkdir(parents=True)
    if submit:
        (root / "bin" / "spark-submit").write_text("#!/bin/sh\n")
    (root / "python" / "pyspark").mkdir(parents=True)
    (root / "python" / "pyspark" / "__init__.py").write_text("")
    (root / "python" / "pyspark" / "version.py").write_text(f'__version__: str = "{version}"\n')
    (root / "python" / "lib").mkdir()
    if python_requires:
        (root / "python" / "setup.py").write_text(f'setup(name="pyspark", python_requires="{python_requires}")\n')
    for name in zips:
        (root / "python" / "lib" / name).write_bytes(b"PK")
    return root


def test_pip_pyspark_of_the_environment_is_found(project_env):
    import py4j  # noqa: F401
    import pyspark

    found = sparkhome.resolve("", project_env, environ={})
    assert found.layout == "pip"
    assert found.home == os.path.dirname(pyspark.__file__)
    assert found.spark_version == pyspark.__version__
    assert found.py4j_version == __import__("importlib.metadata").metadata.version("py4j")
    assert found.pythonpath == ()


def test_distribution_py4j_version_is_read_from_its_zip(tmp_path, project_env):
    home = make_distribution(tmp_path / "spark", zips=("py4j-0.10.9.7-src.zip",))
    found = sparkhome.resolve(str(home), project_env)
    assert (found.layout, found.spark_version, found.py4j_version) == ("distribution", "3.5.1", "0.10.9.7")
    assert found.pythonpath == (str(home / "python"), str(home / "python" / "lib" / "py4j-0.10.9.7-src.zip"))


def test_spark_home_from_the_environment_variable_when_the_venv_has_no_pyspark(tmp_path, venv_without_pyspark):
    home = make_distribution(tmp_path / "spark")
    bare = environment.find_environment(str(venv_without_pyspark))
    assert bare.pyspark is None
    assert sparkhome.resolve("", bare, environ={"SPARK_HOME": str(home)}).home == str(home)


@pytest.mark.parametrize("zips, words", [
    ((), "no py4j-*-src.zip"),
    (("py4j-0.10.9.7-src.zip", "py4j-0.10.9.9-src.zip"), "2 py4j archives"),
], ids=["no-py4j", "two-py4j"])
def test_py4j_must_be_exactly_one_archive(tmp_path, project_env, zips, words):
    home = make_distribution(tmp_path / "spark", zips=zips)
    with pytest.raises(InputError) as caught:
        sparkhome.resolve(str(home), project_env)
    assert caught.value.field == "spark_home" and words in str(caught.value)


def test_spark_home_without_spark_submit_is_refused(tmp_path, project_env):
    home = make_distribution(tmp_path / "spark", submit=False)
    with pytest.raises(InputError, match="has no bin/spark-submit"):
        sparkhome.resolve(str(home), project_env)


def test_no_spark_anywhere_says_how_to_get_one(venv_without_pyspark):
    bare = environment.find_environment(str(venv_without_pyspark))
    with pytest.raises(InputError) as caught:
        sparkhome.resolve("", bare, environ={})
    assert caught.value.field == "spark_home"
    assert "pip install pyspark" in caught.value.fix


def test_venv_without_ipykernel_is_refused(tmp_path):
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    with pytest.raises(InputError) as caught:
        environment.find_environment(str(tmp_path / "v"))
    assert caught.value.field == "venv_dir" and "has no ipykernel" in str(caught.value)
    assert "pip install ipykernel" in caught.value.fix


@pytest.mark.parametrize("make, words", [
    (lambda p: str(p / "missing"), "is not a directory"),
    (lambda p: (p / "file").write_text("x") and str(p / "file"), "is not a directory"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "has no bin/python"),
], ids=["missing", "a-file", "no-python"])
def test_venv_dir_that_is_not_an_environment_is_refused(tmp_path, make, words):
    with pytest.raises(InputError) as caught:
        environment.find_environment(make(tmp_path))
    assert caught.value.field == "venv_dir" and words in str(caught.value)


def test_a_python_the_spark_version_does_not_support_is_refused(tmp_path, project_env):
    home = make_distribution(tmp_path / "spark", python_requires=">=3.99")
    with pytest.raises(InputError) as caught:
        sparkhome.resolve(str(home), project_env)
    assert caught.value.field == "venv_dir"
    assert f"Python {project_env.python_version} is not one Spark 3.5.1 supports (>=3.99)" in str(caught.value)


def test_a_supported_python_passes(tmp_path, project_env):
    home = make_distribution(tmp_path / "spark", python_requires=">=3.9")
    assert sparkhome.resolve(str(home), project_env).layout == "distribution"
    assert project_env.pyspark_requires_python  # pip's pyspark declares it, and it was checked
