"""The yarn profile on a live YARN and HDFS (tests/hadoop_cluster.py): a cluster on a host of its
own, whose containers see neither the kernel's environment nor the Python it was made from.

What each test reads back is the ResourceManager's own word (its REST API) and HDFS's (WebHDFS),
not the kernel's."""

import glob
import json
import os
import re
import secrets
import signal
import subprocess
import sys

import pytest

from pyspark_kernel.runtime import uiauth
from pyspark_kernel.runtime.uiauth import ROUTE_SUFFIX, TOKEN_PREFIX, YARN_FILTER

from .browser import chromium  # noqa: F401 - a fixture
from .conftest import CLEANUP_TIMEOUT, PYTHON, ROOT, assert_no_jvm_left, run_cli, serving_jupyter, venv_with_project_packages
from .kernels import Kernel, kernel_environment, wait_until
from .server_api import banner_link, http, request, run_over_websocket
from .test_jupyterhub import add_user, remove_user
from .test_ui_access import run_as

pytestmark = pytest.mark.e2e

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


PREFIX = "/user/x/"
TABS = ["jobs/", "stages/", "storage/", "environment/", "executors/", "SQL/"]
SCREENSHOTS = {where: os.path.join(ROOT, "test-output", f"spark-ui-yarn-executors-{where}.png") for where in ("server", "resourcemanager")}

# Run by another Unix user with the system's python3: the UI's port straight, and the kernel's route file.
PROBE = r"""
import json, sys, urllib.error, urllib.request

given = json.loads(sys.stdin.read())

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

found = {}
for path in given["paths"]:
    try:
        with urllib.request.build_opener(Stay()).open(given["ui"] + path, timeout=60) as answer:
            found[path] = [answer.status, "", answer.read().decode("utf-8", "replace")[:200]]
    except urllib.error.HTTPError as error:
        found[path] = [error.code, error.headers.get("Location") or "", error.read().decode("utf-8", "replace")[:200]]
try:
    open(given["route"]).read()
    found["route file"] = "read"
except OSError as error:
    found["route file"] = type(error).__name__
print(json.dumps(found))
"""


def test_a_yarn_kernels_ui_opens_on_every_tab_through_the_jupyter_server_and_the_resourcemanager_while_other_users_get_yarns_redirect(
        yarn_cluster, kernel_env, tmp_path, chromium):
    cluster = yarn_cluster.cluster
    data = tmp_path / "jupyter"
    env = {**os.environ, "HADOOP_CONF_DIR": cluster.conf_dir}
    env.pop("YARN_CONF_DIR", None)
    make_kernel_with_env(data / "kernels", "yarn-ui", env, "-e", str(kernel_env), "--profile", "yarn", *yarn_cluster.flags)
    runtime_dir = tmp_path / "runtime"
    other = f"yarnui{secrets.token_hex(3)}"
    kernel_id = None
    try:
        add_user(other)
        with serving_jupyter(tmp_path, data, base_url=PREFIX, env={"JUPYTERHUB_SERVICE_PREFIX": PREFIX}) as (base, token):
            origin = base[:-len(PREFIX.rstrip("/"))]
            kernel_id = json.loads(request(base, token, "POST", "/api/kernels", {"name": "yarn-ui"})[1])["id"]
            try:
                link = banner_link(run_over_websocket(base, token, kernel_id, "spark.range(10).count()", timeout=900))
                port = int(re.fullmatch(rf"{PREFIX}sparkui/(\d+)/jobs/", link).group(1))
                app = the_app(cluster, "yarn-ui")
                tracking = app["trackingUrl"]
                assert tracking == f"{cluster.rm}/proxy/{app['id']}/", app

                # The kernel left YARN's tracking URL, as its owner's alone, and no token: the gate is YARN's.
                [route] = glob.glob(str(runtime_dir / f"{TOKEN_PREFIX}{port}-*{ROUTE_SUFFIX}"))
                assert (oct(os.stat(route).st_mode & 0o777), open(route).read()) == ("0o600", tracking)
                assert not glob.glob(str(runtime_dir / f"{TOKEN_PREFIX}{port}-*.jws"))
                status = "".join(c.get("text", "") for _, c in run_over_websocket(base, token, kernel_id, "%spark status"))
                assert "UI access: YARN's" in status and f"| UI {link}\n" in status, status
                # YARN's filter in front of the kernel's stand-in, and no token filter.
                filters = "".join(c.get("text", "") for kind, c in run_over_websocket(base, token, kernel_id, "print(sc.getConf().get('spark.ui.filters'))")
                                  if kind == "stream").strip()
                assert filters == f"{YARN_FILTER},{YARN_FILTER}", filters
                waited = re.search(r"^ +([0-9.]+) s  waiting for YARN's web proxy$", status, re.M)
                print(f"\nwaited for YARN's filter after the SparkContext: {waited.group(1) if waited else '?'} s")

                # Every tab through the server; the pages' links stay under it, the REST API answers.
                ui = f"{origin}{PREFIX}sparkui/{port}/"
                for tab in ["", *TABS]:
                    status_code, _, page = http(ui + tab, token)
                    assert status_code == 200, f"{tab}: {status_code}\n{page[:500]}"
                    assert f'href="{PREFIX}sparkui/{port}/jobs/"' in page and f"setUIRoot('{PREFIX}sparkui/{port}')" in page, f"{tab}: links not under the server"
                    assert f'"/proxy/{app["id"]}' not in page, f"{tab}: a link to YARN's proxy path is left"
                status_code, _, listed = http(ui + "api/v1/applications", token)
                assert status_code == 200 and [a["id"] for a in json.loads(listed)] == [app["id"]], listed
                status_code, _, executors = http(f"{ui}api/v1/applications/{app['id']}/allexecutors", token)
                ids = sorted(e["id"] for e in json.loads(executors))
                assert status_code == 200 and "driver" in ids and len(ids) >= 2, executors

                # The Executors tab, drawn by the UI's JavaScript from the REST API, through the server and the RM's link.
                chromium.call("Page.enable")
                chromium.call("Page.navigate", url=f"{base}/api/status?token={token}")  # the token's cookie for the server
                chromium.wait_for("document.readyState === 'complete'", 60, "the server's page did not load")
                chromium.check_executors_tab(f"{ui}executors/", SCREENSHOTS["server"], "the Executors tab of a YARN kernel shows no executor through the server")
                chromium.check_executors_tab(f"{tracking}executors/", SCREENSHOTS["resourcemanager"], "the Executors tab shows no executor through YARN's tracking link")
                for tab in TABS:
                    status_code, _, page = http(tracking + tab)
                    assert status_code == 200 and f'href="/proxy/{app["id"]}/jobs/"' in page, f"{tab} through the RM: {status_code}"

                # Another user of this machine, straight at the port: YARN's redirect to the RM, never a page; the route file unreadable.
                tried = run_as(other, PROBE, {"ui": f"http://127.0.0.1:{port}/", "paths": ["jobs/", "environment/", "api/v1/applications", "static/webui.js"], "route": route})
                assert tried.returncode == 0, tried.stderr
                found = json.loads(tried.stdout)
                print(f"what {other} got: {json.dumps(found)}")
                assert found.pop("route file") == "PermissionError"
                for path, (code, location, _) in found.items():
                    assert code == 302 and location == f"{cluster.rm}/proxy/redirect/{app['id']}/{path}", (path, code, location)

                request(base, token, "DELETE", f"/api/kernels/{kernel_id}")
                kernel_id = None
                wait_until(lambda: not glob.glob(str(runtime_dir / f"{TOKEN_PREFIX}*")), 120, "the kernel left its UI route file")
                wait_until(lambda: cluster.app(app["id"])["state"] == "FINISHED", SHUTDOWN_WINDOW, f"{app['id']} is not FINISHED after the kernel's shutdown")
            finally:
                if kernel_id is not None:
                    request(base, token, "DELETE", f"/api/kernels/{kernel_id}")
    finally:
        remove_user(other)
    assert subprocess.run(["id", other], capture_output=True).returncode != 0, f"the user {other} is still there"
    assert_no_jvm_left("yarn-ui", timeout=CLEANUP_TIMEOUT)


# A driver whose UI has only the kernel's stand-in for YARN's filter, as before the application master registers.
BEFORE_REGISTRATION = r"""
import json, sys, urllib.error, urllib.request
from pyspark.sql import SparkSession

builder = SparkSession.builder.master("local[1]").config("spark.ui.port", "0")
for key, value in json.loads(sys.argv[1]).items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

found = {}
for path in ["jobs/", "environment/", "api/v1/applications"]:
    try:
        with urllib.request.build_opener(Stay()).open(spark.sparkContext.uiWebUrl + "/" + path, timeout=60) as answer:
            found[path] = [answer.status, ""]
    except urllib.error.HTTPError as error:
        found[path] = [error.code, error.headers.get("Location") or ""]
spark.stop()
print(json.dumps(found))
"""


def test_before_yarns_filter_arrives_the_kernels_stand_in_sends_everyone_but_the_resourcemanager_away(tmp_path):
    # A ResourceManager at an address no request here comes from (TEST-NET-1, never resolved).
    (tmp_path / "yarn-site.xml").write_text("<configuration><property><name>yarn.resourcemanager.hostname</name><value>192.0.2.1</value></property></configuration>")
    stand_in = uiauth.protect({}, "owner", "4.0.0", "yarn", {"HADOOP_CONF_DIR": str(tmp_path)}).settings
    done = subprocess.run([PYTHON, "-c", BEFORE_REGISTRATION, json.dumps(stand_in)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {path: [302, f"http://192.0.2.1:8088/cluster/{path}"] for path in ["jobs/", "environment/", "api/v1/applications"]}, found
