"""The shared driver's parts that need no JVM: keys, settings, its directory, records, leases.

The lease tests run a stand-in for driver_server's socket (a real Unix socket, a thread): what
they check is the kernel's side of the protocol. tests/test_shared_driver.py runs the real server.
"""

import json
import os
import socket
import stat
import threading

import pytest

from pyspark_kernel.runtime import driverfiles, driverstart, shared
from pyspark_kernel.runtime.diagnostics import SparkStartError
from pyspark_kernel.runtime.options import read_conf, read_options


@pytest.mark.parametrize("key, session", [
    ("spark.sql.shuffle.partitions", True),
    ("spark.sql.ansi.enabled", True),
    ("spark.sql.warehouse.dir", False),
    ("spark.sql.extensions", False),
    ("spark.sql.hive.metastore.version", False),
    ("spark.driver.memory", False),
    ("spark.master", False),
    ("spark.executor.cores", False),
])
def test_a_setting_is_each_sessions_only_when_spark_connect_can_change_it(key, session):
    assert driverstart.session_setting(key) is session


def key_of(conf, **changes):
    facts = {"spark_version": "4.3.0", "spark_home": "/opt/spark", "java": "/usr/bin/java", "python": "/env/bin/python", **changes}
    return driverstart.server_key(facts["spark_version"], facts["spark_home"], facts["java"], facts["python"], conf)


BASE = {"spark.master": "local[*]", "spark.driver.memory": "2g"}


@pytest.mark.parametrize("what, other", [
    ("the app name", {**BASE, "spark.app.name": "another-kernel"}),
    ("the UI port chosen at start", {**BASE, "spark.ui.port": "4077", "spark.ui.proxyBase": "/user/ann/proxy/4077"}),
])
def test_kernels_that_differ_only_in_what_the_jvm_does_not_fix_share_a_key(what, other):
    assert key_of(BASE) == key_of(other), what


@pytest.mark.parametrize("what, conf, changes", [
    ("driver memory", {**BASE, "spark.driver.memory": "4g"}, {}),
    ("master", {**BASE, "spark.master": "local[2]"}, {}),
    ("Spark version", BASE, {"spark_version": "4.0.1"}),
    ("Java", BASE, {"java": "/opt/jdk21/bin/java"}),
    ("Python environment", BASE, {"python": "/other/bin/python"}),
])
def test_a_kernel_with_other_jvm_settings_gets_its_own_server(what, conf, changes):
    assert key_of(BASE) != key_of(conf, **changes), what


def test_the_directory_is_made_the_users_alone(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    found = driverstart.runtime_dir({"XDG_RUNTIME_DIR": str(runtime)})
    assert found == str(runtime / "pyspark-kernel")
    assert stat.S_IMODE(os.stat(found).st_mode) == 0o700


def test_a_directory_others_can_enter_is_refused(tmp_path):
    runtime = tmp_path / "run"
    (runtime / "pyspark-kernel").mkdir(parents=True)
    os.chmod(runtime / "pyspark-kernel", 0o755)
    with pytest.raises(SparkStartError, match=r"is not a directory of yours alone \(mode drwxr-xr-x\)"):
        driverstart.runtime_dir({"XDG_RUNTIME_DIR": str(runtime)})


def test_the_record_is_written_whole_and_readable_by_its_owner_only(tmp_path):
    paths = driverfiles.Paths(str(tmp_path), "k1")
    driverfiles.write_record(paths, {"key": "k1", "token": "t0ken"})
    assert stat.S_IMODE(os.stat(paths.record).st_mode) == 0o600
    assert driverfiles.read_record(paths.record) == {"format": driverfiles.RECORD_FORMAT, "key": "k1", "token": "t0ken"}
    assert os.listdir(tmp_path) == ["k1.json"]  # no partial file left


class FakeServer:
    """driver_server's socket protocol, on a real socket: attach keeps the connection, status answers."""

    def __init__(self, path):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.connections = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            request = json.loads(connection.makefile().readline())
            self.connections.append(connection)
            answer = {"attached": True} if "attach" in request else {"notebooks": [1, 2]}
            connection.sendall(json.dumps(answer).encode() + b"\n")

    def close_leases(self):
        for connection in self.connections:
            connection.close()
        self.listener.close()


def test_a_lease_is_taken_from_a_live_server_and_tells_when_it_is_gone(tmp_path):
    paths = driverfiles.Paths(str(tmp_path), "k2")
    driverfiles.write_record(paths, {"key": "k2", "spark_version": "4.3.0", "port": 15999, "token": "abc"})
    server = FakeServer(paths.socket)
    lease = shared.attach_to(paths, "4.3.0")
    assert lease is not None and lease.url == "sc://localhost:15999/;token=abc"
    assert lease.status() == {"notebooks": [1, 2]}
    lost = threading.Event()
    lease.watch(lost.set)
    server.close_leases()
    assert lost.wait(10), "the lease did not notice that the server closed it"


@pytest.mark.parametrize("what, record, serving", [
    ("no record", None, False),
    ("another Spark version", {"key": "k3", "spark_version": "4.0.1", "port": 1, "token": "t"}, True),
    ("a record its server did not remove: it died", {"key": "k3", "spark_version": "4.3.0", "port": 1, "token": "t"}, False),
    ("a record of another key", {"key": "other", "spark_version": "4.3.0", "port": 1, "token": "t"}, True),
])
def test_a_kernel_never_attaches_to_a_stale_or_foreign_server(tmp_path, what, record, serving):
    paths = driverfiles.Paths(str(tmp_path), "k3")
    if record:
        driverfiles.write_record(paths, record)
    if serving:
        FakeServer(paths.socket)
    assert shared.attach_to(paths, "4.3.0") is None, what


def test_the_lock_is_refused_clearly_while_another_holds_it(tmp_path):
    paths = driverfiles.Paths(str(tmp_path), "k4")
    with driverstart.Locked(paths, timeout=5):
        with pytest.raises(SparkStartError, match="another notebook has been starting the shared driver for 0 s"):
            with driverstart.Locked(paths, timeout=0):
                pass
    with driverstart.Locked(paths, timeout=0):  # released
        pass


def test_a_lock_file_removed_by_a_leaving_server_is_not_locked_twice(tmp_path):
    paths = driverfiles.Paths(str(tmp_path), "k5")
    with driverstart.Locked(paths, timeout=1) as held:
        held.remove()
        with driverstart.Locked(paths, timeout=0):  # the new file: not the removed one's holder
            assert os.path.exists(paths.lock)


PROPERTIES_READER = """
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
public class Read {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        properties.load(new InputStreamReader(new FileInputStream(args[0]), StandardCharsets.UTF_8));
        for (String key : new java.util.TreeSet<>(properties.stringPropertyNames())) {
            System.out.print(key + "\\u0000" + properties.getProperty(key) + "\\u0000");
        }
    }
}
"""


def test_the_servers_properties_file_reads_back_exactly_as_java_reads_it(tmp_path):
    import shutil
    import subprocess

    from pyspark_kernel.runtime.driver_server import properties_text

    settings = {"spark.a": " leading space", "spark.b": "back\\slash = colon: #hash !bang", "spark.c": "line\nbreak\ttab", "spark.d": "ünïcødé ✓",
                "spark.e": "", "spark.f": "trailing "}
    (tmp_path / "server.properties").write_text(properties_text(settings), encoding="utf-8")
    (tmp_path / "Read.java").write_text(PROPERTIES_READER)
    read = subprocess.run([shutil.which("java"), str(tmp_path / "Read.java"), str(tmp_path / "server.properties")], capture_output=True, timeout=120)
    assert read.returncode == 0, read.stderr
    parts = read.stdout.decode("utf-8").split("\0")[:-1]
    assert dict(zip(parts[::2], parts[1::2])) == settings


TRIM_SUPPORTED = [
    'JAVA_VERSION="17.0.9"', 'JAVA_VERSION="17.0.15"', 'JAVA_VERSION="21.0.1"', 'JAVA_VERSION="22"', 'JAVA_VERSION="25.0.1"',
    'IMPLEMENTOR="Eclipse Adoptium"\nJAVA_VERSION="21.0.4"\n',
]
TRIM_UNSUPPORTED = ['JAVA_VERSION="17.0.8"', 'JAVA_VERSION="17"', 'JAVA_VERSION="21"', 'JAVA_VERSION="19.0.2"', 'JAVA_VERSION="11.0.24"', "", "no version"]


@pytest.mark.parametrize("release", TRIM_SUPPORTED)
def test_a_jdk_that_has_native_heap_trimming_gets_it(release):
    from pyspark_kernel.runtime.driver_server import idle_java_options

    assert "-XX:TrimNativeHeapInterval=10000" in idle_java_options(release)


@pytest.mark.parametrize("release", TRIM_UNSUPPORTED)
def test_a_jdk_without_native_heap_trimming_is_not_given_the_flag_it_would_refuse(release):
    from pyspark_kernel.runtime.driver_server import idle_java_options

    options = idle_java_options(release)
    assert not any("TrimNativeHeap" in option for option in options) and "-XX:G1PeriodicGCInterval=10000" in options


def test_the_kernels_own_java_options_come_after_the_idle_ones_so_they_win(tmp_path):
    from pyspark_kernel.runtime.driver_server import server_settings

    conf = {"spark.driver.defaultJavaOptions": "-Dteam=1", "spark.driver.extraJavaOptions": "-XX:MaxHeapFreeRatio=70"}
    settings = server_settings(conf, str(tmp_path), 1, 2, "WARN", ["-XX:MaxHeapFreeRatio=20"])
    assert settings["spark.driver.defaultJavaOptions"] == f"-Dteam=1 -XX:MaxHeapFreeRatio=20 -Djava.io.tmpdir={tmp_path}"
    assert settings["spark.driver.extraJavaOptions"] == "-XX:MaxHeapFreeRatio=70"  # Spark puts these last: the JVM takes the last


def test_a_scratch_path_with_spaces_stays_one_java_option(tmp_path):
    import shlex

    from pyspark_kernel.runtime.driver_server import server_settings

    scratch = tmp_path / "a dir with spaces and ünïcødé" / "k.d"
    options = server_settings({}, str(scratch), 1, 2, "WARN", ["-XX:MaxHeapFreeRatio=20"])["spark.driver.defaultJavaOptions"]
    assert shlex.split(options) == ["-XX:MaxHeapFreeRatio=20", f"-Djava.io.tmpdir={scratch}"]  # as Spark's launcher splits them


def test_a_runtime_directory_too_deep_for_a_unix_socket_is_said_at_once(tmp_path):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    paths = driverfiles.Paths(str(deep), "0123456789abcdef0123")
    with pytest.raises(shared.SparkStartError) as raised:
        shared.attach(paths, {}, "4.3.0", {}, 5)
    assert raised.value.problem.startswith(f"the shared driver's socket {paths.socket} is ") and "more than a Unix socket's path may be" in raised.value.problem
    assert raised.value.fix == "set XDG_RUNTIME_DIR (or TMPDIR, when XDG_RUNTIME_DIR is unset) to a shorter directory of yours, then restart the kernel"
    assert not os.listdir(deep)  # nothing started, nothing left


# -- the launcher's start (driverstart.start_ahead), as far as it goes without a JVM


def launch_environment(run_dir, **options):
    import pyspark

    return {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(run_dir), "SPARK_HOME": os.path.dirname(pyspark.__file__),
            "PYSPARK_KERNEL_OPTIONS": json.dumps(options), "PYSPARK_KERNEL_SPARK_CONF": json.dumps({"spark.master": "local[*]"})}


def test_the_launcher_reads_pysparks_version_as_the_runtime_imports_it():
    import pyspark

    assert driverstart.installed_pyspark_version() == pyspark.__version__


@pytest.mark.parametrize("options", [{"spark_driver": "dedicated"}, {"spark_driver": "shared", "init": "lazy"}])
def test_the_launcher_starts_no_driver_for_a_dedicated_or_a_lazy_kernel(tmp_path, options):
    driverstart.start_ahead(launch_environment(tmp_path, **options))
    assert driverstart.AHEAD == {} and os.listdir(tmp_path) == []


def test_the_launcher_starts_nothing_while_another_notebook_starts_its_driver(tmp_path):
    import pyspark

    environ = launch_environment(tmp_path, spark_driver="shared")
    conf = read_conf(environ)
    plan = driverstart.Plan(environ, conf, dict(conf), read_options(environ), pyspark.__version__)
    with driverstart.Locked(plan.paths, 5):
        driverstart.start_ahead(environ)
        assert driverstart.AHEAD == {}
        assert sorted(os.listdir(plan.paths.directory)) == [f"{plan.paths.key}.lock"]  # no log: no keeper started


def test_the_runtime_takes_its_own_keys_start_and_lets_any_other_go(tmp_path):
    held = {key: driverstart.Locked(driverfiles.Paths(str(tmp_path), key), 0).__enter__() for key in ("mine", "other")}
    driverstart.AHEAD.update({key: driverstart.Ahead(lock, None, 0.0) for key, lock in held.items()})
    try:
        assert driverstart.take_ahead("mine").lock is held["mine"] and driverstart.AHEAD == {}
        with driverstart.Locked(driverfiles.Paths(str(tmp_path), "other"), 0):  # let go: free
            with pytest.raises(SparkStartError):
                driverstart.Locked(driverfiles.Paths(str(tmp_path), "mine"), 0).__enter__()  # still the runtime's
    finally:
        driverstart.AHEAD.clear()
        held["mine"].__exit__()
