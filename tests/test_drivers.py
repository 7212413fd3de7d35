"""The driver interface without a JVM: each kind of driver implements it whole, the kernel's
options and master choose the kind, and what differs between the kinds (a cell's job group or
tag, interrupt, `sc`, the builders a driver serves, status) is the driver's to say."""

import ast
import inspect
import json
import pathlib
import types

import pytest

from pyspark_kernel.runtime import dedicated, drivers, session
from pyspark_kernel.runtime.connect import ConnectDriver
from pyspark_kernel.runtime.dedicated import DedicatedDriver
from pyspark_kernel.runtime.diagnostics import SHARED_SC, SharedDriverError
from pyspark_kernel.runtime.drivers import Driver
from pyspark_kernel.runtime.shared import SharedDriver

KINDS = [DedicatedDriver, ConnectDriver, SharedDriver]
CALLERS = ("session.py", "notebook.py", "magics.py", "entrypoints.py", "warming.py")
RUNTIME_DIR = pathlib.Path(session.__file__).parent


def runtime_for(tmp_path, master, **options):
    environ = {"TMPDIR": str(tmp_path), "PYSPARK_KERNEL_SPARK_CONF": json.dumps({"spark.master": master}),
               "PYSPARK_KERNEL_OPTIONS": json.dumps({"init": "lazy", **options})}
    return session.SparkRuntime(environ)


def required():
    """The interface's methods that a driver must implement (the base only raises)."""
    return [name for name, member in vars(Driver).items()
            if inspect.isfunction(member) and "raise NotImplementedError" in inspect.getsource(member)]


def test_the_interface_has_methods_every_driver_must_implement():
    assert {"start", "begin_cell", "cancel", "interrupt", "progress", "banner", "status_lines"} <= set(required())


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_each_driver_implements_the_whole_interface_with_its_signatures(kind):
    assert issubclass(kind, Driver)
    for name, member in vars(Driver).items():
        if not inspect.isfunction(member) or name.startswith("_"):
            continue
        mine = getattr(kind, name)
        if name in required():
            assert mine is not member, f"{kind.__name__} does not implement {name}"
        assert list(inspect.signature(mine).parameters) == list(inspect.signature(member).parameters), name
    assert isinstance(kind.has_context, bool) and isinstance(kind.stops_when_idle, bool)


@pytest.mark.parametrize("driver_mode, master, kind", [
    ("dedicated", "local[*]", DedicatedDriver),
    ("dedicated", "spark://127.0.0.1:7077", DedicatedDriver),
    ("dedicated", "yarn", DedicatedDriver),
    ("dedicated", "sc://127.0.0.1:15002", ConnectDriver),
    ("shared", "local[*]", SharedDriver),
    ("shared", "local[2]", SharedDriver),
])
def test_the_options_and_the_master_choose_the_driver(tmp_path, driver_mode, master, kind):
    runtime = runtime_for(tmp_path, master, spark_driver=driver_mode)
    assert type(runtime.driver) is kind and runtime.driver.runtime is runtime


def test_what_each_kind_of_driver_supports(tmp_path):
    found = {}
    for mode, master in (("dedicated", "local[*]"), ("dedicated", "sc://127.0.0.1:15002"), ("shared", "local[*]")):
        driver = runtime_for(tmp_path, master, spark_driver=mode).driver
        error = driver.context_error()
        found[type(driver).__name__] = (driver.has_context, driver.stops_when_idle, type(error).__name__ if error else None,
                                        driver.serves({"spark.remote": "sc://elsewhere"}), driver.serves({"spark.app.name": "x"}))
    assert found == {
        "DedicatedDriver": (True, True, None, False, True),  # a builder asking for a Connect server goes there
        "ConnectDriver": (False, False, None, True, True),  # the kernel's server is the one it asks for
        "SharedDriver": (False, False, "SharedDriverError", True, True),
    }


def test_a_shared_drivers_sc_says_why_there_is_none(tmp_path):
    error = runtime_for(tmp_path, "local[*]", spark_driver="shared").driver.context_error()
    assert isinstance(error, SharedDriverError) and str(error) == SHARED_SC


def test_a_connect_driver_applies_a_builders_options_but_its_server(tmp_path):
    options = {"spark.remote": "sc://elsewhere", "spark.sql.shuffle.partitions": "3"}
    assert runtime_for(tmp_path, "sc://127.0.0.1:15002").driver.session_options(options) == {"spark.sql.shuffle.partitions": "3"}
    assert runtime_for(tmp_path, "local[*]").driver.session_options(options) == options


class Recorder:
    """A stand-in for a SparkContext, a SparkSession and its JVM: records the calls it gets."""

    def __init__(self, failures=0):
        self.calls, self.failures = [], failures
        self._jvm = types.SimpleNamespace(SparkSession=types.SimpleNamespace(setActiveSession=lambda jsession: self.calls.append(("active", jsession))))
        self._jsparkSession = "the JVM session"

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, *args))
            if self.failures:
                self.failures -= 1
                raise ConnectionError("a broken connection")
        return call


def ready(runtime):
    runtime.session, runtime.context = Recorder(), Recorder()
    return runtime.session, runtime.context


def test_a_dedicated_driver_runs_a_cell_in_a_job_group_and_cancels_it(tmp_path):
    runtime = runtime_for(tmp_path, "local[*]")
    spark, sc = ready(runtime)
    runtime.driver.begin_cell("pyspark-kernel-cell-3", 3)
    runtime.driver.end_cell("pyspark-kernel-cell-3")
    # No description: the jobs' names say the cell and line (runtime.callsite), and the Spark UI
    # would show a description before the name.
    assert sc.calls == [("setJobGroup", "pyspark-kernel-cell-3", None, True)]
    assert spark.calls == [("active", "the JVM session")]  # getActiveSession() finds it in this thread
    runtime.driver.cancel("pyspark-kernel-cell-3")
    assert sc.calls[-1] == ("cancelJobGroup", "pyspark-kernel-cell-3")


def test_a_dedicated_drivers_interrupt_tries_again_on_a_fresh_connection(tmp_path):
    context = Recorder(failures=2)
    dedicated.cancel_group(context, "pyspark-kernel-cell-1")
    assert context.calls == [("cancelJobGroup", "pyspark-kernel-cell-1")] * 3
    context = Recorder(failures=5)
    dedicated.cancel_group(context, "pyspark-kernel-cell-1")  # Spark is going away: the cell says so, not this
    assert len(context.calls) == dedicated.CANCEL_ATTEMPTS


def test_a_connect_driver_tags_a_cells_operations_and_interrupts_the_tag(tmp_path):
    runtime = runtime_for(tmp_path, "sc://127.0.0.1:15002")
    spark, _ = ready(runtime)
    runtime.context = None
    runtime.driver.begin_cell("pyspark-kernel-cell-2", 2)
    runtime.driver.cancel("pyspark-kernel-cell-2")
    runtime.driver.end_cell("pyspark-kernel-cell-2")
    assert spark.calls == [("addTag", "pyspark-kernel-cell-2"), ("interruptTag", "pyspark-kernel-cell-2"), ("removeTag", "pyspark-kernel-cell-2")]


@pytest.mark.parametrize("master, call", [("local[*]", "cancelJobGroup"), ("sc://127.0.0.1:15002", "interruptTag")])
def test_an_interrupt_cancels_from_a_thread_of_its_own(tmp_path, master, call):
    import threading

    runtime = runtime_for(tmp_path, master)
    spark, sc = ready(runtime)
    before = set(threading.enumerate())
    runtime.driver.interrupt("pyspark-kernel-cell-5")
    for thread in set(threading.enumerate()) - before:
        assert thread.name == drivers.CANCEL_THREAD
        thread.join(5)
    assert (call, "pyspark-kernel-cell-5") in spark.calls + sc.calls


def test_status_lines_of_drivers_without_a_session(tmp_path):
    assert runtime_for(tmp_path, "sc://127.0.0.1:15002").driver.status_lines() == ["Spark Connect server: sc://127.0.0.1:15002"]
    assert runtime_for(tmp_path, "local[*]", spark_driver="shared").driver.status_lines() == ["shared driver: none attached"]
    assert runtime_for(tmp_path, "local[2]").driver.status_lines() == ["master: local[2]", "RPC authentication: on: the driver's RPC and block transfers need a secret Spark makes for each session",
                                                                        "limits: none declared (no CPU_LIMIT or MEM_LIMIT)"]


def test_a_driver_without_a_session_has_no_ui_link_and_its_log_is_in_the_scratch_directory(tmp_path):
    for mode, master in (("dedicated", "sc://127.0.0.1:15002"), ("shared", "local[*]")):
        runtime = runtime_for(tmp_path, master, spark_driver=mode)
        assert runtime.driver.ui_link() is None
        assert runtime.log == str(pathlib.Path(runtime.scratch) / "driver.log")


def test_no_caller_asks_which_kind_of_driver_it_has():
    """The runtime, the notebook, the magics, the entry points and the warm-up call the driver;
    none asks whether it is Connect or shared, nor checks its class."""
    asked = []
    for name in CALLERS:
        for node in ast.walk(ast.parse((RUNTIME_DIR / name).read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("connect", "shared", "lease"):
                asked.append(f"{name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "type"):
                if any("Driver" in ast.unparse(arg) for arg in node.args):
                    asked.append(f"{name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.Name) and node.id.endswith("Driver") and node.id != "Driver":
                asked.append(f"{name}:{node.lineno} {node.id}")
    assert asked == []


class Client:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_the_shared_driver_closing_the_current_lease_ends_the_session_and_an_old_lease_does_not(tmp_path):
    from pyspark_kernel.runtime.state import State

    runtime = runtime_for(tmp_path, "local[*]", spark_driver="shared")
    current, old = types.SimpleNamespace(record={"jvm": 4242}), types.SimpleNamespace(record={"jvm": 1})
    runtime.driver.lease = current
    spark = types.SimpleNamespace(client=Client())
    assert runtime.transition(State.STARTING) and runtime.transition(State.READY, session=spark)
    ended = []
    runtime.listeners.append(lambda rt, gone: ended.append((rt.state, gone)))
    runtime.driver.lost(old)  # a lease left for another key
    assert runtime.state is State.READY and runtime.error is None and ended == []
    runtime.driver.lost(current)
    assert runtime.state is State.DEAD and ended == [(State.DEAD, (spark, None))] and runtime.session is None
    assert str(runtime.error).startswith("The shared Spark driver (pid 4242) has exited.") and spark.client.closed  # no retries for minutes


def test_the_shared_drivers_death_is_the_runtimes_error_even_after_a_stop(tmp_path):
    from pyspark_kernel.runtime.state import State

    runtime = runtime_for(tmp_path, "local[*]", spark_driver="shared")
    runtime.driver.lease = lease = types.SimpleNamespace(record={"jvm": 4242})
    assert runtime.transition(State.STARTING) and runtime.transition(State.READY) and runtime.transition(State.STOPPED)
    runtime.driver.lost(lease)
    assert runtime.state is State.STOPPED and str(runtime.error).startswith("The shared Spark driver (pid 4242)")
