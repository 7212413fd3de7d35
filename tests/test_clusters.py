"""Cluster profiles: layering, the exact configuration YARN and Kubernetes kernels give Spark, and a
live Spark standalone cluster whose executors run the kernel's shipped environment."""

import ast
import json
import os

import pytest

from .conftest import assert_no_jvm_left, kernel_env, read_spec, run_cli, spark_conf_of, venv_with_project_packages
from .kernels import Kernel, kernel_environment

ENV_WITHOUT = {"HADOOP_CONF_DIR": None, "YARN_CONF_DIR": None, "YARN_QUEUE": None, "KUBECONFIG": None,
               "K8S_MASTER_URL": None, "SPARK_K8S_NAMESPACE": None, "SPARK_K8S_IMAGE": None, "SPARK_MASTER_URL": None}


def create(kernels_dir, name, *flags, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ENV_WITHOUT}
    environ.update({k: v for k, v in env.items() if v is not None})
    done = run_cli("create", "-k", name, "-d", str(kernels_dir), *flags, env=environ)
    assert done.returncode == 0, done.stderr
    return read_spec(kernels_dir / name)


def test_yarn_profile_gives_spark_exactly_this(kernels_dir):
    spec = create(kernels_dir, "on-yarn", "--profile", "yarn", "--executor_python", "/opt/venvs/etl/bin/python",
                  HADOOP_CONF_DIR="/etc/hadoop/conf", YARN_QUEUE="analytics")
    conf = spark_conf_of(spec)
    assert {k: v for k, v in conf.items() if k not in ("spark.ui.showConsoleProgress", "spark.sql.repl.eagerEval.enabled")} == {
        "spark.master": "yarn", "spark.app.name": "on-yarn", "spark.submit.deployMode": "client", "spark.yarn.queue": "analytics",
        "spark.executor.memory": "2g", "spark.executor.cores": "2", "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.maxExecutors": "10",
    }
    env = kernel_env(spec)
    assert env["HADOOP_CONF_DIR"] == "/etc/hadoop/conf" and "YARN_CONF_DIR" not in env
    assert env["PYSPARK_PYTHON"] == "/opt/venvs/etl/bin/python"  # executors' fixed Python: nothing packed
    assert "ship_environment" not in json.loads(env["PYSPARK_KERNEL_OPTIONS"])
    assert not (kernels_dir / "on-yarn" / "environment.tar.gz").exists()


def test_kubernetes_profile_gives_spark_exactly_this(kernels_dir):
    spec = create(kernels_dir, "on-k8s", "--profile", "kubernetes", "--executor_python", "/opt/conda/bin/python",
                  K8S_MASTER_URL="k8s://https://10.0.0.1:6443", SPARK_K8S_NAMESPACE="team-a", SPARK_K8S_IMAGE="registry.example/spark-py:4.3.0")
    conf = spark_conf_of(spec)
    assert conf["spark.master"] == "k8s://https://10.0.0.1:6443"
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == "team-a"
    assert conf["spark.kubernetes.container.image"] == "registry.example/spark-py:4.3.0"
    assert conf["spark.executor.instances"] == "2"
    assert kernel_env(spec)["PYSPARK_PYTHON"] == "/opt/conda/bin/python"


def test_layers_profile_then_spark_defaults_then_flags(kernels_dir, tmp_path):
    defaults = tmp_path / "spark-defaults.conf"
    defaults.write_text("# from the cluster\nspark.executor.memory 3g\nspark.yarn.queue=imported\nspark.eventLog.enabled true\n")
    spec = create(kernels_dir, "layered", "--profile", "yarn", "--from-spark-defaults", str(defaults), "--spark.yarn.queue", "flag",
                  "--executor_python", "/usr/bin/python3")
    conf = spark_conf_of(spec)
    assert conf["spark.executor.memory"] == "3g"  # spark-defaults.conf over the profile
    assert conf["spark.yarn.queue"] == "flag"  # a flag over both
    assert conf["spark.eventLog.enabled"] == "true"


def test_a_team_profile_file_can_include_a_base(kernels_dir, tmp_path):
    base = tmp_path / "base.conf"
    base.write_text('spark { master = "yarn", conf { "spark.executor.memory" = "8g", "spark.yarn.queue" = "base" } }\n')
    team = tmp_path / "team.conf"
    team.write_text('include "base.conf"\nspark.conf { "spark.yarn.queue" = "team" }\n')
    spec = create(kernels_dir, "team", "--profile", str(team), "--executor_python", "/usr/bin/python3")
    conf = spark_conf_of(spec)
    assert (conf["spark.master"], conf["spark.executor.memory"], conf["spark.yarn.queue"]) == ("yarn", "8g", "team")


def test_connect_profile_points_at_a_connect_server(kernels_dir):
    spec = create(kernels_dir, "on-connect", "--profile", "connect")
    assert spark_conf_of(spec)["spark.master"] == "sc://127.0.0.1:15002"


@pytest.mark.e2e
def test_standalone_executors_run_the_shipped_environment(kernels_dir, tmp_path, standalone_cluster):
    venv = venv_with_project_packages(tmp_path, (), copy=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "only_in_kernel_env").mkdir()
    (site / "only_in_kernel_env" / "__init__.py").write_text('WHERE = "shipped with the kernel"\n')
    create(kernels_dir, "on-standalone", "-e", str(venv), "--profile", "standalone", "--spark_master", standalone_cluster,
           "--spark.driver.host=127.0.0.1", "--spark.driver.bindAddress=127.0.0.1", "--spark.executor.memory=512m")
    assert (kernels_dir / "on-standalone" / "environment.tar.gz").stat().st_size > 0
    done = run_cli("smoke", "on-standalone", "-d", str(kernels_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    kernel = Kernel(kernels_dir, "on-standalone", kernel_environment(tmp_dir))
    try:
        found = kernel.run(
            "def _where(_):\n"
            "    import sys, only_in_kernel_env\n"
            "    return sys.executable, only_in_kernel_env.WHERE\n"
            "print(sorted(set(sc.parallelize(range(4), 2).map(_where).collect())))"
        )
        executables = ast.literal_eval(found.text.strip().splitlines()[-1])  # the list of tuples the cell printed
        assert executables and all(path.endswith("/environment/bin/python") and where == "shipped with the kernel" for path, where in executables), found.text
    finally:
        kernel.stop()
    assert_no_jvm_left("on-standalone")


@pytest.mark.e2e
def test_spark_connect_kernel_runs_the_smoke_notebook_without_a_local_jvm(kernels_dir, connect_server):
    spec = create(kernels_dir, "on-connect-live", "--profile", "connect", "--spark_master", connect_server, "--spark.sql.shuffle.partitions=5")
    env = kernel_env(spec)
    assert (env["SPARK_CONNECT_MODE_ENABLED"], env["SPARK_REMOTE"]) == ("1", connect_server)
    assert spark_conf_of(spec) == {"spark.master": connect_server, "spark.sql.repl.eagerEval.enabled": "true", "spark.sql.shuffle.partitions": "5"}
    done = run_cli("smoke", "on-connect-live", "-d", str(kernels_dir), env={**os.environ, "SPARK_CONNECT_TOKEN": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS master: Spark Connect session, no local JVM" in done.stdout
    assert done.stdout.splitlines()[0].startswith(f"Spark 4") and "Spark Connect" in done.stdout.splitlines()[0]
    assert_no_jvm_left("on-connect-live")


def test_a_token_in_the_connect_url_is_refused(kernels_dir):
    done = run_cli("create", "-k", "leaky", "-d", str(kernels_dir), "--spark_master", "sc://h:15002/;token=s3cr3t")
    assert done.returncode == 1 and done.stderr.startswith("ERROR: spark_master: has a token in it")
    assert os.listdir(kernels_dir) == []


@pytest.mark.e2e
def test_four_kernels_on_one_host_start_together(kernels_dir):
    """Four local[2] kernels started at once all pass their smoke notebooks, each with its own UI."""
    import re
    import subprocess

    from .conftest import CLI

    names = [f"many-{index}" for index in range(4)]
    for name in names:
        create(kernels_dir, name, "--spark_master", "local[2]")
    runs = [subprocess.Popen([CLI, "smoke", name, "-d", str(kernels_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for name in names]
    reports = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], reports
    ui = [re.search(r"\| UI (http://127\.0\.0\.1:\d+)", report).group(1) for report in reports]
    assert len(set(ui)) == 4, ui
    for name in names:
        assert_no_jvm_left(name)


def test_a_connect_kernel_needs_the_connect_client_in_its_environment(kernels_dir, tmp_path):
    venv = venv_with_project_packages(tmp_path, ("pandas", "pyarrow"))
    done = run_cli("create", "-k", "thin", "-d", str(kernels_dir), "-e", str(venv), "--profile", "connect")
    assert done.returncode == 1
    assert done.stderr.strip() == (f'ERROR: venv_dir: "{venv}" lacks the Spark Connect client\'s pandas, pyarrow '
                                   f"({venv / 'bin' / 'python'} -m pip install 'pyspark[connect]==4.3.0')")
    assert os.listdir(kernels_dir) == []


def test_an_environment_is_packed_once_per_version(tmp_path, monkeypatch):
    import subprocess
    import sys

    from pyspark_kernel.pack import cache_dir, pack_environment

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    venv = tmp_path / "small"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    first, second, third = (tmp_path / name for name in ("k1", "k2", "k3"))
    for kernel in (first, second, third):
        kernel.mkdir()
    pack_environment(str(venv), str(first))
    cached = {name: os.stat(os.path.join(cache_dir(), name)).st_mtime_ns for name in os.listdir(cache_dir())}
    pack_environment(str(venv), str(second))  # unchanged: the cached archive, not a new packing
    assert {name: os.stat(os.path.join(cache_dir(), name)).st_mtime_ns for name in os.listdir(cache_dir())} == cached
    assert (first / "environment.tar.gz").read_bytes() == (second / "environment.tar.gz").read_bytes()
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "new_module.py").write_text("X = 1\n")
    pack_environment(str(venv), str(third))  # changed: packed again
    assert len(os.listdir(cache_dir())) == 2
    import tarfile

    with tarfile.open(third / "environment.tar.gz") as archive:
        assert any(name.endswith("site-packages/new_module.py") for name in archive.getnames())


@pytest.mark.e2e
def test_a_client_only_pyspark_is_enough_for_spark_connect(kernels_dir, tmp_path, connect_server):
    """pyspark-client's layout: pyspark without pyspark.core, jars or bin/, and no py4j."""
    import shutil

    import pyspark

    venv = venv_with_project_packages(tmp_path, ("pyspark", "py4j"), copy=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    shutil.copytree(os.path.dirname(pyspark.__file__), site / "pyspark", ignore=shutil.ignore_patterns("jars", "bin", "sbin", "__pycache__"))
    shutil.rmtree(site / "pyspark" / "core")  # what pyspark-client leaves out: pyspark sees it runs remote-only
    spec = create(kernels_dir, "thin-client", "-e", str(venv), "--profile", "connect", "--spark_master", connect_server)
    assert spec["metadata"]["pyspark_kernel"]["spark_layout"] == "client"
    done = run_cli("smoke", "thin-client", "-d", str(kernels_dir))
    assert done.returncode == 0, done.stdout + done.stderr
