"""`pyspark-kernel doctor`: what would stop a kernel from starting on this machine, with the fix."""

import os
import re

import pytest

from .conftest import run_cli
from .test_clusters import create


def doctor(kernels_dir, name, **env):
    environ = {**os.environ, **env}
    return run_cli("doctor", name, "-d", str(kernels_dir), env=environ)


def test_a_healthy_local_kernel_has_no_problem(kernels_dir):
    create(kernels_dir, "fine")
    done = doctor(kernels_dir, "fine")
    assert done.returncode == 0, done.stdout
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["OK python", "OK spark_home", "OK py4j", "OK java", "OK pyspark", "OK runtime", "OK master", "OK rpc_auth",
                                                                         "OK server_environment", "OK spark_ui", "OK start_timeout", "OK idle_timeout", "OK limits", "OK cache", "fine"]
    assert "OK start_timeout: a start that hangs is given up after 600 s" in done.stdout
    assert "OK idle_timeout: the session is kept however long it is idle" in done.stdout  # local: off
    assert "(Java 17" in done.stdout or "(Java 2" in done.stdout
    assert "OK spark_ui: linked straight at the driver" in done.stdout
    assert "OK rpc_auth: on: the driver's RPC and block transfers need a secret Spark makes for each session" in done.stdout


def test_a_standalone_kernel_without_the_clusters_secret_is_a_problem(kernels_dir):
    create(kernels_dir, "open", "--profile", "standalone", "--executor_python", "/usr/bin/python3")
    done = doctor(kernels_dir, "open")
    assert "PROBLEM rpc_auth: off: the cluster has no secret configured" in done.stdout and "--spark.authenticate.secret '${env:SPARK_AUTH_SECRET}'" in done.stdout, done.stdout
    create(kernels_dir, "closed", "--profile", "standalone", "--executor_python", "/usr/bin/python3",
           "--spark.authenticate.secret=${env:SPARK_AUTH_SECRET}", "--env-from", "SPARK_AUTH_SECRET")
    done = doctor(kernels_dir, "closed", SPARK_AUTH_SECRET="s3cr3t-of-the-cluster")
    assert "OK rpc_auth: on: the driver's RPC and block transfers need the cluster's secret" in done.stdout, done.stdout
    assert "s3cr3t-of-the-cluster" not in done.stdout + done.stderr


def test_the_cache_and_a_bad_cache_limit_are_reported(kernels_dir, tmp_path):
    create(kernels_dir, "cached")
    cache_home = tmp_path / "cache"
    done = doctor(kernels_dir, "cached", XDG_CACHE_HOME=str(cache_home))
    assert f"OK cache: {cache_home / 'pyspark-kernel'} holds 0 B in 0 entries, limit 2.0 GiB (pyspark-kernel cache)" in done.stdout, done.stdout
    done = doctor(kernels_dir, "cached", XDG_CACHE_HOME=str(cache_home), PYSPARK_KERNEL_CACHE_LIMIT="lots")
    assert done.returncode == 1
    assert ("PROBLEM cache: PYSPARK_KERNEL_CACHE_LIMIT: 'lots' is not a size (write it in bytes or with K, M, G or T, for example 4G; "
            "until then kernels do not prune the cache)") in done.stdout, done.stdout


def test_the_spark_ui_link_through_the_server_needs_the_extension_enabled(kernels_dir, tmp_path):
    import json

    create(kernels_dir, "hubbed")
    done = doctor(kernels_dir, "hubbed", JUPYTERHUB_SERVICE_PREFIX="/user/ann/")
    assert "OK spark_ui: through the Jupyter server at /user/ann/sparkui/PORT/jobs/" in done.stdout, done.stdout
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {"pyspark_kernel.serverext": False}}}))
    done = doctor(kernels_dir, "hubbed", JUPYTERHUB_SERVICE_PREFIX="/user/ann/", JUPYTER_CONFIG_DIR=str(config), JUPYTER_PREFER_ENV_PATH="0")  # the user's config first
    assert done.returncode == 1
    assert ("PROBLEM spark_ui: the server extension pyspark_kernel.serverext is not enabled, so the link /user/ann/sparkui/PORT/ will not answer "
            "(jupyter server extension enable pyspark_kernel.serverext, then restart the server)") in done.stdout, done.stdout
    done = doctor(kernels_dir, "hubbed", PYSPARK_KERNEL_SERVER_URL="/user/a b/")
    assert "PROBLEM spark_ui: PYSPARK_KERNEL_SERVER_URL is '/user/a b/', not the Jupyter server's base URL" in done.stdout, done.stdout


def test_missing_java_is_a_problem_with_the_fix(kernels_dir):
    create(kernels_dir, "nojava", "--env", "JAVA_HOME=/nonexistent/jdk")
    done = doctor(kernels_dir, "nojava")
    assert done.returncode == 1
    assert "PROBLEM java: Java not found: JAVA_HOME is /nonexistent/jdk, which has no bin/java" in done.stdout
    assert done.stdout.splitlines()[-1] == "nojava: 1 problem(s)"


def test_yarn_needs_the_clusters_client_configuration(kernels_dir, tmp_path):
    from .conftest import free_port

    create(kernels_dir, "yarn-k", "--profile", "yarn", "--executor_python", "/usr/bin/python3")
    done = doctor(kernels_dir, "yarn-k", HADOOP_CONF_DIR="", YARN_CONF_DIR="")
    assert done.returncode == 1 and "PROBLEM yarn: no HADOOP_CONF_DIR or YARN_CONF_DIR with a yarn-site.xml" in done.stdout
    assert "resource_manager" not in done.stdout and "driver_address" not in done.stdout  # the one cause, said once
    (tmp_path / "hadoop").mkdir()
    (tmp_path / "hadoop" / "yarn-site.xml").write_text("<configuration/>")
    done = doctor(kernels_dir, "yarn-k", HADOOP_CONF_DIR=str(tmp_path / "hadoop"))
    assert done.returncode == 1 and f"OK yarn: {tmp_path / 'hadoop'}" in done.stdout
    assert f"PROBLEM resource_manager: yarn-site.xml in {tmp_path / 'hadoop'} names no ResourceManager (yarn.resourcemanager.hostname)" in done.stdout, done.stdout
    # A ResourceManager that does not answer (the live ones: test_yarn_doctor).
    port = free_port()
    (tmp_path / "hadoop" / "yarn-site.xml").write_text("<configuration><property><name>yarn.resourcemanager.hostname</name><value>127.0.0.1</value></property>"
                                                       f"<property><name>yarn.resourcemanager.webapp.address</name><value>127.0.0.1:{port}</value></property></configuration>")
    done = doctor(kernels_dir, "yarn-k", HADOOP_CONF_DIR=str(tmp_path / "hadoop"))
    assert (f"PROBLEM resource_manager: the ResourceManager does not answer: nothing listens on 127.0.0.1:{port} (start the cluster, or check that "
            f"{tmp_path / 'hadoop'} is its client configuration; from this machine: curl http://127.0.0.1:{port}/ws/v1/cluster/info)") in done.stdout, done.stdout
    assert "OK hdfs: the default file system is file:///, not HDFS: not checked" in done.stdout
    assert "OK driver_address: 127.0.0.1, the address this machine reaches the ResourceManager at 127.0.0.1:8032 from" in done.stdout
    assert re.search(r"^OK spark_jars: neither spark.yarn.archive nor spark.yarn.jars is set: every start uploads Spark's jars \(\d+ MiB\) to the cluster", done.stdout, re.M)


def test_create_notes_a_driver_address_the_kernel_cannot_choose(kernels_dir, tmp_path):
    done = run_cli("create", "-k", "no-conf", "-d", str(kernels_dir), "--profile", "yarn", "--executor_python", "/usr/bin/python3",
                   env={key: value for key, value in os.environ.items() if key not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR")})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ("NOTE: HADOOP_CONF_DIR: neither HADOOP_CONF_DIR nor YARN_CONF_DIR is set, so the ResourceManager's address is unknown "
                                   f"(pyspark-kernel create --force -k no-conf -d {kernels_dir} --env HADOOP_CONF_DIR=DIR, DIR holding the cluster's yarn-site.xml and core-site.xml)")
    (tmp_path / "hadoop").mkdir()
    (tmp_path / "hadoop" / "yarn-site.xml").write_text("<configuration><property><name>yarn.resourcemanager.hostname</name><value>rm.nowhere.invalid</value></property></configuration>")
    done = run_cli("create", "--force", "-k", "no-conf", "-d", str(kernels_dir), "--env", f"HADOOP_CONF_DIR={tmp_path / 'hadoop'}")  # the fix, as printed
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("NOTE: spark.driver.host: rm.nowhere.invalid does not resolve here"), done.stderr
    assert done.stderr.strip().endswith(f"(give the address of this machine that the cluster reaches: pyspark-kernel create --force -k no-conf -d {kernels_dir} "
                                        "--spark.driver.host=ADDRESS (it keeps the kernel's other settings))"), done.stderr
    done = run_cli("create", "--force", "-k", "no-conf", "-d", str(kernels_dir), "--spark.driver.host=10.1.2.3")  # that fix
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "OK driver_address: 10.1.2.3, as the kernel's spark.driver.host sets it" in doctor(kernels_dir, "no-conf").stdout
    done = run_cli("create", "-k", "local-k", "-d", str(kernels_dir))
    assert done.returncode == 0 and "NOTE" not in done.stderr


def test_create_force_keeps_the_variables_the_profile_took_from_the_shell(kernels_dir):
    """The yarn profile takes HADOOP_CONF_DIR from the generating shell; create --force from a shell
    without it keeps the kernel's, as upgrade does."""
    create(kernels_dir, "kept", "--profile", "yarn", "--executor_python", "/usr/bin/python3", HADOOP_CONF_DIR="/etc/hadoop/conf")
    spec = create(kernels_dir, "kept", "--force", "--spark.yarn.queue=etl")
    assert spec["env"]["HADOOP_CONF_DIR"] == "/etc/hadoop/conf"


@pytest.mark.parametrize("answer, expected", [
    # The Capacity Scheduler: queues under the root, with their paths.
    ({"type": "capacityScheduler", "queueName": "root", "queues": {"queue": [
        {"queueName": "default", "queuePath": "root.default", "state": "RUNNING"},
        {"queueName": "teams", "queuePath": "root.teams", "state": "RUNNING", "queues": {"queue": [{"queueName": "etl", "queuePath": "root.teams.etl", "state": "STOPPED"}]}}]}},
     [("root", "RUNNING", False), ("root.default", "RUNNING", True), ("root.teams", "RUNNING", False), ("root.teams.etl", "STOPPED", True)]),
    # Older answers: no queuePath, and a lone queue as an object.
    ({"type": "capacityScheduler", "queueName": "root", "queues": {"queue": {"queueName": "default", "state": "RUNNING"}}},
     [("root", "RUNNING", False), ("root.default", "RUNNING", True)]),
    # The Fair Scheduler: full names, childQueues.
    ({"type": "fairScheduler", "rootQueue": {"queueName": "root", "childQueues": {"queue": [{"queueName": "root.default"}, {"queueName": "root.adhoc"}]}}},
     [("root", "RUNNING", False), ("root.default", "RUNNING", True), ("root.adhoc", "RUNNING", True)]),
    ({"type": "fifoScheduler", "qstate": "RUNNING"}, [("root.default", "RUNNING", True)]),
])
def test_queues_are_read_from_each_schedulers_answer(answer, expected):
    from pyspark_kernel.cluster import queue_paths, short_name

    assert list(queue_paths(answer)) == expected
    assert (short_name("root.default"), short_name("root.teams.etl")) == ("default", "root.teams.etl")


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


def test_spark_variables_of_the_server_are_reported_and_overridden(kernels_dir):
    create(kernels_dir, "server-env")
    done = doctor(kernels_dir, "server-env", PYSPARK_SUBMIT_ARGS="--master yarn pyspark-shell", SPARK_CONF_DIR="/etc/spark")
    assert done.returncode == 0, done.stdout
    assert "OK server_environment: the Jupyter server sets PYSPARK_SUBMIT_ARGS, SPARK_CONF_DIR; kernel.json sets its own" in done.stdout


def test_an_older_kernel_that_inherits_the_servers_spark_variables_is_a_problem(kernels_dir):
    import json

    create(kernels_dir, "older")
    spec_path = kernels_dir / "older" / "kernel.json"
    spec = json.loads(spec_path.read_text())
    del spec["env"]["PYSPARK_SUBMIT_ARGS"]  # as kernels made before kernel.json set it
    spec_path.write_text(json.dumps(spec))
    done = doctor(kernels_dir, "older", PYSPARK_SUBMIT_ARGS="--master yarn pyspark-shell")
    assert done.returncode == 1
    assert "PROBLEM server_environment: the Jupyter server sets PYSPARK_SUBMIT_ARGS, which this kernel inherits" in done.stdout


@pytest.mark.parametrize("spark, java, problem, detail", [
    ("3.5.9", 8, None, "(Java 8)"), ("3.5.9", 11, None, "(Java 11)"), ("3.5.9", 21, None, "(Java 21)"),
    ("4.0.5", 11, "is Java 11; Spark 4.0.5 runs on Java 17, 21", None), ("4.3.0", 17, None, "(Java 17)"),
    ("4.3.0", 25, None, "(Java 25; Spark 4.3.0 documents Java 17, 21)"), ("3.5.9", 7, "is Java 7; Spark 3.5.9 runs on Java 8, 11, 17, 21", None),
])
def test_java_is_checked_against_the_versions_spark_documents(spark, java, problem, detail):
    from pyspark_kernel.doctor import java_check

    found = java_check("/jdk/bin/java", spark, lambda _: java)
    assert found.name == "java"
    if problem:
        assert problem in found.problem
    else:
        assert found.problem is None and found.text.endswith(detail)


def test_a_kernel_pyspark_kernel_did_not_make_is_one_clear_line(kernels_dir):
    import json
    import sys

    (kernels_dir / "plain").mkdir()
    (kernels_dir / "plain" / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                                                   "display_name": "Python 3", "language": "python"}))
    done = doctor(kernels_dir, "plain")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"ERROR: kernel: plain was not made by pyspark-kernel ({kernels_dir / 'plain'}) (see pyspark-kernel list for the kernels it made)\n"
