"""Job names after the notebook's code (runtime.callsite), without Spark: stacks made of functions
compiled under the file names PySpark, the runtime, IPython and a cell have in a kernel."""

import sys
import threading

import pytest

from pyspark_kernel.runtime import callsite, progress

SPARK = ("/site/pyspark/", "/site/py4j/")
MACHINERY = ("/site/IPython/",)
RUNTIME = "/kernel/pyspark_kernel_runtime/"
CELL = "/tmp/ipykernel_7/3408644409.py"
MODULE = "/home/ann/helpers.py"


def define(filename, source):
    """The functions of ``source``, compiled as if they were read from ``filename``."""
    namespace = {"sys": sys}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


# PySpark's side: an action that calls Py4J, a transformation that calls back into the notebook's function.
spark = define(SPARK[0] + "sql/dataframe.py", "def count(inner):\n    return inner()\n\ndef transform(function, inner):\n    return function(inner)\n")
py4j = define(SPARK[1] + "java_gateway.py", "def send():\n    return sys._getframe()\n")
runtime = define(RUNTIME + "frames.py", "def rich(call, inner):\n    return call(inner)\n")
ipython = define(MACHINERY[0] + "core/displayhook.py", "def show(call, *args):\n    return call(*args)\n")
cell = define(CELL, "def run_count():\n    return count(send)\n\ndef run_transform():\n    return transform(lambda inner: count(inner), send)\n\n"
                    "def show_value():\n    return show(rich, count, send)\n\ndef set_group():\n    return rich(count, send)\n")
cell.update(count=spark["count"], transform=spark["transform"], send=py4j["send"], show=ipython["show"], rich=runtime["rich"])
helpers = define(MODULE, "\n\n\ndef total():\n    return count(send)\n")
helpers.update(count=spark["count"], send=py4j["send"])


@pytest.fixture
def kernel_like(monkeypatch):
    """The kernel's roots and IPython's map of cell files to execution counts."""
    monkeypatch.setattr(callsite, "found_roots", (SPARK, MACHINERY))
    monkeypatch.setattr(callsite, "RUNTIME", (RUNTIME, callsite.RUNTIME))  # and the runtime's real files (progress)
    monkeypatch.setattr(callsite, "cells", {CELL: 2})


def test_a_job_is_named_after_the_cells_execution_count_and_line_and_a_modules_file():
    assert callsite.label("count", CELL, 1, {CELL: 2}) == "count at cell [2], line 1"
    assert callsite.label("count", MODULE, 12, {CELL: 2}) == "count at /home/ann/helpers.py:12"  # PySpark's own form


def test_a_query_is_named_after_its_first_line_trimmed_and_cut():
    assert callsite.first_line("\n   SELECT k, count(*) AS n  \n  FROM t GROUP BY k\n") == "SELECT k, count(*) AS n"
    long = "SELECT " + ", ".join(f"column_{n}" for n in range(40))
    cut = callsite.first_line(long)
    assert len(cut) == callsite.LABEL_WIDTH and cut.endswith("…") and long.startswith(cut[:-1])
    assert callsite.first_line(" \n\t\n") is None


def test_the_call_site_is_the_code_outside_pyspark_with_its_outermost_spark_function(kernel_like):
    assert callsite.site(cell["run_count"](), SPARK, MACHINERY, RUNTIME) == ("count", CELL, 2)
    assert callsite.name_of(cell["run_count"]()) == "count at cell [2], line 2"
    assert callsite.name_of(helpers["total"]()) == "count at /home/ann/helpers.py:5"  # a module keeps its own file and line
    top = {"count": spark["count"], "send": py4j["send"]}
    exec(compile("\nframe = count(send)\n", CELL, "exec"), top)  # the cell's own code, outside any function: the walk ends there
    assert callsite.name_of(top["frame"]) == "count at cell [2], line 2"
    # Code that PySpark calls back (a function given to transform, a cached property through
    # functools): the outermost PySpark function and its caller, as PySpark's first_spark_call has it.
    assert callsite.name_of(cell["run_transform"]()) == "transform at cell [2], line 5"
    cached = define("/usr/lib/python3.11/functools.py", "def __get__(inner):\n    return inner()\n")
    schema = define(SPARK[0] + "sql/classic/dataframe.py", "def collect(get, inner):\n    return get(inner)\n")
    caller = define(CELL, "\n\n\ndef run(collect, get, send):\n    return collect(get, send)\n")
    assert callsite.name_of(caller["run"](schema["collect"], cached["__get__"], py4j["send"])) == "collect at cell [2], line 5"


def test_a_column_or_a_function_leaves_the_name_as_it_is(kernel_like):
    """They build expressions and run no job: no call to tell the JVM of them."""
    column = define(SPARK[0] + "sql/classic/column.py", "def __add__(inner):\n    return inner()\n")
    function = define(SPARK[0] + "sql/functions/builtin.py", "def col(inner):\n    return inner()\n")
    wrapper = define(SPARK[0] + "sql/utils.py", "def wrapped(call, inner):\n    return call(inner)\n")  # try_remote_functions
    frame = define(SPARK[0] + "sql/classic/dataframe.py", "def __getattr__(inner):\n    return inner()\n")
    uses = define(CELL, "def run(call, *args):\n    return call(*args)\n")
    # _with_origin around a function: its own calls to the JVM (the session's setting, the origin).
    origin = define(SPARK[0] + "errors/utils.py", "def wrapper(inner):\n    return inner()\n")
    setting = define(SPARK[0] + "sql/conf.py", "def get(inner):\n    return inner()\n")
    for building in ((column["__add__"],), (function["col"],), (wrapper["wrapped"], function["col"]), (frame["__getattr__"],), (origin["wrapper"],),
                     (wrapper["wrapped"], lambda inner: origin["wrapper"](lambda: setting["get"](inner)))):
        assert callsite.name_of(uses["run"](*building, py4j["send"])) is None, building
    # A decorator's wrapper is named after what it wraps; an action that parses a type on its way
    # is still the action's.
    assert callsite.name_of(uses["run"](wrapper["wrapped"], spark["count"], py4j["send"])) == "count at cell [2], line 2"
    parse = define(SPARK[0] + "sql/types.py", "def _parse_datatype_string(inner):\n    return inner()\n")
    assert callsite.name_of(uses["run"](spark["count"], lambda: parse["_parse_datatype_string"](py4j["send"]))) == "count at cell [2], line 2"


def test_the_runtimes_own_calls_are_not_named_unless_it_acts_for_the_code_further_out(kernel_like):
    assert callsite.site(cell["set_group"](), SPARK, MACHINERY, RUNTIME) == (None, CELL, 11)
    assert callsite.name_of(cell["set_group"]()) is None  # the kernel's own call leaves the name as it is
    assert callsite.name_of(cell["show_value"]()) is None
    with callsite.acting("show"):  # a cell's value shown: through IPython's display, at the cell's line
        assert callsite.name_of(cell["show_value"]()) == "show at cell [2], line 8"
    with callsite.named("SELECT 1"):  # %%sql: the query, whatever the stack
        assert callsite.name_of(cell["set_group"]()) == "SELECT 1"
    assert callsite.name_of(cell["set_group"]()) is None


class JavaContext:
    def __init__(self):
        self.told = []

    def setCallSite(self, text):
        self.told.append(text)
        client.send_command("c\no0\nsetCallSite\n")  # as Py4J sends it: through the same client


class Client:
    def __init__(self):
        self.sent = []

    def send_command(self, command, retry=True):
        self.sent.append(command.split("\n")[2] if command.startswith("c\n") else command)


client = Client()


def test_the_jvm_is_told_a_new_call_site_once_before_the_call_that_may_run_a_job(kernel_like, monkeypatch):
    monkeypatch.setattr(callsite, "quiet_sync_on_main_thread", lambda: None)
    client.sent.clear()
    java = JavaContext()
    sites = callsite.JvmCallSites(java)
    sites.install(client)
    call = define(SPARK[0] + "sql/dataframe.py", "def count(client):\n    client.send_command('c\\no1\\ncount\\ne\\n')\n")
    repeat = define(CELL, "def run(count, client):\n    count(client)\n    count(client)\n\n\ndef other(count, client):\n    count(client)\n")
    repeat["run"](call["count"], client)
    assert java.told == ["count at cell [2], line 2", "count at cell [2], line 3"] and client.sent == ["setCallSite", "count", "setCallSite", "count"]
    client.send_command("m\nd\no1\ne\n")  # Py4J's other commands (a deleted object) run no job
    repeat["other"](call["count"], client)
    repeat["other"](call["count"], client)  # the same site again: no second call
    assert java.told[2:] == ["count at cell [2], line 7"] and client.sent[4:] == ["m\nd\no1\ne\n", "setCallSite", "count", "count"]
    sites.forget()  # a cell begins: the JVM may serve the main thread from another thread
    repeat["other"](call["count"], client)
    assert java.told[3:] == ["count at cell [2], line 7"]
    worker = threading.Thread(target=repeat["other"], args=(call["count"], client))
    worker.start()
    worker.join()
    assert len(java.told) == 4  # another thread's calls are left to PySpark


def test_a_connect_operation_is_named_after_the_code_that_ran_it(kernel_like):
    class Display:
        handle = None

        def show(self, jobs, elapsed, final, ui):
            self.rows = [job.description for job in jobs]

    watched = progress.ConnectProgress(session=None)
    watched.display = Display()
    watched.started = float("-inf")
    client_side = define(SPARK[0] + "sql/connect/client/core.py", "def execute(handler, operation):\n    handler([], 1, operation, False)\n")
    ran = define(CELL, "def run(execute, handler):\n    execute(handler, 'op-1')\n")
    ran["run"](client_side["execute"], watched)
    watched([], 0, "op-2", True)  # a report no code of the notebook's is behind: the operation's id
    assert watched.display.rows == ["execute at cell [2], line 2", "operation op-2"]
