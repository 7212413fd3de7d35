"""Start a real kernel from a generated kernel.json and talk to it, as Jupyter does."""

import html
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from pyspark_kernel.runtime import uiauth

READY_TIMEOUT = 60
CELL_TIMEOUT = 180


@dataclass
class CellRun:
    reply: dict
    messages: list = field(default_factory=list)  # (msg_type, content) of the cell's iopub messages

    @property
    def text(self):
        """Everything the cell printed, its result and its displays, as text."""
        parts = []
        for kind, content in self.messages:
            if kind == "stream":
                parts.append(content["text"])
            elif kind in ("execute_result", "display_data", "update_display_data"):
                parts.append(content["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                parts.append(f"{content['ename']}: {content['evalue']}\n")
        return "".join(parts)

    @property
    def stream(self):
        """What the cell printed (stdout and stderr), without its displays."""
        return "".join(content["text"] for kind, content in self.messages if kind == "stream")

    @property
    def displays(self):
        """The last text of each display the cell showed, in the order they appeared."""
        shown = {}
        for kind, content in self.messages:
            if kind in ("display_data", "update_display_data"):
                shown[content.get("transient", {}).get("display_id") or len(shown)] = content["data"].get("text/plain", "")
        return list(shown.values())

    @property
    def result(self):
        return next((c["data"]["text/plain"] for k, c in self.messages if k == "execute_result"), None)

    @property
    def error(self):
        return next(((c["ename"], c["evalue"]) for k, c in self.messages if k == "error"), None)


class Kernel:
    def __init__(self, kernels_dir, name, env, wait=True, transport="tcp", cwd=None):
        # transport "ipc": Unix sockets, which a kernel in a network namespace of its own still reaches.
        # Its sockets' paths begin with ip: in the kernel's TMPDIR, not the directory the tests run
        # from (the checkout, which other tests copy).
        where = {"ip": os.path.join(env["TMPDIR"], "kernel-ipc")} if transport == "ipc" else {}
        self.manager = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels_dir)]), transport=transport, **where)
        # cwd: the notebook's directory, by default one beside the kernel's TMPDIR: not the checkout,
        # where a driver makes its spark-warehouse.
        cwd = cwd or f"{env['TMPDIR']}.notebook"
        os.makedirs(cwd, exist_ok=True)
        self.manager.start_kernel(env=env, cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        if wait:
            self.wait_for_ready()

    def open_ui(self, url, timeout=30):
        """A page of this kernel's Spark UI as its owner's Jupyter server opens it: with the token
        the kernel left beside its connection file (runtime.uiauth)."""
        token = uiauth.read_token(os.path.dirname(self.manager.connection_file), urllib.parse.urlsplit(url).port)
        return urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {}), timeout=timeout)

    def wait_for_ready(self):
        self.client.wait_for_ready(timeout=READY_TIMEOUT)

    def run(self, code, timeout=CELL_TIMEOUT):
        messages = []
        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=lambda m: messages.append((m["msg_type"], m["content"])))
        return CellRun(reply["content"], messages)

    def evaluate(self, expression, timeout=CELL_TIMEOUT):
        """The repr of ``expression`` in the kernel, asked silently: IPython runs no cell hooks for
        it, so the kernel does not take it for a cell (a cell cancels the warm-up's job)."""
        reply = self.client.execute_interactive("", silent=True, store_history=False, user_expressions={"x": expression}, timeout=timeout)
        found = reply["content"]["user_expressions"]["x"]
        assert found["status"] == "ok", found
        return found["data"]["text/plain"]

    def stop(self, now=False):
        self.client.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=now)


def wait_until(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


def kernel_environment(tmp_dir, **changes):
    """The Jupyter server's environment for a kernel: the test's, with its own TMPDIR."""
    env = {**os.environ, "TMPDIR": str(tmp_dir)}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


INTERRUPT_BOUND = 15  # seconds: a minute-long job stops well before its end, on a busy machine too


def assert_interrupt_stops_a_minute_long_job(kernel, markers):
    """Interrupt a cell whose two tasks would each sleep a minute: it must end in KeyboardInterrupt
    well before, with no Spark job left active, and Spark usable (the latency is in make bench)."""
    markers.mkdir()
    client = kernel.client
    # stop_on_error=False: ipykernel would otherwise abort a request that arrives just after the
    # interrupted cell's reply, racing the next cell.
    msg_id = client.execute(f"sc.parallelize(range(2), 2).map(lambda x: open({str(markers)!r} + '/%d' % x, 'w').close() or __import__('time').sleep(60)).count()",
                            stop_on_error=False)
    wait_until(lambda: len(os.listdir(markers)) == 2, 60, "the job's tasks never started")
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    error = wait_for_message(client, msg_id, lambda kind, content: kind == "error", INTERRUPT_BOUND, f"the cell was not interrupted within {INTERRUPT_BOUND} s")
    stopped_after = time.monotonic() - interrupted
    assert error["ename"] == "KeyboardInterrupt", "\n".join(error["traceback"])
    assert stopped_after < INTERRUPT_BOUND, f"the cell took {stopped_after:.1f} s to stop"
    client.get_shell_msg(timeout=INTERRUPT_BOUND)
    after = kernel.run("print(sc.statusTracker().getActiveJobsIds(), spark.range(100).count())", timeout=60)  # not the minute
    assert "[] 100" in after.text.splitlines(), after.messages


def wait_for_message(client, msg_id, wanted, timeout, failure):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - queue.Empty at the deadline, or the channel closed with the kernel: no more messages
            break
        if message["parent_header"].get("msg_id") == msg_id and wanted(message["msg_type"], message["content"]):
            return message["content"]
    raise AssertionError(failure)


def assert_dataframe_values(kernel):
    """A DataFrame as a cell's value (runtime.frames): PySpark's schema line, then its first rows as
    a table (HTML) and as text, within the session's eager-evaluation settings; a result without
    columns, its line alone; with eager evaluation off, the line alone."""

    def value(code):
        cell = kernel.run(code)
        assert cell.error is None, cell.text
        [data] = [content["data"] for kind, content in cell.messages if kind == "execute_result"]
        return data

    rows = value("spark.range(3).selectExpr('id', 'id / 2 AS half')")
    assert rows["text/plain"].splitlines()[:2] == ["DataFrame[id: bigint, half: double]", "+---+----+"], rows["text/plain"]
    assert "|  2| 1.0|" in rows["text/plain"].splitlines(), rows["text/plain"]
    assert rows["text/html"].startswith("<pre>DataFrame[id: bigint, half: double]</pre>") and "<table" in rows["text/html"], rows
    ddl = value("spark.sql('CREATE OR REPLACE TEMPORARY VIEW shown AS SELECT 1 AS a')")
    assert ddl == {"text/plain": "DataFrame[]"}, ddl
    assert value("spark.sql('SELECT * FROM shown').select()") == {"text/plain": "DataFrame[]"}
    few = value("spark.conf.set('spark.sql.repl.eagerEval.maxNumRows', '2')\nspark.range(5)")
    assert few["text/plain"].splitlines()[-1] == "only showing top 2 rows", few["text/plain"]
    line = value("spark.conf.set('spark.sql.repl.eagerEval.enabled', 'false')\nspark.table('shown')")
    assert line == {"text/plain": "DataFrame[a: int]"}, line
    kernel.run("spark.conf.unset('spark.sql.repl.eagerEval.maxNumRows'); spark.conf.set('spark.sql.repl.eagerEval.enabled', 'true')")


# A query whose one task sleeps a second in the JVM (no Python worker to start), and a DataFrame
# count of the same: long enough for a cell's progress table (runtime.progress shows one after half
# a second of Spark work).
SLEEP_SQL = "%%sql\n   SELECT reflect('java.lang.Thread', 'sleep', 1000L) AS slept\n"
SLEEP_SQL_NAME = "SELECT reflect('java.lang.Thread', 'sleep', 1000L) AS slept"
SLEEP_COUNT = "spark.range(1).where(\"reflect('java.lang.Thread', 'sleep', 1000L) IS NOT NULL\").count()"


def progress_descriptions(cell):
    """The job descriptions of the cell's progress table, as its last update showed them."""
    tables = [content["data"]["text/html"] for kind, content in cell.messages
              if kind in ("display_data", "update_display_data") and "pyspark-kernel-progress" in content["data"].get("text/html", "")]
    assert tables, f"the cell showed no progress table: {cell.text}"
    return [html.unescape(found) for found in re.findall(r' title="([^"]*)"', tables[-1])]


def assert_progress_names(kernel, code, name):
    """Run ``code``: its progress table names each of its jobs ``name(N)``, N the cell's execution
    count (IPython's In [N]): the code's cell and line, or a %%sql query's first line (runtime.callsite)."""
    cell = kernel.run(code)
    assert cell.error is None, cell.text
    expected = name(cell.reply["execution_count"])
    assert set(progress_descriptions(cell)) == {expected}, (expected, progress_descriptions(cell))
    return cell


WORKER_LOGS = ("import logging\nfrom pyspark.sql.functions import udf\n"
               "@udf('string')\ndef shout(value):\n    logging.getLogger('jobs-worker').warning('saw %s', value)\n    return value.upper()\n"
               "spark.conf.set('spark.sql.pyspark.worker.logging.enabled', 'true')\n"
               "print([row[0] for row in spark.createDataFrame([('a',), ('b',)], ['v']).select(shout('v')).collect()])\n"
               "print(sorted(row.msg for row in spark.tvf.python_worker_logs().where(\"logger = 'jobs-worker'\").collect()))")


def assert_python_worker_logs(kernel):
    """The debugging guide's Python worker logging (Spark 4.1+): what a UDF logs is the session's
    table-valued function python_worker_logs(), as on plain PySpark."""
    cell = kernel.run(WORKER_LOGS)
    assert cell.error is None and cell.stream.strip().splitlines()[-2:] == ["['A', 'B']", "['saw a', 'saw b']"], cell.text
