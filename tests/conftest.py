"""Shared fixtures: an isolated Jupyter and cookiecutter home, kernel bakes, Spark layouts, JVM checks."""

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile

import psutil
import pytest

from pyspark_kernel.kernelspec import kernel_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pytest-cookies bakes in this process: the template's package must import from the checkout.
sys.path.insert(0, ROOT)

VENV_DIR = sys.prefix
PYTHON = os.path.join(VENV_DIR, "bin", "python")
CLI = os.path.join(VENV_DIR, "bin", "pyspark-kernel")
JVM_GONE_TIMEOUT = 60
# A JVM writing the class-data-sharing archive as it exits may take as long as the watchdog
# allows it (watchdog.sh: 900 checks of 0.2 s): on a loaded 2-core machine that is over a minute.
ARCHIVE_WRITE_TIMEOUT = 180
CLEANUP_TIMEOUT = 90  # the first JVM of a run writes the class-data-sharing archive as it exits
KERNEL_FILES = ["kernel.json", "logo-32x32.png", "logo-64x64.png", "pyspark_kernel_runtime", "pyspark_launch.py", "pyspark_startup.py"]
SCRATCH = tempfile.mkdtemp(prefix="pyspark-kernel-tests-")
# The JVMs of the tests' clusters (standalone daemons and executors; YARN's containers get the same
# from tests/hadoop_cluster/OneNodeCluster.java): seconds of work each, on 2 cores.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def pytest_configure(config):
    """Tests never touch the user's Jupyter kernels or cookiecutter replay files."""
    scratch = SCRATCH
    os.environ["JUPYTER_DATA_DIR"] = os.path.join(scratch, "jupyter-data")
    os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(scratch, "jupyter-runtime")
    os.environ["JUPYTER_CONFIG_DIR"] = os.path.join(scratch, "jupyter-config")
    # The suite's driver JVMs compile with C1 only: it starts about a hundred of them on 2 cores,
    # each for seconds of work, and C2's compiler threads are a third of such a driver's CPU
    # (measured: 18 s of CPU to start Spark and run two jobs, 12 s with C1 only), and the serial
    # collector: G1's concurrent threads cost such a driver another 0.3-0.8 s of CPU (8.1-8.2 s
    # instead of 8.4-9.0 to start and run two jobs). Only the tests set this: kernels themselves
    # keep the JVM's defaults. spark-submit passes SPARK_SUBMIT_OPTS to the driver JVM, as it
    # would a user's.
    os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    # Shared-driver tests other than the archive's own make their kernels --no-class_data_sharing: the
    # first shared driver of the run would otherwise write the Connect server's archive, 20-40 s of CPU.
    # The class-data-sharing archive (150 MB) is built once per test run, not in the user's cache:
    # the pytest-xdist workers share the one of the process that started them (it outlives them).
    # The user's own cache, as it was (pip's wheels: see user_pip_cache).
    os.environ.setdefault("PYSPARK_KERNEL_TEST_USER_CACHE", os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"))
    os.environ["XDG_CACHE_HOME"] = os.environ.get("PYSPARK_KERNEL_TEST_CACHE_HOME") or os.path.join(scratch, "cache")
    os.environ["PYSPARK_KERNEL_TEST_CACHE_HOME"] = os.environ["XDG_CACHE_HOME"]
    rc = os.path.join(scratch, "cookiecutterrc")
    with open(rc, "w", encoding="utf-8") as handle:
        handle.write(f"cookiecutters_dir: {json.dumps(os.path.join(scratch, 'cookiecutters'))}\n")
        handle.write(f"replay_dir: {json.dumps(os.path.join(scratch, 'replay'))}\n")
    os.environ["COOKIECUTTER_CONFIG"] = rc


# The longest end-to-end tests, longest first, run before the other end-to-end tests, and the fast
# tests last: the two xdist workers then finish together, short tests filling in, instead of one
# waiting on a long test that started last. xdist hands each worker two tests at the start (the
# first two to the first worker, and so on), so the longest start together.
CDS = "tests/test_runtime.py::test_class_data_sharing_archive_is_built_once_and_a_broken_one_is_set_aside_and_rebuilt"
LONGEST = ("tests/test_yarn", f"{CDS}[jdk17]", "tests/test_jupyterhub.py", f"{CDS}[jdk25]", "tests/test_runtime.py::test_a_kernel_whose_pyspark_was_removed",
           "tests/test_cache.py::test_after_kernels_of_deleted", "tests/test_paths.py", "tests/test_shared_driver.py", "tests/test_sessions.py::test_an_idle_session",
           "tests/test_runtime.py::test_new_spark_jars", "tests/test_ui_access.py", "tests/test_rpc_access.py",
           "tests/test_clusters.py::test_executors_on_a_host",
           "tests/test_packages.py::test_packages_reach", "tests/test_culling.py",
           "tests/test_clusters.py::test_kernels_of_one_spec", "tests/test_sessions.py::test_a_new_session_comes_after",
           "tests/test_spark_ui.py", "tests/test_jupyterlab.py", "tests/test_watchdog.py", "tests/test_matrix.py", "tests/test_runtime.py::test_progress_follows",
           "tests/test_sessions.py::test_a_master_that_is_down", "tests/test_e2e.py::test_spark_distribution_layout", "tests/test_limits.py",
           "tests/test_runtime.py::test_shutdown_restart", "tests/test_e2e.py::test_smoke_for_ci")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        found = next((index for index, prefix in enumerate(LONGEST) if item.nodeid.startswith(prefix)), len(LONGEST))
        return found if item.get_closest_marker("e2e") else len(LONGEST) + 1

    items.sort(key=rank)  # stable: the others keep pytest's order (module fixtures stay grouped)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """After a worker's last test on the live YARN cluster, stop the cluster (its daemons keep a
    few percent of a core busy): the YARN tests come first in the run (LONGEST), so a worker whose
    next test needs no cluster will get no other that does."""
    yield
    if "yarn_cluster" in item.fixturenames and (nextitem is None or "yarn_cluster" not in nextitem.fixturenames):
        for fixturedef in item._fixtureinfo.name2fixturedefs.get("yarn_cluster", ()):
            fixturedef.finish(item._request)  # its dependents (module fixtures) first, as pytest does


def pytest_unconfigure(config):
    shutil.rmtree(SCRATCH, ignore_errors=True)


def read_spec(kernel_dir):
    with open(os.path.join(kernel_dir, "kernel.json"), encoding="utf-8") as handle:
        return json.load(handle)


def kernel_env(spec):
    """kernel.json's env as the kernel receives it (jupyter_client turns $$ into $)."""
    return kernel_environment(spec["env"], {})


def spark_conf_of(spec):
    return json.loads(kernel_env(spec)["PYSPARK_KERNEL_SPARK_CONF"])


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([CLI, *with_warm_up(args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def with_warm_up(args):
    """Kernels the tests create run the JVM warm-up only, unless a test names its own warm_up: the
    Python warm-up's daemons and workers cost an idle kernel about 7 s of CPU, and the suite runs
    dozens of kernels on 2 cores. Its own tests (test_runtime, test_runtime_lifecycle) and the
    generation tests (the default: python) cover it."""
    if args[:1] == ("create",) and not any(str(arg).startswith("--warm_up") for arg in args):
        return ["create", "--warm_up", "jvm", *args[1:]]
    return list(args)


def tree_snapshot(path):
    """{relative path: bytes} of every file below ``path``."""
    found = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = handle.read()
    return found


def spark_jvms(app_name):
    """Live JVMs started for a Spark application of this name (spark-submit gets the conf)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "java" and f"spark.app.name={app_name}" in cmdline:
            found.append(proc)
    return found


def writes_archive(jvm):
    try:
        return any(arg.startswith("-XX:ArchiveClassesAtExit=") for arg in jvm.cmdline())
    except psutil.Error:  # it has just exited
        return False


def assert_no_jvm_left(app_name, timeout=JVM_GONE_TIMEOUT):
    started = time.monotonic()
    while spark_jvms(app_name):
        writing = any(writes_archive(jvm) for jvm in spark_jvms(app_name))
        timeout = max(timeout, ARCHIVE_WRITE_TIMEOUT) if writing else timeout
        if time.monotonic() > started + timeout:
            left = [p.pid for p in spark_jvms(app_name)]
            for proc in spark_jvms(app_name):
                proc.kill()
            pytest.fail(f"JVMs of Spark app {app_name} still running {timeout}s after the kernel stopped: {left}")
        time.sleep(0.2)


@pytest.fixture
def kernels_dir(tmp_path):
    path = tmp_path / "kernels"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def spark_distribution(tmp_path_factory):
    """A Spark distribution's layout (bin/, jars/, python/, python/lib/py4j-*-src.zip) made from
    the installed pyspark, as a downloaded Spark would have it."""
    import py4j
    import pyspark

    pip_home = os.path.dirname(pyspark.__file__)
    home = tmp_path_factory.mktemp("spark-dist") / "spark"
    (home / "python" / "lib").mkdir(parents=True)
    shutil.copytree(os.path.join(pip_home, "bin"), home / "bin")
    os.symlink(os.path.join(pip_home, "jars"), home / "jars")
    shutil.copytree(pip_home, home / "python" / "pyspark", ignore=shutil.ignore_patterns("jars", "bin", "sbin", "python", "__pycache__", "examples", "tests"))
    py4j_dir = os.path.dirname(py4j.__file__)
    version = importlib.metadata.version("py4j")
    with zipfile.ZipFile(home / "python" / "lib" / f"py4j-{version}-src.zip", "w") as archive:
        for root, _, files in os.walk(py4j_dir):
            for name in files:
                if not name.endswith(".pyc"):
                    full = os.path.join(root, name)
                    archive.write(full, os.path.relpath(full, os.path.dirname(py4j_dir)))
    (home / "RELEASE").write_text(f"Spark {pyspark.__version__} (layout built by the tests)\n")
    return home


def venv_with_project_packages(root, leave_out, copy=False, bytecode=False):
    """A virtual environment with this project's installed packages, except those whose names start
    with ``leave_out``: seen through a .pth file and symlinks, or (``copy``) hard-linked into its
    own site-packages, as a packer needs them (without their byte-code, which a packer leaves out,
    unless ``bytecode``: a kernel then starts without compiling its imports). No download."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target_site = next((venv / "lib").glob("python3*/site-packages"))
    shared = target_site if copy else root / "site"
    shared.mkdir(exist_ok=True)
    site = next(p for p in sys.path if p.startswith(VENV_DIR) and p.endswith("site-packages"))
    for entry in os.listdir(site):
        if entry.lower().startswith(("__editable__", "pyspark_kernel", *leave_out)):
            continue
        if not copy:
            os.symlink(os.path.join(site, entry), shared / entry)
        elif os.path.isdir(os.path.join(site, entry)):
            shutil.copytree(os.path.join(site, entry), shared / entry, copy_function=link_or_copy, ignore=None if bytecode else shutil.ignore_patterns("__pycache__"))
        else:
            link_or_copy(os.path.join(site, entry), shared / entry)
    if not copy:
        (target_site / "project-packages.pth").write_text(str(shared) + "\n")
    return venv


def user_pip_cache():
    """The environment of a pip command a test runs as a user would: with the user's pip cache (where
    make venv left pyspark's wheel), not the test run's empty one, from which pip would download it."""
    return {**os.environ, "PIP_CACHE_DIR": os.path.join(os.environ["PYSPARK_KERNEL_TEST_USER_CACHE"], "pip")}


def link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.fixture(scope="session")
def venv_without_pyspark(tmp_path_factory):
    """ipykernel without pyspark and py4j: a kernel environment that needs a Spark distribution."""
    return venv_with_project_packages(tmp_path_factory.mktemp("venv-no-pyspark"), ("pyspark", "py4j"))


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SERVICE_START_TIMEOUT = 120


def wait_for_service(ready, processes, failure):
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
            pytest.fail(failure)
        time.sleep(0.5)


def stop_process_group(process):
    """SIGTERM to the service's process group (its JVM and what it started), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_match(path, pattern):
    """The first match of ``pattern`` in a service's log, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return re.search(pattern, handle.read())
    except OSError:
        return None


# For kernels on the test's standalone worker (2 cores): one executor of both cores, not the
# standalone profile's two of one core each. One executor JVM (and one unpacked environment) fewer.
ONE_EXECUTOR = "--spark.executor.cores=2"


class Endpoint(str):
    """A service's URL, which tests pass on as it is, with the address of its web UI beside it, and
    for a cluster, the host it runs on (``host.gateway``: the address a driver here advertises to it)."""

    def __new__(cls, url, ui, host=None):
        endpoint = super().__new__(cls, url)
        endpoint.ui, endpoint.host = ui, host
        return endpoint


class Loopback:
    """This machine's loopback as a cluster's host, where a host of its own needs root that the
    tests lack: the same interface as tests/hadoop_cluster.py's Host."""

    name, gateway, address = "loopback", "127.0.0.1", "127.0.0.1"

    def command(self, argv, hide=()):
        if hide:
            pytest.skip("a cluster that cannot see the driver's files needs a mount namespace: root (CI runs as root)")
        return list(argv)


@contextlib.contextmanager
def cluster_host():
    """A host of its own for a test's cluster (a network namespace, tests/hadoop_cluster.py), as a
    notebook machine sees a cluster's; without root, this machine's loopback, with a warning."""
    if os.geteuid() != 0:
        warnings.warn("the standalone cluster runs on 127.0.0.1, not on a host of its own (a network namespace needs root; CI runs as root)", stacklevel=3)
        yield Loopback()
        return
    from .hadoop_cluster import network_host

    with network_host("pss") as host:
        yield host


@contextlib.contextmanager
def standalone(work, port=None, hide=(), properties=None, host=None):
    """A real Spark standalone master and one worker (2 cores) on a host of their own (``host``, or
    one made for them by cluster_host), from pip's pyspark, with their logs in ``work``; yields the
    master URL and stops both, even on failure. Ports the test does not name are chosen by Spark
    itself (0) and read from its log. ``hide``: directories the daemons and executors must not see,
    as on another host (each of them under an empty tmpfs; needs root). ``properties``: a Spark
    properties file both daemons read (--properties-file), e.g. the cluster's secret."""
    import http.client
    import urllib.request

    import pyspark

    home = os.path.dirname(pyspark.__file__)
    spark_class = os.path.join(home, "bin", "spark-class")
    daemons = []
    with contextlib.ExitStack() as stack:
        host = host or stack.enter_context(cluster_host())
        # SPARK_LOCAL_IP: the daemons, and the executors the worker starts, listen on the host's address only.
        # JAVA_TOOL_OPTIONS: the daemons and executors compile with C1 only, as the tests' drivers do
        # (SPARK_SUBMIT_OPTS), and collect with one thread.
        env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": host.address, "SPARK_LOG_DIR": str(work), "SPARK_NO_DAEMONIZE": "1",
               "JAVA_TOOL_OPTIONS": TEST_JVM_OPTIONS}

        def launch(name, *args):
            command = host.command([spark_class, *args, *(["--properties-file", str(properties)] if properties else [])], hide)
            with open(work / f"{name}.log", "wb") as log:
                daemons.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))

        try:
            launch("master", "org.apache.spark.deploy.master.Master", "--host", host.address, "--port", str(port or 0), "--webui-port", "0")
            found = {}

            def master_up():
                found["url"] = log_match(work / "master.log", rf"Starting Spark master at (spark://{re.escape(host.address)}:\d+)")
                found["ui"] = log_match(work / "master.log", r"MasterWebUI.* started at (http://[\w.]+:\d+)")
                return found["url"] and found["ui"]

            wait_for_service(master_up, daemons, f"the standalone master did not come up; see {work}/master.log")
            master, ui = found["url"].group(1), found["ui"].group(1)
            launch("worker", "org.apache.spark.deploy.worker.Worker", master, "--host", host.address, "--cores", "2", "--memory", "2g",
                   "--webui-port", "0", "--work-dir", str(work / "worker"))

            def workers_alive():
                try:
                    with urllib.request.urlopen(f"{ui}/json/", timeout=5) as page:
                        return json.load(page).get("aliveworkers", 0) >= 1
                except (OSError, http.client.HTTPException, ValueError):
                    return False

            wait_for_service(workers_alive, daemons, f"the standalone worker did not register; see {work}/master.log and worker.log")
            yield Endpoint(master, ui, host)
        finally:
            for daemon in reversed(daemons):  # the worker first: it stops its executors
                stop_process_group(daemon)


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    with standalone(tmp_path_factory.mktemp("standalone")) as master:
        yield master


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """A real Spark Connect server on 127.0.0.1 (sbin/start-connect-server.sh of pip's pyspark),
    its logs and pid file in a temporary directory."""
    import socket

    import pyspark

    home = os.path.dirname(pyspark.__file__)
    work = tmp_path_factory.mktemp("connect")
    port, ui_port = free_port(), free_port()
    env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(work), "SPARK_PID_DIR": str(work),
           "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": PYTHON}
    # Its JVM's temporary files in its directory: the server keeps a directory per session for its
    # ML models (spark_connect_model_cache) there, and leaves it.
    (work / "tmp").mkdir()
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            [os.path.join(home, "sbin", "start-connect-server.sh"), "--master", "local[2]", "--driver-java-options", f"-Djava.io.tmpdir={work / 'tmp'}",
             "--conf", "spark.connect.grpc.binding.address=127.0.0.1", "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1", "--conf", f"spark.ui.port={ui_port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for_service(listening, [server], f"the Spark Connect server did not come up; see {work}/server.log")
        yield Endpoint(f"sc://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}")  # its UI: what the server reports of each job
    finally:
        stop_process_group(server)


@pytest.fixture
def jupyter_server(tmp_path):
    """A real `jupyter server` on 127.0.0.1 with a token, whose JUPYTER_PATH holds a baked kernel
    named "served"; yields (base URL, token, its Jupyter data directory)."""
    data = tmp_path / "jupyter"
    assert run_cli("create", "-k", "served", "-d", str(data / "kernels"), "--display_name", "PySpark served").returncode == 0
    # JupyterLab's application object on the page (window.jupyterapp): a test can run its commands.
    with serving_jupyter(tmp_path, data, args=("--LabApp.expose_app_in_browser=True",)) as (base, token):
        yield base, token, data


@contextlib.contextmanager
def serving_jupyter(tmp_path, data, base_url="/", env=None, args=()):
    """A `jupyter server` of the project's environment, with the kernels under ``data``/kernels,
    at ``base_url``; yields (its URL, base_url included, and its token)."""
    import secrets
    import urllib.request

    token, port = secrets.token_hex(16), free_port()
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    env = {**os.environ, "JUPYTER_PATH": str(data), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), **(env or {})}
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [os.path.join(VENV_DIR, "bin", "jupyter"), "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0",
             f"--ServerApp.base_url={base_url}", *root_flag, *args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}{base_url.rstrip('/')}"

    def answers():
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as status:
                return status.status == 200
        except OSError:
            return False

    try:
        wait_for_service(answers, [server], f"the Jupyter server did not start; see {tmp_path}/server.log")
        yield base, token
    finally:
        stop_process_group(server)


def make_kernel(kernels_dir, name, *flags):
    done = run_cli("create", "-k", name, "-d", str(kernels_dir), *flags)
    assert done.returncode == 0, done.stderr


def assert_left_nothing(name, tmp_dir):
    from .kernels import wait_until

    assert_no_jvm_left(name, timeout=CLEANUP_TIMEOUT)
    wait_until(lambda: os.listdir(tmp_dir) == [], CLEANUP_TIMEOUT, f"kernel {name} left files in its TMPDIR: {os.listdir(tmp_dir)}")


@pytest.fixture
def start(kernels_dir, tmp_path):
    """start(name, *create_flags, edit=None, cwd=None, **env_changes) -> a running kernel with its own TMPDIR; stopped,
    and checked to have left no JVM and no file, after the test."""
    from .kernels import Kernel, kernel_environment

    started = []

    def run(name, *flags, edit=None, cwd=None, **env):
        make_kernel(kernels_dir, name, *flags)
        if edit:
            edit(kernels_dir / name / "kernel.json")
        tmp_dir = tmp_path / f"tmp-{name}"
        tmp_dir.mkdir()
        kernel = Kernel(kernels_dir, name, kernel_environment(tmp_dir, **env), cwd=cwd)
        started.append((kernel, name, tmp_dir))
        return kernel

    yield run
    for kernel, _name, _tmp_dir in started:
        kernel.stop()
    for _kernel, name, tmp_dir in started:
        assert_left_nothing(name, tmp_dir)


RPC_PROBE_SOURCE = os.path.join(ROOT, "tests", "rpc_probe", "RpcProbe.java")
RPC_PROBE_TIMEOUT = 300  # a JVM of the other user's, two connections with a minute's bound each, on a busy machine


@pytest.fixture(scope="session")
def probe():
    """Another Unix user's Spark client (tests/rpc_probe/RpcProbe.java, compiled once per worker for
    test_rpc_access and test_ui_access): probe(user, driver, block_manager, app_id, block_id, secret=None) -> the lines RpcProbe printed,
    run as ``user`` (driver and block manager: HOST:PORT, or a port on 127.0.0.1) with Spark's jars (hard links) and the class in a directory anyone can read."""
    import glob
    import pathlib

    import pyspark

    from .test_jupyterhub import as_user

    where = pathlib.Path(tempfile.mkdtemp(prefix="pyspark-kernel-rpc-probe-"))
    try:
        os.chmod(where, 0o755)
        jars = where / "jars"
        jars.mkdir(mode=0o755)
        for jar in glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*.jar")):
            link_or_copy(jar, jars / os.path.basename(jar))
            os.chmod(jars / os.path.basename(jar), 0o644)
        classes = where / "classes"
        if shutil.which("javac") is None:
            pytest.fail("no javac on PATH: the test compiles the other user's Spark client; install a JDK (apt-get install openjdk-17-jdk-headless)")
        built = subprocess.run(["javac", "-d", str(classes), "-cp", f"{jars}/*", RPC_PROBE_SOURCE], capture_output=True, text=True, timeout=RPC_PROBE_TIMEOUT)
        assert built.returncode == 0, built.stderr
        for path in [classes, *classes.iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        java = shutil.which("java")

        def run(user, driver, block_manager, app_id, block_id, secret=None):
            command = [java, "-cp", f"{classes}:{jars}/*", "RpcProbe", str(driver), str(block_manager), app_id, block_id]
            done = as_user(user, *([f"PROBE_SECRET={secret}"] if secret else []), *command, timeout=RPC_PROBE_TIMEOUT)
            lines = [line for line in done.stdout.splitlines() if line.startswith(("rpc ", "fetch "))]
            assert done.returncode == 0 and len(lines) == 2, done.stdout + done.stderr[-3000:]
            print(f"RpcProbe as {user}:", *lines, sep="\n  ")  # in the report of a failing test, or with -s
            return lines

        yield run
    finally:
        shutil.rmtree(where, ignore_errors=True)


class YarnCluster:
    """The session's live HDFS and YARN (tests/hadoop_cluster.py), and what its kernels share:
    ``envs``, where their environments go (hidden from the cluster, as is the base Python), and
    ``flags``, what a fork's yarn profile would set for this cluster beside HADOOP_CONF_DIR."""

    def __init__(self, cluster, envs):
        import pyspark

        self.cluster, self.envs = cluster, envs
        # Spark's jars where every node has them (a node's own Spark installation): not 460 MB
        # uploaded to HDFS for each application.
        jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
        self.flags = (f"--spark.yarn.jars=local:{jars}/*", "--spark.executor.memory=512m", "--spark.yarn.am.memory=512m",
                      "--spark.executor.cores=1", "--no-class_data_sharing")


@pytest.fixture(scope="session")
def yarn_cluster(tmp_path_factory):
    """A live one-node HDFS and YARN on a host of its own, for the session (needs root): one for
    each test worker that runs a YARN test (xdist's loadgroup would keep them on one worker, but
    pytest-xdist 3.8 cannot group under pytest 9, whose items ignore the node id it rewrites)."""
    if os.geteuid() != 0:
        pytest.skip("the live YARN cluster runs on a network namespace of its own: root (CI runs as root)")
    from .hadoop_cluster import hadoop_cluster

    work = tmp_path_factory.mktemp("yarn")
    envs = work / "kernel-envs"
    envs.mkdir()
    with hadoop_cluster(work, hide=[envs, sys.base_prefix]) as cluster:
        yield YarnCluster(cluster, envs)
