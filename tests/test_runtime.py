"""The kernel at run time, with real kernels and real Spark: start modes, failures shown in the
notebook, interrupt, progress, banner, class-data sharing, and nothing left behind."""

import ast
import glob
import json
import os
import re
import shutil
import signal
import socket
import threading
import urllib.error
import urllib.request

import pytest

from .conftest import assert_left_nothing, make_kernel, spark_jvms
from .kernels import (SLEEP_SQL, SLEEP_SQL_NAME, Kernel, assert_dataframe_values, assert_interrupt_stops_a_minute_long_job, assert_progress_names,
                      assert_python_worker_logs, kernel_environment, progress_descriptions, wait_until)

pytestmark = pytest.mark.e2e

STATE = 'print(__import__("sys").modules["pyspark_kernel_runtime"].RUNTIME.state)'
# Reads PySpark's active context before any use of spark or sc (entrypoints.Awaited).
DDL_FIRST = ("from pyspark.sql.functions import udf\nfrom pyspark.sql.types import StructType\n"
             "@udf('integer')\ndef plus_one(x):\n    return x + 1\n"
             "print(plus_one.returnType, StructType.fromDDL('a int, b string').simpleString())\n")
DDL_PRINTED = "IntegerType() struct<a:int,b:string>"
PRUNED = '__import__("sys").modules["pyspark_kernel_runtime"].RUNTIME.pruned.is_set()'  # set after the warm-up and the cache's pruning


def test_background_kernel_answers_at_once_and_the_first_use_of_spark_waits(start):
    kernel = start("rt-background")
    assert kernel.run(STATE).text.strip() == "starting"  # the kernel answered before Spark was up
    first = kernel.run("sc.parallelize(range(2), 2).map(lambda x: __import__('time').sleep(1.5) or x).count()")
    assert first.result == "2"
    waiting = [content["data"]["text/plain"] for kind, content in first.messages if kind in ("display_data", "update_display_data")]
    assert waiting[0] == "Spark is starting…", waiting  # then the elapsed time, in place
    assert re.fullmatch(r"Spark started after \d+\.\d s", first.displays[0]), first.displays
    # The cell began before there was a session, and still shows its job's progress.
    assert re.fullmatch(r"Spark: 1 job\(s\) done, 2/2 tasks, \d+\.\d s", first.displays[1]), first.displays
    banner = re.fullmatch(r"Spark \S+ \| master local\[\*\] \| app local-\d+ \| UI (http://127\.0\.0\.1:\d+)", first.stream.splitlines()[0])
    assert banner, first.stream
    with kernel.open_ui(banner.group(1), timeout=10) as page:  # the link works from this machine, for its owner
        assert page.status == 200
    with pytest.raises(urllib.error.HTTPError, match="403"):  # and for no one else (the UI's token: runtime.uiauth)
        urllib.request.urlopen(banner.group(1), timeout=10)
    assert kernel.run("print(type(spark).__name__, type(sc).__name__)").text.strip() == "SparkSession SparkContext"
    again = kernel.run("spark.range(10).count()")
    assert again.result == "10" and "Spark is starting" not in again.text and "Spark 4" not in again.text
    # Spark cells that need no pandas import none (PySpark's numpy converters would: converters.UntilNumpy),
    # and numpy values still reach the JVM once the notebook imports numpy.
    assert kernel.evaluate("sorted({'numpy', 'pandas', 'pyarrow'} & set(__import__('sys').modules))") == "[]"
    numpy_values = kernel.run("import numpy\nfrom pyspark.sql import functions as F\n"
                              "tuple(spark.range(1).select(F.lit(numpy.int64(7)), F.lit(numpy.array([1, 2]))).first())")
    assert numpy_values.result == "(7, [1, 2])", numpy_values.text
    noise = [line for line in first.text.splitlines() + again.text.splitlines() if re.search(r"\b(WARN|INFO)\b|log4j", line)]
    assert noise == []


def python_daemons(app_name):
    """{daemon pid: its workers' pids} of the Python worker daemons the kernel's JVM started."""
    import psutil

    found = {}
    for jvm in spark_jvms(app_name):
        try:
            children = jvm.children()
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:  # one that has exited (a zombie the JVM has not reaped yet) says nothing
                if "pyspark.daemon" in child.cmdline():
                    found[child.pid] = {worker.pid for worker in child.children()}
            except psutil.NoSuchProcess:
                continue
    return found


def test_a_kernel_left_idle_warms_the_python_paths_and_the_first_python_functions_use_them(start):
    kernel = start("rt-warm", "--warm_up", "python")
    # Nobody has run a Python function yet: the warm-up alone starts the RDD API's daemon and the
    # SQL UDFs' daemon (another), each with a worker per core used.
    wait_until(lambda: kernel.evaluate(PRUNED) == "True", 180, "the warm-up did not end")
    assert len(python_daemons("rt-warm")) == 2 and all(len(workers) >= 2 for workers in python_daemons("rt-warm").values()), python_daemons("rt-warm")
    warmed = set(python_daemons("rt-warm"))
    first = kernel.run("sc.parallelize(range(4), 2).map(lambda x: x + 1).collect()")
    assert first.result == "[1, 2, 3, 4]"
    assert first.stream.startswith("Spark "), first.stream  # the banner is the first cell's, not the warm-up's
    udf = kernel.run("from pyspark.sql.functions import udf\n[row[0] for row in spark.range(4).select(udf(lambda x: x * 2, 'long')('id')).collect()]")
    assert udf.result == "[0, 2, 4, 6]", udf.text
    arrow = kernel.run("import pandas as pd\nfrom pyspark.sql.functions import pandas_udf\n"
                       "def plus_one(s: pd.Series) -> pd.Series:\n    return s + 1\n"
                       "[row[0] for row in spark.range(3).select(pandas_udf(plus_one, 'long')('id')).collect()]")
    assert arrow.result == "[1, 2, 3]", arrow.text
    assert set(python_daemons("rt-warm")) == warmed  # the notebook's functions ran on the warmed daemons
    status = kernel.run("%spark status").stream
    for step in ("loading pyspark", "launching the driver JVM", "creating the SparkContext", "warm-up: a JVM job",
                 "warm-up: Python workers (RDD map)", "warm-up: Python UDF workers"):
        assert re.search(rf"^ +\d+\.\d\d s  {re.escape(step)}$", status, re.M), status


def test_lazy_kernel_starts_no_jvm_until_spark_is_used(start):
    kernel = start("rt-lazy", "--spark_init", "lazy", "--no-progress")
    assert kernel.run("1 + 1").result == "2"
    assert kernel.run(STATE).text.strip() == "idle"
    assert spark_jvms("rt-lazy") == []
    # The first use of Spark is a udf's DDL return type: it starts Spark, as spark or sc would.
    slow = kernel.run(DDL_FIRST + "sc.parallelize(range(4), 4).map(lambda x: __import__('time').sleep(1.5) or x).sum()")
    assert slow.result == "6" and DDL_PRINTED in slow.stream.splitlines(), slow.text
    assert spark_jvms("rt-lazy") != []
    assert slow.stream.splitlines()[0] == "Spark is starting…"  # a plain line: no live displays
    assert not [kind for kind, _ in slow.messages if kind in ("display_data", "update_display_data")]  # progress is off


def test_eager_kernel_has_spark_before_the_first_cell(start, tmp_path):
    notebooks = tmp_path / "My Notebooks"  # Spark's own default warehouse would be My%20Notebooks/spark-warehouse
    kernel = start("rt-eager", "--spark_init", "eager", cwd=notebooks)
    first = kernel.run(STATE)
    assert first.text.splitlines()[-1] == "ready"
    assert "Spark is starting" not in first.text
    check_sql_magic(kernel)
    assert_dataframe_values(kernel)
    check_conf_magic(kernel)
    saved = kernel.run("spark.range(2).write.saveAsTable('kept')\nprint(spark.table('kept').count())")
    assert saved.stream.strip().splitlines()[-1] == "2", saved.text
    assert (notebooks / "spark-warehouse" / "kept").is_dir() and not list(tmp_path.glob("*%20*")), sorted(tmp_path.iterdir())


def check_conf_magic(kernel):
    """%spark conf: the effective settings, secrets redacted; runtime settings now, others by a restart."""
    assert kernel.run("spark.conf.set('spark.myteam.password', 'hunter2'); kept = 'before'").error is None
    listed = kernel.run("%spark conf").stream
    assert "spark.sql.shuffle.partitions = 8\n" in listed and "spark.myteam.password = *********(redacted)\n" in listed, listed
    assert "hunter2" not in listed
    now = kernel.run("%spark conf spark.sql.shuffle.partitions=3")
    assert now.stream == "set now: spark.sql.shuffle.partitions=3\n" and kernel.run("print(spark.conf.get('spark.sql.shuffle.partitions'))").stream == "3\n"
    later = kernel.run("%spark conf spark.executor.memory=700m")
    assert later.stream.startswith("restarting the session for spark.executor.memory=700m (they need a new driver; Python variables are kept)\n"), later.stream
    after = kernel.run("print(sc.getConf().get('spark.executor.memory'), spark.conf.get('spark.sql.shuffle.partitions'), kept)")
    assert after.stream.splitlines()[-1] == "700m 8 before", after.stream  # the kernel's settings, merged with the new one
    bad = kernel.run("%spark conf shuffle=3")
    assert bad.stream.strip() == "UsageError: %spark conf: 'shuffle=3' is not KEY=VALUE with a spark.* key (usage: %spark conf [KEY=VALUE ...])", bad.stream


def check_sql_magic(kernel):
    """%%sql on a real session: a table of the first rows, the whole result bound, one-line errors."""
    shown = kernel.run("%%sql -n 5\nSELECT id, id * 2 AS twice FROM range(100)")
    [table] = [content["data"] for kind, content in shown.messages if kind == "display_data" and "text/html" in content["data"]
               and "pyspark-kernel-progress" not in content["data"]["text/html"]]  # the table, not the jobs' progress
    assert table["text/html"].count("<tr>") == 6 and "<th>twice</th>" in table["text/html"], table["text/html"]  # a header and 5 rows
    assert table["text/plain"].endswith("5 rows shown, the first of more (raise -n to see more)"), table["text/plain"]
    assert shown.error is None and shown.result is None
    bound = kernel.run("%%sql -n 5 -o out\nSELECT * FROM range(100)")
    assert "out: a Spark DataFrame of the whole result" in bound.stream
    assert kernel.run("out.count()").result == "100"
    assert kernel.run("below = 3").error is None
    param = kernel.run("%%sql --param below\nSELECT * FROM range(10) WHERE id < :below")
    assert [shown for shown in param.displays if shown.startswith("id\n")][0].endswith("\n3 rows"), param.displays
    pandas = kernel.run("%%sql -o few --pandas --limit 10\nSELECT * FROM range(100)")
    assert ("few: a pandas DataFrame of 10 rows (--limit 10); the result has more rows, which were not kept "
            "(raise --limit, or drop --pandas for a Spark DataFrame)") in pandas.stream, pandas.stream
    assert kernel.run("print(type(few).__name__, len(few))").stream == "DataFrame 10\n"
    bad = kernel.run("%%sql\nSELECT * FROM no_such_table")
    assert bad.error[0] == "SparkSQLError" and bad.error[1].startswith("[TABLE_OR_VIEW_NOT_FOUND]"), bad.error
    [traceback] = [content["traceback"] for kind, content in bad.messages if kind == "error"]
    assert len(traceback) == 1 and "\n" not in traceback[0] and "org.apache" not in traceback[0], traceback
    typo = kernel.run("%%sql\nSELEC 1")
    assert typo.error[0] == "SparkSQLError" and "PARSE_SYNTAX_ERROR" in typo.error[1] and "org.apache" not in typo.error[1], typo.error


def test_progress_follows_each_job_in_place_and_ends_as_a_summary_with_a_link_per_job_and_interrupt_cancels_a_cells_jobs(start, tmp_path):
    """Progress, then an interrupt, on one local[2] kernel: a kernel and its JVM cost seconds of CPU
    each. The interrupt comes last, so the progress checks see only their own jobs."""
    kernel = start("rt-progress", "--spark_master", "local[2]")
    # A first cell that reads PySpark's active context before any use of spark, on a kernel whose
    # start is still running, waits for it as the builder does (entrypoints.Awaited): a udf's DDL
    # return type and StructType.fromDDL, which the classic pyspark shell has at once.
    first = kernel.run(DDL_FIRST + "spark.range(1).count()")
    assert first.error is None and DDL_PRINTED in first.stream.splitlines(), first.text
    # Two jobs, the second of two stages (a shuffle), each task a second or more.
    run = kernel.run("import time\n"
                     "sc.parallelize(range(4), 4).map(lambda x: time.sleep(1) or x).count()\n"
                     "sorted(sc.parallelize(range(4), 4).map(lambda x: (x % 2, time.sleep(1.5) or x)).reduceByKey(lambda a, b: a + b, 2).collect())")
    assert run.result == "[(0, 2), (1, 4)]"
    shown = [(kind, content["data"], content["transient"]["display_id"]) for kind, content in run.messages if kind in ("display_data", "update_display_data")]
    assert shown[0][0] == "display_data" and re.match(r"Spark: \[[#.]{20}\] jobs 0/1, stages 0/1, tasks \d/4 \(\d running\)", shown[0][1]["text/plain"]), shown
    assert {display_id for _, _, display_id in shown} == {shown[0][2]}  # one display, updated in place
    assert len([data for kind, data, _ in shown if kind == "update_display_data" and "text/html" in data]) >= 2
    final = shown[-1][1]
    assert shown[-1][0] == "update_display_data" and re.fullmatch(r"Spark: 2 job\(s\) done, 10/10 tasks, \d+\.\d s", final["text/plain"]), shown[-1]
    links = re.findall(r'<a href="([^"]+)" target="_blank" rel="noopener">(\d+)</a>', final["text/html"])
    assert len(links) == 2 and final["text/html"].count("<td>succeeded</td>") == 2 and "<td>2/2</td>" in final["text/html"], final["text/html"]
    for link, job in links:
        assert link.startswith("http://127.0.0.1:") and link.endswith(f"/jobs/job/?id={job}")
        with kernel.open_ui(link) as page:  # the job's own page in the Spark UI, as its owner opens it
            assert page.status == 200 and f"Details for Job {job}" in page.read().decode()
    # Each job is named after the cell (its In [N]) and line that ran it (runtime.callsite).
    number = run.reply["execution_count"]
    assert progress_descriptions(run) == [f"count at cell [{number}], line 2", f"collect at cell [{number}], line 3"], progress_descriptions(run)
    check_jobs_named_after_the_code(kernel, links[0][0].split("/jobs/")[0], tmp_path, first.reply["execution_count"])
    assert_python_worker_logs(kernel)
    # An interrupt cancels the cell's jobs, and Spark stays usable.
    assert_interrupt_stops_a_minute_long_job(kernel, tmp_path / "running")


def check_jobs_named_after_the_code(kernel, ui, tmp_path, first):
    """The progress table and the Spark UI name each job after the code that ran it: a %%sql
    query, a DataFrame action (the ``first`` cell's, at its last line), a function of a module the
    notebook imported, another thread of a cell, a DataFrame shown as a cell's value. The jobs have
    no description of their own, so the UI's jobs page shows the name once; its SQL page too."""
    assert_progress_names(kernel, SLEEP_SQL, lambda number: SLEEP_SQL_NAME)
    counted = f"count at cell [{first}], line {DDL_FIRST.count(chr(10)) + 1}"
    (tmp_path / "jobs_helper.py").write_text("def total(spark):\n    return spark.range(5).count()\n")
    elsewhere = kernel.run(f"import sys, threading\nsys.path.insert(0, {str(tmp_path)!r})\nimport jobs_helper\nprint(jobs_helper.total(spark))\n"
                           "worker = threading.Thread(target=lambda: spark.range(2).collect())\nworker.start()\nworker.join()")
    assert elsewhere.error is None and elsewhere.stream.strip().splitlines()[-1] == "5", elsewhere.text
    shown = kernel.run("spark.range(3)")
    assert shown.error is None and shown.result.startswith("DataFrame[id: bigint]"), shown.text
    expected = {counted, SLEEP_SQL_NAME, f"count at {tmp_path / 'jobs_helper.py'}:2",
                f"collect at cell [{elsewhere.reply['execution_count']}], line 5", f"show at cell [{shown.reply['execution_count']}], line 1"}
    app = ast.literal_eval(kernel.evaluate("sc.applicationId"))

    def read(what):
        with kernel.open_ui(f"{ui}/api/v1/applications/{app}/{what}") as page:
            return json.load(page)

    jobs = []

    def all_named():
        jobs[:] = read("jobs")
        return expected <= {job["name"] for job in jobs}

    try:  # the UI hears of jobs from Spark's listener bus, which can lag on a busy machine
        wait_until(all_named, 30, "the Spark UI does not name the jobs after the code")
    except AssertionError:
        raise AssertionError((expected, [job["name"] for job in jobs])) from None
    named = [job for job in jobs if job["name"] in expected]
    assert not [job for job in named if job.get("description")], named
    queries = {query["description"] for query in read("sql")}
    assert {counted, SLEEP_SQL_NAME} <= queries, queries


def path_without_java():
    return os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(d, "java")))


def test_no_java_is_explained_in_the_notebook_and_the_kernel_lives_on(start):
    kernel = start("rt-nojava", PATH=path_without_java(), JAVA_HOME=None)
    failed = kernel.run("spark.range(1).count()")
    assert failed.error == ("SparkStartError", "Java not found: no java on PATH and JAVA_HOME is not set (install a JDK 17+ or set JAVA_HOME in the kernel's env)")
    assert kernel.run("1 + 1").result == "2"
    assert kernel.run("sc.master").error[0] == "SparkStartError"


def test_a_master_spark_cannot_parse_is_explained_with_the_jvm_output(start, kernels_dir):
    def break_master(kernel_json):
        spec = json.loads(kernel_json.read_text())
        conf = json.loads(spec["env"]["PYSPARK_KERNEL_SPARK_CONF"])
        conf["spark.master"] = "locl[*]"  # as if kernel.json had been edited by hand
        spec["env"]["PYSPARK_KERNEL_SPARK_CONF"] = json.dumps(conf)
        kernel_json.write_text(json.dumps(spec))

    kernel = start("rt-badmaster", edit=break_master)
    failed = kernel.run("spark.range(1).count()", timeout=90)
    assert failed.error[0] == "SparkStartError"
    message = failed.error[1]
    assert message.startswith("Spark did not start: the master URL is not one Spark knows (fix spark.master")
    assert "SparkException: Master must either be yarn or start with spark, k8s, or local" in message  # from the JVM
    assert "--- last lines of the JVM output" in message
    assert kernel.run("1 + 1").result == "2"


def test_standalone_master_where_nothing_listens_fails_at_once(start):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kernel = start("rt-nomaster", "--spark_master", f"spark://127.0.0.1:{port}")
    failed = kernel.run("spark.range(1).count()", timeout=60)
    assert failed.error[0] == "SparkStartError"
    assert failed.error[1].startswith(f"Spark master spark://127.0.0.1:{port} is unreachable: nothing listens on 127.0.0.1:{port}")
    assert kernel.run("1 + 1").result == "2"


def test_a_master_that_never_answers_fails_after_start_timeout(start):
    """Something listens but never speaks Spark: the start is abandoned after start_timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.extend(iter_accept(server)), daemon=True).start()
    try:
        port = server.getsockname()[1]
        kernel = start("rt-silent", "--spark_master", f"spark://127.0.0.1:{port}", "--start_timeout", "10")
        failed = kernel.run("spark.range(1).count()", timeout=90)
        assert failed.error[0] == "SparkStartError"
        assert failed.error[1].startswith(f"Spark did not start within 10 s on master spark://127.0.0.1:{port}")
        assert kernel.run("1 + 1").result == "2"
        assert spark_jvms("rt-silent") == []  # the stuck JVM was stopped
    finally:
        server.close()
        for connection in accepted:
            connection.close()


def iter_accept(server):
    while True:
        try:
            yield server.accept()[0]
        except OSError:
            return


def test_shutdown_restart_and_kill_leave_no_jvm_and_no_scratch(kernels_dir, tmp_path):
    make_kernel(kernels_dir, "rt-cycles")
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    env = kernel_environment(tmp_dir)
    # A graceful shutdown is what every test's `start` fixture ends with and checks; "restart" ends
    # with shutdown_kernel(now=True) too, so a separate "now" cycle would add nothing.
    for how in ("restart", "kill"):
        kernel = Kernel(kernels_dir, "rt-cycles", env)
        try:
            assert kernel.run("spark.range(100).count()").result == "100"
            if how == "restart":
                kernel.manager.restart_kernel(now=True)
                kernel.client.wait_for_ready(timeout=60)
                assert kernel.run("spark.range(100).count()").result == "100"
            if how == "kill":
                os.kill(kernel.manager.provisioner.process.pid, signal.SIGKILL)
        finally:
            kernel.stop(now=how in ("restart", "kill"))
        assert_left_nothing("rt-cycles", tmp_dir)


def leave_entries_of_deleted_environments(cache, archive, tmp_path, count):
    """What kernels of ``count`` environments, each with its own pip pyspark and packed for a
    cluster's executors, leave in the cache; then the environments are deleted. The packs are
    packed; the archives, as a kernel records them (Java and Spark installation), hold the real
    archive's bytes (hard links: a JVM per environment would take minutes)."""
    import shutil
    import subprocess
    import sys

    from pyspark_kernel import pack
    from pyspark_kernel.runtime import cache as runtime_cache
    from pyspark_kernel.runtime import diagnostics

    java = os.path.realpath(diagnostics.find_java(os.environ))
    for index in range(count):
        env = tmp_path / f"env-{index}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
        spark_home = next((env / "lib").glob("python3*/site-packages")) / "pyspark"
        spark_home.mkdir()
        kernel_dir = tmp_path / f"kernel-{index}"
        kernel_dir.mkdir()
        pack.pack_environment(str(env), str(kernel_dir))
        theirs = str(cache / "pyspark-kernel" / "cds" / f"spark-deleted{index}.jsa")
        os.link(archive, theirs)
        runtime_cache.write_record(theirs, [java, os.path.realpath(spark_home)])
        shutil.rmtree(env)
        shutil.rmtree(kernel_dir)


def installed_jdk(feature):
    """JAVA_HOME of a JDK ``feature`` installed where Linux distributions put JDKs, or None."""
    from pyspark_kernel.runtime import diagnostics

    root = "/usr/lib/jvm"
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        home = os.path.join(root, name)
        found = diagnostics.release_version(diagnostics.java_release(os.path.join(home, "bin", "java")))
        if found and found[0] == feature and not os.path.islink(home):
            return home
    return None


def archive_mapped(app_name, archive):
    """Whether a driver JVM of ``app_name`` has ``archive`` mapped into its memory."""
    import psutil

    for jvm in spark_jvms(app_name):
        try:
            if any(region.path == archive for region in jvm.memory_maps()):
                return True
        except psutil.Error:
            continue
    return False


def run_once(kernels_dir, name, env, expect_options=(), notice=None):
    """One kernel start with one Spark cell: the JVM's options that begin with ``expect_options``
    were on its command line; ``notice`` (a regex) is the line the cell printed after the banner, or no notice
    line at all. The JVMs' archive mappings, as {archive: mapped}, asked while the kernel ran."""
    kernel = Kernel(kernels_dir, name, env)
    try:
        ran = kernel.run("spark.range(10).count()")
        assert ran.result == "10", ran.text
        arguments = [arg for jvm in spark_jvms(name) for arg in jvm.cmdline()]
        for option in expect_options:
            assert any(arg.startswith(option) for arg in arguments), (option, arguments)
        lines = ran.stream.splitlines()
        if notice:
            assert lines[0].startswith("Spark "), lines  # the banner, then one line (the start's notices follow it)
            assert re.fullmatch(notice, lines[1]), lines
        else:
            assert not [line for line in lines if "class-data-sharing" in line], lines
        archives = {arg.split("=", 1)[1] for arg in arguments if arg.startswith("-XX:SharedArchiveFile=")}
        return {archive: archive_mapped(name, archive) for archive in archives}
    finally:
        kernel.stop()


def written_whole(cds_dir):
    """The one archive in ``cds_dir``, checked to be at the size its writer recorded."""
    archives = glob.glob(str(cds_dir / "spark-*.jsa"))
    assert len(archives) == 1, os.listdir(cds_dir)
    size = os.path.getsize(archives[0])
    assert size > 10_000_000 and (cds_dir / (os.path.basename(archives[0]) + ".size")).read_text().strip() == str(size)
    assert not glob.glob(str(cds_dir / "*.partial"))
    return archives[0]


JDKS = [pytest.param(17, id="jdk17"), pytest.param(25, id="jdk25")]


@pytest.mark.parametrize("feature", JDKS)
def test_class_data_sharing_archive_is_built_once_and_a_broken_one_is_set_aside_and_rebuilt(kernels_dir, tmp_path, monkeypatch, feature):
    """Per JDK, what the JDK decides: the archive its JVM writes, maps, and what it does with one cut
    short at a size its writer recorded (JDK 17's JVM dies mapping it: the start is retried without
    it; JDK 19+ find it out and write it again themselves). What the kernel decides before any JVM
    starts (an archive at a size other than the one recorded is set aside and written again; the
    start prunes the cache) is the same on every JDK: tested on JDK 17's kernel. Each start writes
    or maps an archive, about 20 s of CPU: no start here is there for anything another one shows."""
    java_home = None
    if feature != 17:
        java_home = installed_jdk(feature)
        if java_home is None:
            pytest.skip(f"no JDK {feature} installed under /usr/lib/jvm")
    name = f"rt-cds{feature}"
    make_kernel(kernels_dir, name, *(["--env", f"JAVA_HOME={java_home}"] if java_home else []))
    cache = tmp_path / "cache"
    cds_dir = cache / "pyspark-kernel" / "cds"
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    env = kernel_environment(tmp_dir, XDG_CACHE_HOME=str(cache))
    writes = "-XX:ArchiveClassesAtExit=" if feature < 19 else "-XX:+AutoCreateSharedArchive"
    run_once(kernels_dir, name, env, [writes])
    assert_left_nothing(name, tmp_dir)
    archive = written_whole(cds_dir)
    whole = os.path.getsize(archive)
    kept = tmp_path / "whole.jsa"  # a copy, for the next step but one: no JVM need write it again
    shutil.copyfile(archive, kept)

    # Cut short at a size its writer recorded: the check cannot tell, and JDK 17's JVM dies mapping it
    # (SIGBUS): the start is retried without it, and the next start writes it again; JDK 19+ find it
    # out and write it again themselves.
    os.truncate(archive, whole // 2)
    (cds_dir / (os.path.basename(archive) + ".size")).write_text(f"{whole // 2}\n")
    if feature < 19:
        mapped = run_once(kernels_dir, name, env, notice=re.escape(f"The class-data-sharing archive {archive} was unusable (the JVM crashed "
                                                                   "mapping it): set aside; this start ran without it and the next rebuilds it."))
        assert mapped == {}  # the JVM that runs was started without it
        assert_left_nothing(name, tmp_dir)
        assert not os.path.exists(archive)
    else:
        run_once(kernels_dir, name, env, [writes])
        assert_left_nothing(name, tmp_dir)
        assert written_whole(cds_dir) == archive
        # The next start maps the archive its JVM wrote again.
        assert run_once(kernels_dir, name, env) == {archive: True}
        assert_left_nothing(name, tmp_dir)
        return
    # JDK 17: the archive set aside, the next start writes it again; the one below does, after
    # setting aside another one cut short. That one is the first archive again, whole as written.
    shutil.copyfile(kept, archive)
    (cds_dir / (os.path.basename(archive) + ".size")).write_text(f"{whole}\n")

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # where pack_environment caches, as a kernel's create would
    leave_entries_of_deleted_environments(cache, archive, tmp_path, 5)
    left = sorted(os.listdir(cache / "pyspark-kernel" / "environments")) + sorted(os.listdir(cds_dir))
    assert len([name for name in left if name.endswith((".tar.gz", ".jsa"))]) == 11, left

    # Cut short (a full disk, a copy that stopped): set aside before any JVM maps it, and written again.
    whole = os.path.getsize(archive)
    os.chmod(archive, 0o644)
    os.truncate(archive, whole // 2)
    user = Kernel(kernels_dir, name, {**env, "PYSPARK_KERNEL_CACHE_LIMIT": "1G"})
    try:
        ran = user.run("spark.range(10).count()")
        assert ran.result == "10", ran.text
        assert ran.stream.splitlines()[1] == (f"The class-data-sharing archive {archive} was unusable (it is {whole // 2} bytes long, and was written "
                                              f"{whole} bytes long): set aside; this kernel's JVM writes a new one as it exits."), ran.stream
        assert any(arg.startswith(writes) for jvm in spark_jvms(name) for arg in jvm.cmdline())
        # Once started, the kernel pruned the cache: nothing is left of the deleted environments, nor of the archive set aside.
        wait_until(lambda: user.evaluate(PRUNED) == "True", 60, "the kernel did not prune the cache")
    finally:
        user.stop()
    assert_left_nothing(name, tmp_dir)
    assert sorted(os.listdir(cache / "pyspark-kernel" / "environments")) == []
    assert written_whole(cds_dir) == archive
    assert sorted(os.listdir(cds_dir)) == sorted(os.path.basename(archive) + suffix for suffix in ("", ".json", ".size"))
    # The next start maps the rebuilt archive.
    assert run_once(kernels_dir, name, env) == {archive: True}
    assert_left_nothing(name, tmp_dir)


def test_new_spark_jars_get_an_archive_of_their_own_and_one_the_jvm_refuses_is_set_aside(kernels_dir, tmp_path, spark_distribution, venv_without_pyspark):
    import shutil

    from pyspark_kernel.runtime import diagnostics, jvm

    # A Spark installation whose jars can change: each a link to the installed one, but spark-core a copy.
    home = tmp_path / "spark"
    shutil.copytree(spark_distribution, home, symlinks=True, ignore=shutil.ignore_patterns("jars"))
    source = os.path.realpath(spark_distribution / "jars")
    (home / "jars").mkdir()
    for jar in os.listdir(source):
        os.symlink(os.path.join(source, jar), home / "jars" / jar)
    core = next((home / "jars").glob("spark-core_*.jar"))
    core.unlink()
    shutil.copyfile(os.path.join(source, core.name), core)
    make_kernel(kernels_dir, "rt-jars", "-e", str(venv_without_pyspark), "--spark_home", str(home))
    cache = tmp_path / "cache"
    cds_dir = cache / "pyspark-kernel" / "cds"
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    env = kernel_environment(tmp_dir, XDG_CACHE_HOME=str(cache))
    run_once(kernels_dir, "rt-jars", env, ["-XX:ArchiveClassesAtExit="])
    assert_left_nothing("rt-jars", tmp_dir)
    old = written_whole(cds_dir)

    # PySpark reinstalled (or downgraded back): the same jar, a new file. The JVM would refuse the old archive.
    java = diagnostics.find_java(env)
    shutil.copyfile(os.path.join(source, core.name), str(core) + ".new")
    os.replace(str(core) + ".new", core)
    new = str(cds_dir / (jvm.archive_name(java, str(home)) + ".jsa"))
    assert new != old
    # Were the old archive found under the new name (as a key that left modification times out found it),
    # the JVM refuses it: it is set aside, and the next start writes the new one.
    os.rename(old, new)
    os.rename(old + ".size", new + ".size")
    mapped = run_once(kernels_dir, "rt-jars", env, notice=re.escape(f"The class-data-sharing archive {new} was unusable (the JVM refused it: ") + r".*"
                      + re.escape("): set aside; this start runs without it and the next rebuilds it."))
    assert mapped == {new: False}
    assert_left_nothing("rt-jars", tmp_dir)
    assert not os.path.exists(new)
    # That the next start writes the archive set aside, and the one after maps it, is the same on
    # every Spark installation: test_class_data_sharing_archive_is_built_once_...[jdk17] shows it.


def test_a_client_that_requires_encryption_runs_spark_over_curvezmq(kernels_dir, tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    make_kernel(kernels_dir, "rt-curve")
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    manager = KernelManager(kernel_name="rt-curve", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels_dir)]), transport_encryption="required")
    manager.start_kernel(env=kernel_environment(tmp_dir), cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        messages = []
        reply = client.execute_interactive("spark.range(100).count()", timeout=120, output_hook=lambda m: messages.append(m))
        assert reply["content"]["status"] == "ok"
        assert [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"] == ["100"]
        with open(manager.connection_file, encoding="utf-8") as handle:
            assert [key for key in json.load(handle) if "curve" in key], "the kernel got no CurveZMQ keys"
    finally:
        client.stop_channels()
        manager.shutdown_kernel()
    assert_left_nothing("rt-curve", tmp_dir)


def test_a_kernel_whose_pyspark_was_removed_names_the_cause_and_the_fix_that_works(kernels_dir, tmp_path):
    import shlex
    import subprocess

    from .conftest import user_pip_cache, venv_with_project_packages

    venv = venv_with_project_packages(tmp_path, (), copy=True, bytecode=True)  # its own site-packages: pip may remove and install there
    python = str(venv / "bin" / "python")
    # No class-data-sharing archive: this pyspark's installation would have one of its own to write (seconds of CPU).
    make_kernel(kernels_dir, "rt-nopyspark", "-e", str(venv), "--no-class_data_sharing")
    subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--disable-pip-version-check", "pyspark"], check=True, capture_output=True)
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    kernel = Kernel(kernels_dir, "rt-nopyspark", kernel_environment(tmp_dir))
    try:
        failed = kernel.run("spark.range(3).count()")
        assert failed.error and failed.error[0] == "SparkStartError", failed.text
        said = re.fullmatch(r"pyspark is not installed in the kernel's environment (\S+) \(install it: (.+), then restart the kernel\)", failed.error[1])
        assert said, failed.error[1]
        assert os.path.realpath(said.group(1)) == os.path.realpath(venv)
        import pyspark

        assert said.group(2) == f"{python} -m pip install pyspark=={pyspark.__version__}"  # the version the kernel was made for
        installed = subprocess.run(shlex.split(said.group(2)), capture_output=True, text=True, timeout=900, env=user_pip_cache())  # the fix, as printed
        assert installed.returncode == 0, installed.stderr[-2000:]
        kernel.manager.restart_kernel(now=True)
        kernel.wait_for_ready()
        assert kernel.run("spark.range(3).count()").result == "3"
    finally:
        kernel.stop()
    assert_left_nothing("rt-nopyspark", tmp_dir)
