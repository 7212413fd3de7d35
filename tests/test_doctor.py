"""`pyspark-kernel doctor`: what would stop a kernel from starting on this machine, with the fix."""

import os

from .conftest import run_cli
from .test_clusters import create


def doctor(kernels_dir, name, **env):
    environ = {**os.environ, **env}
    return run_cli("doctor", name, "-d", str(kernels_dir), env=environ)


def test_a_healthy_local_kernel_has_no_problem(kernels_dir):
    create(kernels_dir, "fine")
    done = doctor(kernels_dir, "fine")
    assert done.returncode == 0, done.stdout
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["OK python", "OK spark_home", "OK py4j", "OK java", "OK pyspark", "OK master", "OK start_timeout", "fine"]
    assert "OK start_timeout: a start that hangs is given up after 600 s" in done.stdout
    assert "(Java 17" in done.stdout or "(Java 2" in done.stdout


def test_missing_java_is_a_problem_with_the_fix(kernels_dir):
    create(kernels_dir, "nojava", "--env", "JAVA_HOME=/nonexistent/jdk")
    done = doctor(kernels_dir, "nojava")
    assert done.returncode == 1
    assert "PROBLEM java: Java not found: JAVA_HOME is /nonexistent/jdk, which has no bin/java" in done.stdout
    assert done.stdout.splitlines()[-1] == "nojava: 1 problem(s)"


def test_yarn_needs_the_clusters_client_configuration(kernels_dir, tmp_path):
    create(kernels_dir, "yarn-k", "--profile", "yarn", "--executor_python", "/usr/bin/python3")
    done = doctor(kernels_dir, "yarn-k", HADOOP_CONF_DIR="", YARN_CONF_DIR="")
    assert done.returncode == 1 and "PROBLEM yarn: no HADOOP_CONF_DIR or YARN_CONF_DIR with a yarn-site.xml" in done.stdout
    (tmp_path / "hadoop").mkdir()
    (tmp_path / "hadoop" / "yarn-site.xml").write_text("<configuration/>")
    done = doctor(kernels_dir, "yarn-k", HADOOP_CONF_DIR=str(tmp_path / "hadoop"))
    assert done.returncode == 0 and f"OK yarn: {tmp_path / 'hadoop'}" in done.stdout


def test_kubernetes_needs_a_kubeconfig(kernels_dir, tmp_path):
    create(kernels_dir, "k8s-k", "--profile", "kubernetes", "--executor_python", "/usr/bin/python3")
    done = doctor(kernels_dir, "k8s-k", KUBECONFIG=str(tmp_path / "missing"))
    assert done.returncode == 1 and f"PROBLEM kubernetes: no kubeconfig at {tmp_path / 'missing'}" in done.stdout


def test_an_unreachable_standalone_master_is_a_problem(kernels_dir):
    from .conftest import free_port

    port = free_port()
    create(kernels_dir, "down", "--spark_master", f"spark://127.0.0.1:{port}")
    done = doctor(kernels_dir, "down")
    assert done.returncode == 1 and f"PROBLEM master: Spark master spark://127.0.0.1:{port} is unreachable: nothing listens on 127.0.0.1:{port}" in done.stdout


def test_a_moved_py4j_archive_is_a_problem(kernels_dir, spark_distribution, venv_without_pyspark, tmp_path):
    import shutil

    home = tmp_path / "spark"
    shutil.copytree(spark_distribution, home, symlinks=True)
    create(kernels_dir, "dist", "-e", str(venv_without_pyspark), "--spark_home", str(home))
    for archive in (home / "python" / "lib").glob("py4j-*-src.zip"):
        archive.rename(archive.with_name("py4j-0.0.1-src.zip"))
    done = doctor(kernels_dir, "dist")
    assert done.returncode == 1 and "PROBLEM py4j: missing from the kernel's PYTHONPATH: " in done.stdout and "Spark was upgraded or moved" in done.stdout
