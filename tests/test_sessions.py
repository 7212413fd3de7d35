"""The notebook's session is the kernel's session, whatever the notebook does: its own builder as
the first cell, other entry points, spark.stop(), a JVM that dies, a master that is down at first,
%spark restart, an idle session stopped by idle_timeout, and papermill running a tutorial-style
notebook. Real kernels, real Spark."""

import ipaddress
import json
import os
import re
import signal
import subprocess

import nbformat
import pytest

from .conftest import ONE_EXECUTOR, PYTHON, VENV_DIR, cluster_host, free_port, make_kernel, spark_jvms, standalone
from .kernels import wait_until

pytestmark = pytest.mark.e2e

RUNTIME = '__import__("sys").modules["pyspark_kernel_runtime"].RUNTIME'
JVM_NOISE = re.compile(r"\b(WARN|INFO|ERROR)\b|log4j|Setting default log level|WARNING: Using incubator")
OWN_BUILDER = (
    "from pyspark.sql import SparkSession\n"
    "from pyspark import SparkContext\n"
    "spark = SparkSession.builder.appName('etl').getOrCreate()\n"
    f"print('SESSION', spark.conf.get('spark.sql.shuffle.partitions'), spark.sparkContext.master, spark.conf.get('spark.driver.host'),\n"
    f"      spark is {RUNTIME}.session, SparkContext._active_spark_context is spark.sparkContext)"
)
ETL_NOTICE = ("Using the kernel's Spark session; not applied, as they need a new driver: spark.app.name=etl "
              "(to apply them: %spark restart --conf spark.app.name=etl)")


def printed(cell, marker):
    """The words of the one line the cell printed that starts with ``marker``."""
    lines = [line.split()[1:] for line in cell.stream.splitlines() if line.startswith(marker + " ")]
    assert len(lines) == 1 and cell.error is None, cell.text
    return lines[0]


def jvm_pid(kernel):
    return int(kernel.run(f"print({RUNTIME}.driver.gateway.proc.pid)").stream.split()[-1])


@pytest.mark.parametrize("mode", ["background", "lazy", "eager"])
def test_a_first_cell_that_builds_its_own_session_gets_the_kernels(start, mode):
    name = f"own-{mode}"
    kernel = start(name, "--spark_init", mode)
    cell = kernel.run(OWN_BUILDER)  # sent as soon as the kernel answers: Run All on a saved notebook
    assert printed(cell, "SESSION") == ["8", "local[*]", "127.0.0.1", "True", "True"]
    assert ETL_NOTICE in cell.stream.splitlines()
    assert [line for line in cell.text.splitlines() if JVM_NOISE.search(line)] == []
    assert len(spark_jvms(name)) == 1  # no second SparkContext, no second JVM
    again = kernel.run(OWN_BUILDER)  # re-run out of order: the same session
    assert printed(again, "SESSION") == ["8", "local[*]", "127.0.0.1", "True", "True"]
    # A local driver serves nobody else: every port it listens on (RPC, block manager, UI, Py4J) is loopback's.
    listening = listening_addresses(jvm_pid(kernel))
    assert listening and all(ipaddress.ip_address(ip).is_loopback for ip, _ in listening), listening


def listening_addresses(pid):
    import psutil

    return sorted({(c.laddr.ip.removeprefix("::ffff:"), c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN})


def test_every_entry_point_gives_the_kernels_session_and_runtime_settings_apply(start):
    kernel = start("own-entry-points")
    cell = kernel.run(
        "from pyspark import SparkConf, SparkContext\n"
        "from pyspark.sql import SparkSession\n"
        "a = SparkContext.getOrCreate()\n"
        "b = SparkContext(conf=SparkConf().setMaster('local[1]'))\n"
        "c = SparkSession.getActiveSession()\n"
        "d = SparkSession.builder.master('local[2]').config('spark.sql.shuffle.partitions', '3').getOrCreate()\n"
        "print('SAME', a is sc, b is sc, c is spark, d is spark, spark.conf.get('spark.sql.shuffle.partitions'))"
    )
    assert printed(cell, "SAME") == ["True", "True", "True", "True", "3"]  # a runtime SQL setting is applied
    notices = [line for line in cell.stream.splitlines() if line.startswith("Using the kernel's Spark session")]
    assert len(notices) == 2 and "spark.master=local[1]" in notices[0] and "spark.master=local[2]" in notices[1], cell.stream
    pandas = kernel.run("import pyspark.pandas as ps\nprint('PANDAS', ps.range(3).to_spark().sparkSession is spark, len(ps.range(3)))")
    assert printed(pandas, "PANDAS") == ["True", "3"]
    assert len(spark_jvms("own-entry-points")) == 1


# The session starts in the background (the default) or at the builder's getOrCreate (lazy); an
# eager start is the background one, earlier, and its builder case runs on local[*] above.
# The cluster is on a host of its own: the kernel, given no address, advertises the one this machine
# reaches the master from (its end of the link), and the executors there call the driver back on it.
@pytest.mark.parametrize("mode", ["background", "lazy"])
def test_a_notebook_on_a_standalone_cluster_keeps_the_clusters_session(start, standalone_cluster, mode):
    name = f"own-standalone-{mode}"
    kernel = start(name, "--profile", "standalone", "--spark_master", standalone_cluster, "--executor_python", PYTHON,
                   "--spark_init", mode, "--spark.executor.memory=512m", ONE_EXECUTOR)
    cell = kernel.run(OWN_BUILDER.replace("'spark.sql.shuffle.partitions'", "'spark.executor.memory'"))
    gateway = standalone_cluster.host.gateway
    assert printed(cell, "SESSION") == ["512m", standalone_cluster, gateway, "True", "True"]
    assert [line for line in cell.text.splitlines() if JVM_NOISE.search(line)] == []
    assert kernel.run("sc.parallelize(range(4), 2).map(lambda x: x * 2).sum()").result == "12"  # on the cluster's executors
    app, driver_port = kernel.run("print(sc.applicationId, spark.conf.get('spark.driver.port'))").stream.split()
    [executor] = executor_jvms(app)
    assert f"spark://CoarseGrainedScheduler@{gateway}:{driver_port}" in executor, executor
    assert f"--hostname {standalone_cluster.host.address}" in " ".join(executor), executor


def executor_jvms(app_id):
    """The command lines of the executor JVMs a standalone worker runs for the application ``app_id``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "java" and "org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmdline and app_id in cmdline:
            found.append(cmdline)
    return found


def after_spark_stop_the_next_use_starts_a_new_session_and_says_so(kernel):
    first = kernel.run("print('APP', spark.sparkContext.applicationId); spark.range(1).count()")
    old_app = printed(first, "APP")[0]
    stopped = kernel.run("spark.stop()")
    assert stopped.error is None and stopped.stream == ""
    reused = kernel.run("spark.range(3).count()")
    assert reused.result == "3"
    assert [line for line in reused.stream.splitlines() if "stop" in line] == [
        "Spark was stopped (spark.stop()): starting a new session with the kernel's configuration."]
    new = kernel.run("print('APP', sc.applicationId, spark.conf.get('spark.sql.shuffle.partitions'))")
    assert printed(new, "APP")[0] != old_app and printed(new, "APP")[1] == "8"  # the kernel's configuration again
    wait_until(lambda: len(spark_jvms("new-session")) == 1, 60, "the stopped session's JVM did not exit")


def master_apps(ui):
    import urllib.request

    with urllib.request.urlopen(f"{ui}/json/", timeout=10) as page:
        return [app["name"] for app in json.load(page)["activeapps"]]


def test_an_idle_session_is_stopped_and_the_next_use_starts_a_new_one(start, standalone_cluster):
    """idle_timeout=15 on a local kernel and on a standalone one, side by side: 30 s after the last
    job the local JVM is gone and the master runs no application of the kernel's; the next cell
    says so in one line and gets a result from a new session, with the notebook's variables."""
    import psutil

    # No class-data-sharing archive: the first JVM of a run would write it as it exits, which on a
    # busy machine takes longer than the stop being tested.
    local = start("idle-local", "--idle_timeout", "15", "--no-class_data_sharing")
    cluster = start("idle-standalone", "--profile", "standalone", "--spark_master", standalone_cluster, "--executor_python", PYTHON,
                    "--idle_timeout", "15", "--no-class_data_sharing", "--spark.executor.memory=512m", ONE_EXECUTOR)
    pids = {}
    for kernel in (local, cluster):
        ran = kernel.run("kept = 'before'\nprint('APP', sc.applicationId, sc.parallelize(range(4), 2).map(lambda x: x + 1).sum())")
        assert printed(ran, "APP")[1] == "10"
        pids[kernel] = (jvm_pid(kernel), printed(ran, "APP")[0])
    assert "idle-standalone" in master_apps(standalone_cluster.ui)

    def gone(pid):
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    wait_until(lambda: gone(pids[local][0]), 30, "the local kernel's JVM was still running 30 s after its last job, with idle_timeout=15")
    wait_until(lambda: "idle-standalone" not in master_apps(standalone_cluster.ui), 30,
               "the standalone master still ran the kernel's application 30 s after its last job, with idle_timeout=15")
    for kernel in (local, cluster):
        again = kernel.run("print('APP', sc.applicationId, spark.range(3).count(), kept)")
        assert again.error is None, again.text
        app, count, kept = printed(again, "APP")
        assert (count, kept) == ("3", "before") and app != pids[kernel][1]
        assert [line for line in again.stream.splitlines() if "idle_timeout" in line] == [
            "Spark was stopped after 15 s without a job (idle_timeout), to free what it held: starting a new session with the kernel's configuration."]
        assert len(spark_jvms(kernel.manager.kernel_name)) == 1


def a_jvm_killed_from_outside_is_one_clear_error_and_restart_brings_spark_back(kernel):
    assert kernel.run("kept = 'set before'\ndf = spark.range(5)\nspark.range(1).count()").result == "1"
    pid = jvm_pid(kernel)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", 30, "the JVM did not die")
    plain = kernel.run("print(1 + 1)")
    assert plain.error is None and plain.text == "2\n"  # a cell that does not use Spark runs clean
    for code in ("spark.range(3).count()", "df.count()"):  # the session, and a DataFrame made before
        failed = kernel.run(code)
        assert failed.error[0] == "SparkDiedError", failed.text
        assert failed.error[1].startswith("The Spark driver JVM has exited: killed by signal 9 (SIGKILL: often the out-of-memory killer).")
        assert "run %spark restart for a new session" in failed.error[1]
        error = next(content for kind, content in failed.messages if kind == "error")
        assert error["traceback"] == [f"SparkDiedError: {failed.error[1]}"]  # no frames of PySpark and Py4J
    restarted = kernel.run("%spark restart")
    assert restarted.error is None and re.match(r"Spark \S+ \| master local\[\*\]", restarted.stream), restarted.text
    after = kernel.run("print('AFTER', spark.range(3).count(), kept)")
    assert printed(after, "AFTER") == ["3", "set", "before"]


def test_a_master_that_is_down_at_start_fails_clearly_and_restart_succeeds_once_it_is_up(start, tmp_path):
    work = tmp_path / "cluster"
    work.mkdir()
    with cluster_host() as host:  # up, and nothing on it listens yet
        port = free_port()
        master = f"spark://{host.address}:{port}"
        kernel = start("down-first", "--profile", "standalone", "--spark_master", master, "--executor_python", PYTHON,
                       "--spark.executor.memory=512m", ONE_EXECUTOR)
        failed = kernel.run("spark.range(1).count()")
        assert failed.error[0] == "SparkStartError"
        assert failed.error[1].startswith(f"Spark master {master} is unreachable: nothing listens on {host.address}:{port}")
        with standalone(work, port, host=host):
            restarted = kernel.run("%spark restart")
            assert restarted.error is None, restarted.text
            assert kernel.run("print('MASTER', sc.master, spark.range(10).count())").stream.split()[1:] == [master, "10"]
            kernel.stop()


def restart_applies_conf_that_needs_a_new_driver_and_keeps_variables(kernel):
    assert kernel.run("kept = 42\nspark.range(1).count()").result == "1"
    first_pid = jvm_pid(kernel)
    restarted = kernel.run("%spark restart --conf spark.app.name=etl-2 --conf spark.sql.shuffle.partitions=3")
    assert restarted.error is None, restarted.text
    cell = kernel.run("print('CONF', sc.appName, spark.conf.get('spark.sql.shuffle.partitions'), kept)")
    assert printed(cell, "CONF") == ["etl-2", "3", "42"]
    assert jvm_pid(kernel) != first_pid  # a new driver
    status = kernel.run("%spark status").stream
    assert status.startswith("state: ready") and "restarted with: --conf spark.app.name=etl-2 --conf spark.sql.shuffle.partitions=3" in status
    usage = kernel.run("%spark restart --conf nonsense")
    assert usage.stream.strip() == "UsageError: %spark restart: --conf 'nonsense' is not KEY=VALUE with a spark.* key (for example --conf spark.driver.memory=4g)"


def test_a_new_session_comes_after_spark_stop_after_a_jvm_killed_from_outside_and_after_restart_with_conf(start):
    """Three ways a kernel's session ends and the next one begins, one after the other on one kernel
    (each check starts a new JVM anyway; a kernel of its own would cost another)."""
    kernel = start("new-session")
    after_spark_stop_the_next_use_starts_a_new_session_and_says_so(kernel)
    a_jvm_killed_from_outside_is_one_clear_error_and_restart_brings_spark_back(kernel)
    restart_applies_conf_that_needs_a_new_driver_and_keeps_variables(kernel)


def test_papermill_runs_a_tutorial_notebook_with_no_stray_interrupt(kernels_dir, tmp_path):
    make_kernel(kernels_dir, "paper")
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from pyspark.sql import SparkSession\nspark = SparkSession.builder.appName('tutorial').getOrCreate()"),
        nbformat.v4.new_code_cell("df = spark.createDataFrame([(1, 'a'), (2, 'b')], ['n', 's'])\ndf.groupBy('s').count().orderBy('s').collect()"),
        nbformat.v4.new_code_cell("spark.sparkContext.parallelize(range(2), 2).map(lambda x: __import__('time').sleep(1.5) or x).count()"),
        nbformat.v4.new_code_cell("spark.stop()"),
    ])
    source, out = tmp_path / "tutorial.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook, source)
    env = {**os.environ, "JUPYTER_PATH": str(kernels_dir.parent), "TMPDIR": str(tmp_path)}
    done = subprocess.run([os.path.join(VENV_DIR, "bin", "papermill"), str(source), str(out), "-k", "paper"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt" not in done.stderr, done.stderr
    executed = nbformat.read(out, as_version=4)
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert [output for output in outputs if output["output_type"] == "error"] == []
    assert "Row(s='a', count=1), Row(s='b', count=1)" in json.dumps(outputs)
    # The job's progress stays in the saved notebook as its final summary, with the job's UI link.
    [summary] = [output["data"] for output in executed.cells[2].outputs if output["output_type"] == "display_data"]
    assert re.fullmatch(r"Spark: 1 job\(s\) done, 2/2 tasks, \d+\.\d s", summary["text/plain"]), summary
    assert 'class="pyspark-kernel-progress"' in summary["text/html"] and "/jobs/job/?id=" in summary["text/html"] and "<td>succeeded</td>" in summary["text/html"]


def break_options(kernel_json):
    spec = json.loads(kernel_json.read_text())
    spec["env"]["PYSPARK_KERNEL_OPTIONS"] = "{broken"
    kernel_json.write_text(json.dumps(spec))


@pytest.mark.parametrize("problem, flags, expected", [
    ("tmpdir", {"TMPDIR": "missing"}, "cannot create the kernel's scratch directory in {tmp}/missing: No such file or directory"),
    ("options", {"edit": break_options}, "PYSPARK_KERNEL_OPTIONS in kernel.json is not valid JSON"),
])
def test_a_runtime_that_cannot_start_says_so_in_the_first_cell_and_spark_is_never_undefined(start, tmp_path, problem, flags, expected):
    changes = {key: (str(tmp_path / value) if key == "TMPDIR" else value) for key, value in flags.items()}
    kernel = start(f"setup-{problem}", **changes)
    first = kernel.run("1 + 1")
    assert first.result == "2"
    assert first.stream.startswith("ERROR: The kernel's Spark runtime could not start: " + expected.format(tmp=tmp_path)), first.stream
    assert len(first.stream.splitlines()) == 1
    assert kernel.run("2 + 2").text == "4\n"  # said once
    used = kernel.run("spark.range(1).count()")
    assert used.error[0] == "SparkSetupError" and used.error[1].startswith("The kernel's Spark runtime could not start: ")
