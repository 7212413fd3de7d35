"""The yarn profile on a live YARN and HDFS (tests/hadoop_cluster.py): a cluster on a host of its
own, whose containers see neither the kernel's environment nor the Python it was made from.

What each test reads back is the ResourceManager's own word (its REST API) and HDFS's (WebHDFS),
not the kernel's."""

import os
import re
import signal
import sys

import pytest

from .conftest import CLEANUP_TIMEOUT, assert_no_jvm_left, run_cli, venv_with_project_packages
from .kernels import Kernel, kernel_environment, wait_until

# One worker runs them all, one after the other, on its one cluster (make test: --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("yarn")]

SHUTDOWN_WINDOW = 20  # seconds the watchdog gives a driver JVM to stop after its kernel is gone (watchdog.sh)
# Big packages no executor of these tests imports: a leaner environment to pack.
LEAN = ("jupyterlab", "jupyter_server", "notebook", "playwright", "pyarrow", "pandas", "numpy", "grpc", "babel", "hypothesis", "pytest",
        "jupyterhub", "sqlalchemy", "alembic", "pip", "tzdata", "pytz", "oauthlib")


@pytest.fixture(scope="module")
def kernel_env(yarn_cluster):
    """The kernels' environment, hidden from the cluster, with a package only it has."""
    venv = venv_with_project_packages(yarn_cluster.envs / "shipped", LEAN, copy=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "only_in_kernel_env").mkdir()
    (site / "only_in_kernel_env" / "__init__.py").write_text('WHERE = "shipped with the kernel"\n')
    return venv


def yarn_kernel(yarn_cluster, kernel_env, kernels_dir, tmp_path, name, *flags):
    """A kernel made with the yarn profile for the live cluster, started."""
    env = {**os.environ, "HADOOP_CONF_DIR": yarn_cluster.cluster.conf_dir}
    env.pop("YARN_CONF_DIR", None)
    make_kernel_with_env(kernels_dir, name, env, "-e", str(kernel_env), "--profile", "yarn", *yarn_cluster.flags, *flags)
    tmp_dir = tmp_path / f"tmp-{name}"
    tmp_dir.mkdir()
    return Kernel(kernels_dir, name, kernel_environment(tmp_dir, HADOOP_CONF_DIR=None, YARN_CONF_DIR=None)), tmp_dir


def make_kernel_with_env(kernels_dir, name, env, *flags):
    done = run_cli("create", "-k", name, "-d", str(kernels_dir), *flags, env=env)
    assert done.returncode == 0, done.stderr


def the_app(cluster, name):
    """The one application of this kernel the ResourceManager knows, newest last."""
    apps = cluster.apps(name)
    assert apps, f"the ResourceManager has no application named {name}"
    return apps[-1]


def test_a_yarn_kernel_through_its_applications_life(yarn_cluster, kernel_env, kernels_dir, tmp_path):
    """One kernel through a YARN application's life, each step as the ResourceManager and HDFS see
    it: the session starts on YARN; the executors run in the NodeManager's containers on the
    environment YARN localised from spark.archives; the notebook reads and writes hdfs:// paths;
    %spark status names the application and its tracking URL; an interrupt cancels the cell's jobs;
    dynamic allocation gives idle executors back; idle_timeout ends the application (FINISHED) and
    the next cell starts a new one; shutdown leaves no RUNNING application and no staging directory."""
    from .kernels import assert_interrupt_stops_a_minute_long_job

    cluster = yarn_cluster.cluster
    kernel, tmp_dir = yarn_kernel(yarn_cluster, kernel_env, kernels_dir, tmp_path, "yarn-life", "--idle_timeout", "20",
                                  "--spark.dynamicAllocation.executorIdleTimeout=3s", "--spark.dynamicAllocation.maxExecutors=2")
    try:
        first = kernel.run("print(sc.master, sc.applicationId)").stream
        assert re.search(r"^yarn application_\d+_\d+$", first, re.M), first
        app = the_app(cluster, "yarn-life")
        assert (app["state"], app["queue"]) == ("RUNNING", "root.default"), app

        # Neither the kernel's environment nor its base Python is on the cluster's host.
        where = kernel.run(
            "def _where(_):\n"
            "    import os, sys, only_in_kernel_env\n"
            "    return (sys.executable, os.environ.get('CONTAINER_ID', ''), only_in_kernel_env.WHERE,\n"
            f"            os.path.exists({str(kernel_env / 'bin' / 'python')!r}), os.path.exists({sys.base_prefix!r} + '/bin'))\n"
            "for found in sorted(set(sc.parallelize(range(4), 2).map(_where).collect())): print(*found, sep='|')")
        lines = where.stream.splitlines()
        assert lines, where.messages
        for line in lines:
            executable, container, module, env_seen, base_seen = line.split("|")
            assert executable.endswith("/environment/bin/python%d.%d-shipped" % sys.version_info[:2]) and "/usercache/" in executable, line
            assert container.startswith("container_") and module == "shipped with the kernel", line
            assert (env_seen, base_seen) == ("False", "False"), line

        # HDFS is the default file system: paths with and without the scheme.
        written = kernel.run("spark.range(1000).write.parquet('hdfs:///user/root/yarn-life/numbers')\n"
                             "print(spark.read.parquet('/user/root/yarn-life/numbers').count())")
        assert written.stream.strip() == "1000", written.messages
        assert any(name.startswith("part-") for name in cluster.hdfs_list("/user/root/yarn-life/numbers"))

        status = kernel.run("%spark status").text
        assert f"application: {app['id']}" in status, status
        assert f"tracking URL: {cluster.rm}/proxy/{app['id']}/" in status, status
        assert app["id"] in cluster.hdfs_list("/user/root/.sparkStaging"), "the running application has no staging directory"

        assert_interrupt_stops_a_minute_long_job(kernel, tmp_path / "markers")

        # Shuffle tracking keeps the executors that hold the last jobs' shuffle files while the
        # driver still references the shuffles; once its garbage collector has let them go (Spark's
        # cleaner removes them), the executors are idle: after 3 s, back to YARN.
        def given_back():
            kernel.evaluate("sc._jvm.System.gc()")
            return cluster.app(app["id"])["runningContainers"] == 1

        wait_until(given_back, 60, f"the idle executors were not given back: the ResourceManager shows {cluster.app(app['id'])['runningContainers']} containers, not the master's 1")

        # idle_timeout: 20 s after the last job the application ends.
        wait_until(lambda: cluster.app(app["id"])["state"] == "FINISHED", 60,
                   f"{app['id']} is {cluster.app(app['id'])['state']} 60 s after the last job, with idle_timeout=20")
        assert cluster.app(app["id"])["finalStatus"] == "SUCCEEDED"
        wait_until(lambda: app["id"] not in cluster.hdfs_list("/user/root/.sparkStaging"), SHUTDOWN_WINDOW, "the ended application's staging directory stayed in HDFS")
        again = kernel.run("print('APP', sc.applicationId, spark.range(3).count())")
        assert again.error is None, again.text
        second = next(line.split()[1] for line in again.stream.splitlines() if line.startswith("APP "))
        assert second != app["id"] and cluster.app(second)["state"] == "RUNNING"
        assert "idle_timeout" in again.stream
    finally:
        kernel.stop()
    wait_until(lambda: cluster.app(second)["state"] == "FINISHED", SHUTDOWN_WINDOW, f"{second} is not FINISHED after the kernel's shutdown: {cluster.app(second)}")
    assert cluster.app(second)["finalStatus"] == "SUCCEEDED"
    wait_until(lambda: second not in cluster.hdfs_list("/user/root/.sparkStaging"), SHUTDOWN_WINDOW, "the staging directory stayed in HDFS")
    assert_no_jvm_left("yarn-life", timeout=CLEANUP_TIMEOUT)
    wait_until(lambda: os.listdir(tmp_dir) == [], CLEANUP_TIMEOUT, f"the kernel left files in its TMPDIR: {os.listdir(tmp_dir)}")


def test_a_killed_yarn_kernel_leaves_no_running_application(yarn_cluster, kernel_env, kernels_dir, tmp_path):
    cluster = yarn_cluster.cluster
    kernel, _ = yarn_kernel(yarn_cluster, kernel_env, kernels_dir, tmp_path, "killed-on-yarn")
    try:
        assert kernel.run("print(sc.parallelize(range(10), 2).sum())").stream.splitlines()[-1] == "45"
        app = the_app(cluster, "killed-on-yarn")
        assert app["state"] == "RUNNING", app
        os.kill(kernel.manager.provisioner.process.pid, signal.SIGKILL)
        wait_until(lambda: cluster.app(app["id"])["state"] != "RUNNING", SHUTDOWN_WINDOW,
                   f"{app['id']} still RUNNING {SHUTDOWN_WINDOW} s after its kernel was killed")
        wait_until(lambda: app["id"] not in cluster.hdfs_list("/user/root/.sparkStaging"), SHUTDOWN_WINDOW, "the staging directory stayed in HDFS")
        assert not [other for other in cluster.apps() if other["state"] == "RUNNING" and other["name"] == "killed-on-yarn"]
    finally:
        kernel.stop(now=True)
    assert_no_jvm_left("killed-on-yarn", timeout=CLEANUP_TIMEOUT)
