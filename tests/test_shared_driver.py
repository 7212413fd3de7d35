"""spark_driver shared, with real kernels and the real server: the notebooks of one kernel share
one local Spark Connect server, each in a session of its own, which outlives the notebook that
started it, reports its death at once and leaves after the last notebook."""

import json
import glob
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time

import psutil
import pytest

from pyspark_kernel.runtime.diagnostics import java_release
from pyspark_kernel.runtime.driver_server import idle_java_options

from .conftest import PYTHON, make_kernel, spark_jvms
from .kernels import (SLEEP_COUNT, SLEEP_SQL, SLEEP_SQL_NAME, Kernel, assert_dataframe_values, assert_progress_names, assert_python_worker_logs,
                      kernel_environment, wait_for_message, wait_until)
from .test_jupyterhub import add_user, as_user, remove_user

pytestmark = pytest.mark.e2e

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
LINGER = 5
GONE_BOUND = 30  # seconds: a dead server's next Spark cell fails well within this
INTERRUPT_BOUND = 15


TUTORIAL = [
    ("from pyspark.sql import SparkSession\nspark = SparkSession.builder.appName('tutorial').getOrCreate()", None),
    ("df = spark.createDataFrame([(1, 'a'), (2, 'b'), (3, 'a')], ['id', 'key'])\ndf.createOrReplaceTempView('items')", None),
    ("print(spark.sql('SELECT key, count(*) AS n FROM items GROUP BY key ORDER BY key').collect())", "[Row(key='a', n=2), Row(key='b', n=1)]"),
    ("import pandas as pd\nfrom pyspark.sql.functions import pandas_udf\n@pandas_udf('long')\ndef plus_one(s: pd.Series) -> pd.Series:\n    return s + 1\n"
     "print([row[0] for row in df.select(plus_one('id')).collect()])", "[2, 3, 4]"),
    ("spark.stop()", None),
]


OTHER_USER_TRIES = """
import os, socket
for what, attempt in (("record", lambda: open(os.path.join({directory!r}, {key!r} + ".json")).read()),
                      ("socket", lambda: socket.socket(socket.AF_UNIX).connect(os.path.join({directory!r}, {key!r} + ".sock"))),
                      ("starter", lambda: socket.socket(socket.AF_UNIX).connect({starter!r}))):
    try:
        attempt()
        print(what + ": read")
    except OSError as error:
        print(what + ":", type(error).__name__)
"""


def record_of(run_dir):
    records = [name for name in os.listdir(run_dir / "pyspark-kernel") if name.endswith(".json")]
    assert len(records) == 1, records
    with open(run_dir / "pyspark-kernel" / records[0], encoding="utf-8") as handle:
        return json.load(handle)


def slow_cell(markers, tag, seconds):
    """A DataFrame cell whose two Python UDF tasks each leave a marker file, then sleep."""
    return (f"from pyspark.sql.functions import udf\n"
            f"@udf('long')\n"
            f"def slow_{tag}(x):\n"
            f"    open({str(markers)!r} + '/{tag}%d' % x, 'w').close()\n"
            f"    __import__('time').sleep({seconds})\n"
            f"    return x\n"
            f"print(sorted(r[0] for r in spark.range(2).repartition(2).select(slow_{tag}('id')).collect()))")


def loopback(address):
    return address.ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def test_notebooks_of_a_shared_kernel_share_one_driver_each_in_its_own_session(kernels_dir, tmp_path):
    # Where another user could look (pytest's own directory is root's alone): the kernel's own
    # pyspark-kernel directory in it is what must keep them out.
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="pyspark-kernel run ü-"))  # a space: the JVM options must quote it
    os.chmod(run_dir, 0o755)
    try:
        check_a_shared_kernel(kernels_dir, tmp_path, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_lazy_shared_kernel_starts_no_driver_at_launch_but_at_its_first_spark_cell(kernels_dir, tmp_path):
    """spark_init lazy: the launcher, which starts a background kernel's shared driver before
    ipykernel loads (driverstart.start_ahead), starts nothing; the first Spark cell does."""
    # No archive: a JVM that writes one as it exits takes a while to leave, and this test is not about it.
    make_kernel(kernels_dir, "lazy-shared", "--spark_driver", "shared", "--spark_init", "lazy", "--driver_linger", "0", "--no-class_data_sharing")
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="pk-lazy-"))  # short: the socket's path must fit a Unix socket's
    (tmp_path / "tmp").mkdir()
    kernel = Kernel(kernels_dir, "lazy-shared", kernel_environment(tmp_path / "tmp", XDG_RUNTIME_DIR=str(run_dir)))
    try:
        # The kernel has answered: a start at launch would have begun before ipykernel loaded.
        assert kernel.run("print(1 + 1)").stream.strip() == "2"
        assert not servers_of(run_dir) and not list(run_dir.glob("pyspark-kernel/*.json")), sorted(run_dir.rglob("*"))
        counted = kernel.run("print(spark.range(3).count())")
        assert counted.error is None and counted.stream.strip().splitlines()[-1] == "3", counted.text
        steps = kernel.run("%spark status").text.split("last start, step by step:")[-1]
        assert "starting the shared driver\n" in steps and "begun as the kernel launched" not in steps, steps
    finally:
        kernel.stop()
        try:
            wait_until(lambda: not server_jvms(run_dir) and not servers_of(run_dir) and not starters_of(run_dir), 120,
                       "the lazy kernel's shared driver or its kernel starter did not leave after its notebook")
        finally:
            for process in server_jvms(run_dir) + servers_of(run_dir) + starters_of(run_dir):
                process.kill()
            shutil.rmtree(run_dir, ignore_errors=True)


def check_a_shared_kernel(kernels_dir, tmp_path, run_dir):
    # No archive: its servers are killed and restarted, and would each write it (the next test has it).
    make_kernel(kernels_dir, "shared", "--spark_driver", "shared", "--driver_linger", str(LINGER), "--spark_master", "local[4]", "--no-class_data_sharing")
    kernels = []

    def open_notebook(tag):
        tmp_dir = tmp_path / "tmp"  # one Jupyter server's environment for all its notebooks
        tmp_dir.mkdir(exist_ok=True)
        # Each notebook in a directory of its own, with its data beside it (../data): a space in one.
        notebooks = tmp_path / f"project {tag}" / "notebooks"
        (notebooks.parent / "data").mkdir(parents=True)
        (notebooks.parent / "data" / "people.csv").write_text("name\n" + "".join(f"{tag}{n}\n" for n in range(len(kernels) + 2)))
        notebooks.mkdir()
        kernels.append(Kernel(kernels_dir, "shared", kernel_environment(tmp_dir, XDG_RUNTIME_DIR=str(run_dir)), cwd=notebooks))
        return kernels[-1], notebooks

    try:
        (first, first_dir) = open_notebook("a")
        # A first cell that reads the active session before touching spark waits for it (entrypoints.Awaited).
        started = first.run("from pyspark.sql.functions import udf\n@udf('integer')\ndef plus_one(x):\n    return x + 1\n"
                            "print(plus_one.returnType)\nprint(spark.range(3).count())")
        assert started.error is None and "IntegerType()" in started.stream.splitlines(), started.text
        assert "| shared driver (pid " in started.text and "3" in started.stream.splitlines(), started.text
        # Its launcher started the server before ipykernel loaded; the runtime took that start over.
        steps = first.run("%spark status").text.split("last start, step by step:")[-1]
        assert "starting the shared driver (begun as the kernel launched)" in steps, steps
        # The first notebook started the kernel starter: the next notebook's kernel is forked from it,
        # in that notebook's directory, with its environment, its sys.path and its own random numbers.
        wait_until(lambda: glob.glob(str(run_dir / "pyspark-kernel" / "k-*.sock")), 120, "the first notebook did not start a kernel starter")
        [starter] = starters_of(run_dir)
        # It makes a warm session ahead for the next notebook, in a helper of its own that then leaves.
        wait_until(lambda: not starter.children(), 120, "the kernel starter's helper did not finish making a session ahead")
        (second, second_dir) = open_notebook("b")
        assert second.run("x = 41; print(spark.range(4).count())").stream.strip().splitlines()[-1] == "4"
        steps = second.run("%spark status").text.split("last start, step by step:")[-1]
        assert "connecting to the shared driver's session made ahead" in steps and "warm-up: a JVM job" not in steps, steps
        (second_dir / "beside.py").write_text("WHERE = 'beside the notebook'\n")
        facts = second.run("import os, sys, numpy, beside\nprint(os.getpid(), os.getppid(), os.getcwd(), sys.path, beside.WHERE, os.environ['XDG_RUNTIME_DIR'], sep='|')\n"
                           "print(numpy.random.randint(0, 2**31, 4).tolist())")
        first_numbers, first_path = first.run("import numpy, sys\nprint(numpy.random.randint(0, 2**31, 4).tolist())\nprint(sys.path)").stream.strip().splitlines()[-2:]
        pid, parent, cwd, path, where, runtime = facts.stream.strip().splitlines()[-2].split("|")
        launcher = second.manager.provisioner.process.pid
        assert int(parent) == starter.pid and int(pid) != launcher and psutil.Process(launcher).children() == [], (facts.text, launcher)
        assert cwd == str(second_dir) and path == first_path and where == "beside the notebook" and runtime == str(run_dir), (facts.text, first_path)
        assert facts.stream.strip().splitlines()[-1] != first_numbers, facts.text
        [socket_file] = glob.glob(str(run_dir / "pyspark-kernel" / "k-*.sock"))
        assert oct(os.stat(socket_file).st_mode & 0o777) == "0o600"

        # Relative paths are each notebook's, reading and writing. Managed tables go to the warehouse
        # of the catalog the notebooks share: in the first notebook's directory, whose name has a space.
        for kernel, tag, rows in ((first, "a", 2), (second, "b", 3)):
            paths = kernel.run(f"people = spark.read.csv('../data/people.csv', header=True)\nprint(sorted(r.name for r in people.collect()))\n"
                               f"people.write.parquet('out/people')\nprint(spark.read.parquet('out/people').count())\n"
                               f"people.write.saveAsTable('managed_{tag}')\nprint(spark.table('managed_{tag}').count())")
            assert paths.error is None, paths.text
            assert paths.stream.strip().splitlines()[-3:] == [str([f"{tag}{n}" for n in range(rows)]), str(rows), str(rows)], paths.text
        for directory in (first_dir, second_dir):
            assert list((directory / "out" / "people").glob("*.parquet")), sorted(directory.parent.rglob("*"))
        assert {p.name for p in (first_dir / "spark-warehouse").iterdir()} == {"managed_a", "managed_b"}
        assert not (second_dir / "spark-warehouse").exists() and not list(tmp_path.glob("*%20*")), sorted(tmp_path.iterdir())

        # One server JVM, no JVM of the notebooks' own; every port it listens on is loopback's.
        record = record_of(run_dir)
        server = psutil.Process(record["jvm"])
        assert server.name() == "java" and SERVER_CLASS in server.cmdline()
        idle = idle_java_options(java_release(shutil.which("java")))
        assert set(idle) <= set(server.cmdline()), (idle, server.cmdline())  # it gives back memory when idle
        own = [p for kernel in kernels for p in psutil.Process(kernel.manager.provisioner.process.pid).children(recursive=True) if p.name() == "java"]
        assert own == [] and spark_jvms("shared") == [], own
        listening = [c.laddr for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert any(a.port == record["port"] for a in listening) and all(loopback(a) for a in listening), listening
        assert record["token"] not in " ".join(server.cmdline()) and record["token"] not in (kernels_dir / "shared" / "kernel.json").read_text()
        assert oct(os.stat(run_dir / "pyspark-kernel").st_mode & 0o777) == "0o700"
        assert oct(os.stat(run_dir / "pyspark-kernel" / f"{record['key']}.json").st_mode & 0o777) == "0o600"
        status = second.run("%spark status").text
        assert f"shared driver: pid {record['jvm']}" in status and "notebooks attached: 2" in status, status
        assert "serving Spark Connect on 127.0.0.1:" in second.run("%spark log").text  # the server's log
        with open(record["log"], encoding="utf-8", errors="replace") as handle:
            assert record["token"] not in handle.read()
        # The server's Python workers run the kernel's environment; %%sql works as on any kernel.
        workers = second.run("from pyspark.sql.functions import udf\n"
                             "print(spark.range(1).select(udf(lambda _: __import__('sys').executable)('id')).first()[0])")
        assert workers.stream.strip().splitlines()[-1] == PYTHON, workers.text
        table = second.run("%%sql\nSELECT 3 + 4 AS seven").text
        assert "seven" in table and re.search(r"\b7\b", table) and "1 row" in table, table
        assert_dataframe_values(second)
        # The progress table names each operation after the code that ran it (the server names
        # the jobs of its Spark UI itself, from the request: runtime.callsite).
        assert_progress_names(second, SLEEP_COUNT, lambda number: f"count at cell [{number}], line 1")
        assert_progress_names(second, SLEEP_SQL, lambda number: SLEEP_SQL_NAME)
        # What a UDF logs is its session's: one notebook does not see the other's.
        assert_python_worker_logs(first)
        theirs = second.run("spark.conf.set('spark.sql.pyspark.worker.logging.enabled', 'true')\n"
                            "print(spark.tvf.python_worker_logs().where(\"logger = 'jobs-worker'\").count())")
        assert theirs.error is None and theirs.stream.strip().splitlines()[-1] == "0", theirs.text

        # A client without the token, or with another, is refused.
        for url in (f"sc://localhost:{record['port']}", f"sc://localhost:{record['port']}/;token=not-{record['token'][:8]}"):
            refused = subprocess.run([PYTHON, "-c", f"from pyspark.sql import SparkSession\nSparkSession.builder.remote({url!r}).create().range(1).count()"],
                                     capture_output=True, text=True, timeout=120)
            assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr + refused.stdout, refused.stderr[-2000:]

        # Another user of the machine can neither read the token, nor attach, nor hand the kernel
        # starter a launch (root runs the suite).
        other = f"sd{os.getpid()}"
        add_user(other)
        try:
            tried = as_user(other, "/usr/bin/python3", "-c", OTHER_USER_TRIES.format(directory=str(run_dir / "pyspark-kernel"), key=record["key"], starter=socket_file), timeout=60)
        finally:
            remove_user(other)
        assert tried.stdout.split() == ["record:", "PermissionError", "socket:", "PermissionError", "starter:", "PermissionError"], tried.stdout + tried.stderr

        # Each notebook its own session: temp views and runtime settings stay in it.
        first.run("spark.range(2).createOrReplaceTempView('mine'); spark.conf.set('spark.sql.shuffle.partitions', '3')")
        # What the cell printed, not its displays: a cell slower than half a second also shows its progress line.
        seen = second.run("print(spark.catalog.tableExists('mine'), spark.conf.get('spark.sql.shuffle.partitions'))")
        assert seen.stream.strip().splitlines()[-1] == "False 8", seen.text
        assert first.run("print(spark.table('mine').count(), spark.conf.get('spark.sql.shuffle.partitions'))").stream.strip().splitlines()[-1] == "2 3"

        # Interrupting one notebook's query leaves the other's running: the forked one's, through its launcher.
        markers = tmp_path / "markers"
        markers.mkdir()
        long_id = second.client.execute(slow_cell(markers, "b", 120), stop_on_error=False)
        wait_until(lambda: len([m for m in os.listdir(markers) if m.startswith("b")]) == 2, 120, "the second notebook's tasks never started")
        other_id = first.client.execute(slow_cell(markers, "a", 8), stop_on_error=False)
        wait_until(lambda: len([m for m in os.listdir(markers) if m.startswith("a")]) == 2, 120, "the first notebook's tasks never started")
        interrupted = time.monotonic()
        second.manager.interrupt_kernel()
        error = wait_for_message(second.client, long_id, lambda kind, content: kind == "error", INTERRUPT_BOUND, "the second notebook's cell was not interrupted")
        assert error["ename"] == "KeyboardInterrupt" and time.monotonic() - interrupted < INTERRUPT_BOUND, error
        output = wait_for_message(first.client, other_id, lambda kind, content: kind == "stream", 120, "the first notebook's query did not finish")
        assert output["text"].strip() == "[0, 1]", output
        second.client.get_shell_msg(timeout=INTERRUPT_BOUND)
        first.client.get_shell_msg(timeout=60)

        # A tutorial-style notebook runs unchanged: its own builder first, a temp view, SQL, a
        # pandas UDF, spark.stop() at the end; the next use of Spark gets a new session.
        for code, printed in TUTORIAL:
            cell = second.run(code)
            assert cell.error is None and (printed is None or cell.stream.strip().splitlines()[-1] == printed), (code, cell.text)

        # The notebook that started the server goes; the other goes on.
        first.stop()
        kernels.remove(first)
        assert second.run("print(spark.range(5).count())").stream.strip().splitlines()[-1] == "5"

        # A session made ahead that the server has closed meanwhile (its session timeout): the kernel
        # that gets it starts a new session instead.
        planted = second.run(PLANT_A_CLOSED_SESSION)
        assert planted.error is None, planted.text
        gone = planted.stream.strip().splitlines()[-1]
        second.run("%spark restart")
        fresh = second.run("print(spark.session_id, spark.range(6).count())")
        assert fresh.error is None, fresh.text
        session_id, count = fresh.stream.strip().splitlines()[-1].split()
        assert session_id != gone and count == "6", fresh.text
        steps = second.run("%spark status").text.split("last start, step by step:")[-1]
        assert steps.index("connecting to the shared driver's session made ahead") < steps.index("connecting to the shared driver\n"), steps

        # kill -9 of the server's JVM: the next Spark cell fails at once with one clear error, and
        # %spark restart starts a new server, Python variables intact.
        os.kill(record["jvm"], signal.SIGKILL)
        killed = time.monotonic()
        failed = second.run("spark.range(1).count()", timeout=GONE_BOUND)
        assert time.monotonic() - killed < GONE_BOUND
        assert failed.error is not None and failed.error[0] == "SparkDiedError" and "%spark restart" in failed.error[1], failed.text
        assert sum(1 for kind, _ in failed.messages if kind == "error") == 1
        assert second.run("print(1 + 1)").text.strip() == "2"  # a cell without Spark: no error
        second.run("%spark restart")
        again = second.run("print(x + 1, spark.range(3).count())")
        assert again.stream.strip().splitlines()[-1] == "42 3", again.text
        assert record_of(run_dir)["jvm"] != record["jvm"]

        # sc and the RDD API: one clear error naming the dedicated driver.
        rdd = second.run("sc.parallelize([1, 2]).collect()")
        assert rdd.error[0] == "SharedDriverError" and "--spark_driver dedicated" in rdd.error[1], rdd.text
        assert second.run("spark.sparkContext").error[0] == "SharedDriverError"

        # Jupyter's kill reaches the launcher alone: the forked kernel goes with it.
        os.kill(launcher, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE, 30,
                   "the forked kernel outlived its launcher")
    finally:
        for kernel in kernels:
            kernel.stop()
        # After the last notebook, the server leaves within its linger, and nothing of it stays.
        try:
            wait_until(lambda: not server_jvms(run_dir) and not servers_of(run_dir) and not starters_of(run_dir), LINGER + 60,
                       "the shared driver or its kernel starter did not leave after the last notebook")
        finally:
            for process in server_jvms(run_dir) + servers_of(run_dir) + starters_of(run_dir):
                process.kill()
    left = sorted(os.listdir(run_dir / "pyspark-kernel"))
    assert not [name for name in left if name.endswith((".json", ".sock", ".log", ".lock", ".d"))], left
    # Nothing a notebook wrote went to the driver's own directory.
    assert not [path for path in run_dir.rglob("*") if path.name in ("out", "tables", "spark-warehouse")]
    assert not glob.glob(str(run_dir).replace(" ", "%20") + "*")  # nor to its path's URI spelling


# In a shared-driver notebook: a session closed on the server, planted as the next start's session
# made ahead (as its kernel starter would have passed it); prints its id.
PLANT_A_CLOSED_SESSION = """
import uuid
from pyspark.sql.connect.session import SparkSession as RemoteSession
import pyspark_kernel_runtime
from pyspark_kernel_runtime import spare, starter
lease = pyspark_kernel_runtime.RUNTIME.driver.lease
gone = str(uuid.uuid4())
closed = RemoteSession(connection=spare.url(lease.record, gone))
closed.range(1).count()
closed.stop()
starter.SPARE.update(session=gone, key=lease.paths.key, keeper=lease.record["pid"])
print(gone)
"""


def server_jvms(run_dir):
    """The shared-driver JVMs whose scratch directory is under ``run_dir``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "java" and SERVER_CLASS in cmdline and any(str(run_dir) in arg for arg in cmdline):
            found.append(process)
    return found


def starters_of(run_dir):
    """Kernel starters (runtime/starter.py) whose runtime directory is ``run_dir``: not what a live
    starter forked (kernels, its helpers), which is the starter's; but an orphan of one that left."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if serves_kernels(process) and process.environ().get("XDG_RUNTIME_DIR") == str(run_dir) and not serves_kernels(process.parent()):
                found.append(process)
        except psutil.Error:
            pass
    return found


def serves_kernels(process):
    return process is not None and "--serve-kernels" in (process.cmdline() or [])


def servers_of(run_dir):
    """driver_server processes whose working directory is under ``run_dir``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(arg.endswith(".driver_server") for arg in process.info["cmdline"] or []) and process.cwd().startswith(str(run_dir)):
                found.append(process)
        except psutil.Error:
            pass
    return found


def test_a_jupyter_server_starts_a_driver_prestart_kernels_shared_driver_and_its_kernel_starter_and_the_drivers_jvm_archives_its_classes_for_the_next(tmp_path):
    """driver_prestart through a real Jupyter server, twice with one cache. The first server's
    driver (no archive yet) writes the Connect server's class-data-sharing archive as it leaves, as
    a dedicated driver's JVM does (test_runtime's archive test); the next one maps it. Its class path
    has the working-directory jar, kept in the cache so that it is the same at each start."""
    make_kernel(tmp_path / "jupyter" / "kernels", "held", "--spark_driver", "shared", "--driver_prestart", "--driver_linger", "1")
    make_kernel(tmp_path / "jupyter" / "kernels", "not-held", "--spark_driver", "shared")  # without the option: nothing starts for it
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="pk-held-"))  # short: the socket's path must fit a Unix socket's
    try:
        check_prestart_and_archive(tmp_path, run_dir)
    finally:
        for process in server_jvms(run_dir) + servers_of(run_dir) + starters_of(run_dir):
            process.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def check_prestart_and_archive(tmp_path, run_dir):
    from pyspark_kernel.runtime.shared import ask

    from .conftest import serving_jupyter
    from .server_api import request, run_over_websocket

    cache = tmp_path / "cache"  # its own: the first driver here is the one that writes the archive
    cds = cache / "pyspark-kernel" / "cds"
    jvms = []

    def one_server(first):
        with serving_jupyter(tmp_path, tmp_path / "jupyter", env={"XDG_RUNTIME_DIR": str(run_dir), "XDG_CACHE_HOME": str(cache)}) as (base, token):
            # Before any notebook: the server's extension started the driver and holds it.
            wait_until(lambda: list((run_dir / "pyspark-kernel").glob("*.json")), 180, f"no shared driver started ahead; see {tmp_path}/server.log")
            record = record_of(run_dir)
            jvms.append(psutil.Process(record["jvm"]))
            with open(f"/proc/{record['jvm']}/maps", encoding="utf-8") as handle:
                found = (jvms[-1].cmdline(), handle.read())
            if first:
                check_the_held_driver(base, token, record, ask, request, run_over_websocket)
            else:  # the start ahead has warmed the driver up and gone, before the server stops
                wait_until(lambda: not starting_ahead(record, ask), 120, "the driver's start ahead did not leave")
        # The Jupyter server has gone, and its lease with it: the driver leaves after its linger,
        # with its kernel starter; writing the archive takes its JVM a while.
        wait_until(lambda: not servers_of(run_dir) and not starters_of(run_dir) and not list((run_dir / "pyspark-kernel").glob("*.cds-*")), 240,
                   "the prestarted shared driver (its watchdog, its kernel starter) did not leave with the Jupyter server")
        assert not psutil.pid_exists(record["jvm"]) and not list((run_dir / "pyspark-kernel").glob("k-*"))
        return found

    first, _ = one_server(first=True)
    assert any(option.startswith("-XX:ArchiveClassesAtExit=" + str(cds / "connect-")) for option in first), first
    archives = list(cds.glob("connect-*.jsa"))
    assert len(archives) == 1, sorted(os.listdir(cds))
    archive = archives[0]
    assert (cds / f"{archive.name}.size").read_text().strip() == str(archive.stat().st_size)
    assert not [name for name in os.listdir(cds) if name.endswith((".partial", ".lock"))], sorted(os.listdir(cds))
    # The jar beside it, written once: an archive maps only with the class path it was written with.
    jar = cds / "pyspark-kernel-workdir.jar"
    written = jar.stat().st_mtime_ns
    again, maps = one_server(first=False)
    assert f"-XX:SharedArchiveFile={archive}" in again and not any("ArchiveClassesAtExit" in option for option in again), again
    assert str(archive) in maps, "the second server's JVM did not map the archive"
    assert jar.stat().st_mtime_ns == written
    assert not psutil.wait_procs(jvms, timeout=30)[1]


def starting_ahead(record, ask):
    """Whether the Jupyter server's start ahead of the driver of ``record`` still runs (or the
    server does not hold the driver yet)."""
    from pyspark_kernel.runtime.driverfiles import Paths

    connection, answer = ask(Paths(os.path.dirname(record["log"]), record["key"]).socket, {"status": True})
    connection.close()
    if not answer["held_by"]:
        return True
    for child in psutil.Process(answer["held_by"][0]).children():
        try:
            if "pyspark_kernel_runtime.prestart" in child.cmdline():
                return True
        except (psutil.ZombieProcess, psutil.NoSuchProcess):  # it has finished; the server has not reaped it yet
            continue
    return False


def check_the_held_driver(base, token, record, ask, request, run_over_websocket):
    run_dir = pathlib.Path(os.path.dirname(os.path.dirname(record["log"])))

    def status():
        connection, answer = ask(str(run_dir / "pyspark-kernel" / f"{record['key']}.sock"), {"status": True})
        connection.close()
        return answer

    # The start ahead runs one job (a session of its own), then leaves the Jupyter server's lease alone.
    wait_until(lambda: status()["notebooks"] == [], 120, "the driver's start ahead did not leave")
    status = status()
    assert status["notebooks"] == [] and len(status["held_by"]) == 1, status
    server = psutil.Process(status["held_by"][0])
    assert any(arg.startswith("--ServerApp.root_dir=") for arg in server.cmdline())  # the Jupyter server itself
    # Its kernel starter, too: the first notebook's kernel is forked from it, and attaches to the driver.
    wait_until(lambda: list((run_dir / "pyspark-kernel").glob("k-*.sock")), 120, "the Jupyter server started no kernel starter")
    [starter] = starters_of(run_dir)
    _, body = request(base, token, "POST", "/api/kernels", {"name": "held"})
    kernel_id = json.loads(body)["id"]
    outputs = run_over_websocket(base, token, kernel_id, "import os\nprint('parent', os.getppid())\nprint(spark.range(3).count())\n%spark status")
    text = "".join(content.get("text", "") for kind, content in outputs if kind == "stream")
    assert f"parent {starter.pid}\n" in text and "\n3\n" in text and f"shared driver: pid {record['jvm']}" in text and "notebooks attached: 1" in text, text
    assert "held by the Jupyter server" in text and "(driver_prestart)" in text, text
    assert record_of(run_dir)["jvm"] == record["jvm"] and len(servers_of(run_dir)) == 1
    request(base, token, "DELETE", f"/api/kernels/{kernel_id}")
