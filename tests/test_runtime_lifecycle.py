"""The runtime's session lifecycle and notebook integration, without a kernel or a JVM: states,
restarts, the names a notebook holds, and set-up failures."""

import threading
import time

import pytest

from pyspark_kernel.runtime import diagnostics, jvm, notebook, session, warming
from pyspark_kernel.runtime.state import State

from .conftest import free_port


def runtime_for(tmp_path, master, **options_):
    environ = {"TMPDIR": str(tmp_path), "PYSPARK_KERNEL_SPARK_CONF": f'{{"spark.master": "{master}"}}',
               "PYSPARK_KERNEL_OPTIONS": __import__("json").dumps(options_)}
    return session.SparkRuntime(environ)


def make_ready(runtime, spark, context):
    """A runtime whose session is ready, through the transitions a start makes."""
    assert runtime.transition(State.STARTING) and runtime.transition(State.READY, session=spark, context=context)


def test_a_start_that_fails_is_not_final_a_restart_tries_again(tmp_path):
    port = free_port()
    runtime = runtime_for(tmp_path, f"sc://127.0.0.1:{port}")
    runtime.start()
    assert runtime.state == "failed" and runtime.done.is_set()
    assert str(runtime.error).startswith(f"Spark master sc://127.0.0.1:{port} is unreachable: nothing listens on 127.0.0.1:{port}")
    assert "then run %spark restart for a new session" in str(runtime.error)
    ended = []
    runtime.listeners.append(lambda rt, gone: ended.append((rt.state, gone)))
    runtime.restart({"spark.sql.shuffle.partitions": "3"})
    assert runtime.done.wait(30) and runtime.state == "failed"  # still down: a clear error again, not a hang
    assert runtime.conf == {"spark.master": f"sc://127.0.0.1:{port}", "spark.sql.shuffle.partitions": "3"}
    assert ended == [("idle", (None, None))]


def test_only_one_start_runs_at_a_time(tmp_path):
    runtime = runtime_for(tmp_path, "local[1]")
    assert runtime.claim_start() and runtime.state == "starting" and not runtime.done.is_set()
    assert not runtime.claim_start()
    runtime.start()  # already starting: returns at once
    assert runtime.state == "starting"


def test_a_stop_of_something_else_is_not_the_kernels_stop(tmp_path):
    runtime = runtime_for(tmp_path, "local[1]")
    make_ready(runtime, object(), object())
    runtime.user_stopped(object())
    assert runtime.state == "ready"


def test_an_unusable_tmpdir_is_a_setup_error_not_a_silent_fallback(tmp_path):
    with pytest.raises(diagnostics.SetupError, match=r"cannot create the kernel's scratch directory in .*/missing: No such file or directory \(set TMPDIR"):
        jvm.make_scratch({"TMPDIR": str(tmp_path / "missing")})


def test_a_missing_shell_is_a_setup_error(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm, "SHELL", str(tmp_path / "no-sh"))
    with pytest.raises(diagnostics.SetupError, match="cannot start the kernel's watchdog with .*no-sh: No such file or directory"):
        jvm.start_watchdog(str(tmp_path))


class Events:
    def __init__(self):
        self.handlers = {}

    def register(self, event, handler):
        self.handlers.setdefault(event, []).append(handler)


class Shell:
    def __init__(self):
        from IPython.core.formatters import DisplayFormatter

        self.events = Events()
        self.display_formatter = DisplayFormatter()  # runtime.frames registers its DataFrame printers


class FakeSession:
    def __init__(self, context):
        self.sparkContext = context


def test_names_bound_to_an_ended_session_become_stand_ins_and_then_the_new_objects(tmp_path):
    runtime = runtime_for(tmp_path, "local[1]", init="lazy")
    namespace = {}
    book = notebook.Notebook(runtime, namespace, Shell())
    book.begin()
    assert type(namespace["spark"]) is notebook.SparkStandIn and runtime.state == "idle"  # lazy: nothing started
    old_context = object()
    old = FakeSession(old_context)
    namespace.update(spark=old, my_session=old, sc=old_context, unrelated=42)
    book.session_ended(runtime, (old, old_context))
    assert {name for name, value in namespace.items() if type(value) is notebook.SparkStandIn} == {"spark", "sc", "my_session"}
    assert namespace["unrelated"] == 42
    new_context = object()
    make_ready(runtime, FakeSession(new_context), new_context)
    runtime.generation = 0
    book.publish()
    assert namespace["spark"] is runtime.session and namespace["my_session"] is runtime.session and namespace["sc"] is new_context


def test_after_a_user_stop_the_next_start_says_why(tmp_path):
    runtime = runtime_for(tmp_path, "local[1]", init="lazy")
    book = notebook.Notebook(runtime, {}, Shell())
    make_ready(runtime, object(), object())
    runtime.transition(State.STOPPED)
    book.session_ended(runtime, (None, None))
    assert book.notice == notebook.STOPPED_NOTICE


def test_the_cells_interrupt_handler_is_put_back_after_the_cell(tmp_path):
    import signal

    runtime = runtime_for(tmp_path, "local[1]", init="lazy")
    book = notebook.Notebook(runtime, {}, Shell())
    before = signal.getsignal(signal.SIGINT)
    try:
        book.pre_run_cell()
        assert signal.getsignal(signal.SIGINT) == book.on_interrupt
        book.pre_run_cell()  # a cell that runs a cell
        book.post_run_cell()
        assert signal.getsignal(signal.SIGINT) == book.on_interrupt  # the outer cell stays interruptible
        book.post_run_cell()
        # Between the cell's end and ipykernel's own restore, an interrupt is ignored.
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_interrupt_outside_spark_is_a_keyboard_interrupt_at_once(tmp_path):
    runtime = runtime_for(tmp_path, "local[1]", init="lazy")
    book = notebook.Notebook(runtime, {}, Shell())
    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyboardInterrupt):
        book.on_interrupt(2, None)


def test_outside_a_cell_the_kernel_ignores_interrupts_while_it_handles_requests(tmp_path):
    """ipykernel's own hook would install the default handler for every request (a kernel_info
    too), so that a client's interrupt at shutdown raises in its message loop."""
    import signal

    class Kernel:
        saved_sigint_handler = None

        def pre_handler_hook(self):
            signal.signal(signal.SIGINT, signal.default_int_handler)

    shell = Shell()
    shell.kernel = Kernel()
    runtime = runtime_for(tmp_path, "local[1]", init="lazy")
    book = notebook.Notebook(runtime, {}, shell)
    before = signal.getsignal(signal.SIGINT)
    try:
        book.begin()
        shell.kernel.pre_handler_hook()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and shell.kernel.saved_sigint_handler is before
        book.pre_run_cell()  # a cell: the kernel's handler, which cancels Spark jobs
        assert signal.getsignal(signal.SIGINT) == book.on_interrupt
        book.post_run_cell()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


class FakeContext:
    """Just enough of a SparkContext for the warm-up: its master, conf, job groups and cancels."""

    def __init__(self, master="local[2]", conf=None):
        self.master, self.conf, self.cancelled = master, conf or {}, []

    def getConf(self):
        return self.conf

    def setJobGroup(self, *_):
        pass

    def cancelJobGroup(self, group):
        self.cancelled.append(group)


def warm_runtime(tmp_path, monkeypatch, master="local[2]", conf=None, arrow=True, **options_):
    """A ready runtime whose warm-up steps only record that they ran."""
    from pyspark_kernel.runtime import warmup

    runtime = runtime_for(tmp_path, master, **options_)
    make_ready(runtime, object(), FakeContext(master, conf))
    ran = []
    for name in ("jvm_job", "rdd_map", "python_udf", "arrow_udf"):
        monkeypatch.setattr(warmup, name, lambda _session, name=name: ran.append(name))
    monkeypatch.setattr(warmup, "has_arrow", lambda: arrow)
    return runtime, ran


@pytest.mark.parametrize("mode, master, conf, arrow, steps", [
    ("python", "local[2]", {}, True, ["jvm_job", "python_udf", "arrow_udf", "rdd_map"]),  # UDFs first: the common first Python function
    ("python", "local[2]", {}, False, ["jvm_job", "python_udf", "rdd_map"]),  # no pyarrow: no Arrow UDF
    ("python", "spark://127.0.0.1:7077", {"spark.dynamicAllocation.enabled": "true"}, True, ["jvm_job"]),  # executors on demand
    ("python", "spark://127.0.0.1:7077", {"spark.dynamicAllocation.enabled": "false"}, True, ["jvm_job", "python_udf", "arrow_udf", "rdd_map"]),
    ("jvm", "local[2]", {}, True, ["jvm_job"]),
    ("off", "local[2]", {}, True, []),
])
def test_the_warm_up_runs_what_its_mode_and_the_cluster_allow(tmp_path, monkeypatch, mode, master, conf, arrow, steps):
    runtime, ran = warm_runtime(tmp_path, monkeypatch, master, conf, arrow, warm_up=mode)
    runtime.warm_up.run()
    runtime.profile.end()
    assert ran == steps
    assert [step for step, _ in runtime.profile.steps] == [
        {"jvm_job": "warm-up: a JVM job", "rdd_map": "warm-up: Python workers (RDD map)", "python_udf": "warm-up: Python UDF workers",
         "arrow_udf": "warm-up: an Arrow UDF"}[step] for step in steps]


def test_a_cell_waiting_for_spark_gets_no_warm_up(tmp_path, monkeypatch):
    runtime, ran = warm_runtime(tmp_path, monkeypatch)
    runtime.warm_up.cell_waits()
    runtime.warm_up.run()
    assert ran == []


def test_the_python_steps_wait_for_running_cells_and_a_quiet_second(tmp_path, monkeypatch):
    runtime, ran = warm_runtime(tmp_path, monkeypatch, arrow=False, warm_up="python")
    monkeypatch.setattr(warming, "PATIENCE", 0.3)
    runtime.warm_up.cell_began()  # a cell runs, longer than the warm-up's patience
    runtime.warm_up.run()
    assert ran == ["jvm_job"]  # at once: the cell would pay that cost itself; the Python steps gave up
    ran.clear()
    runtime.warm_up.cell_ended(time.monotonic())  # a cell has just ended
    thread = threading.Thread(target=runtime.warm_up.run)
    thread.start()
    thread.join(10)
    assert ran == ["jvm_job", "python_udf", "rdd_map"]
    assert runtime.profile.current[1] - runtime.warm_up.cells_ended_at >= warming.QUIET  # the last step began a quiet second after the cell


def test_a_cell_that_begins_cancels_the_warm_up_step_under_way_which_runs_again_after(tmp_path, monkeypatch):
    from pyspark_kernel.runtime import warmup

    runtime, ran = warm_runtime(tmp_path, monkeypatch, arrow=False, warm_up="python")
    attempts = []

    def rdd_map(_session):
        attempts.append(len(attempts))
        if len(attempts) == 1:  # a cell begins while the first attempt runs: it gives way
            runtime.warm_up.cell_began()
            runtime.warm_up.give_way()
            threading.Timer(0.1, lambda: runtime.warm_up.cell_ended(0.0)).start()
            raise RuntimeError("the job was cancelled")

    monkeypatch.setattr(warmup, "rdd_map", rdd_map)
    runtime.warm_up.run()
    assert runtime.context.cancelled == [warming.GROUP]
    assert attempts == [0, 1] and ran == ["jvm_job", "python_udf"]  # cancelled, then run again once the cell was done
    assert runtime.warm_up.step is None
    assert runtime.warm_up.give_way() is None and runtime.context.cancelled == [warming.GROUP]  # nothing under way: nothing cancelled


def test_a_cell_does_not_cancel_the_jvm_job(tmp_path, monkeypatch):
    from pyspark_kernel.runtime import warmup

    runtime, _ = warm_runtime(tmp_path, monkeypatch, warm_up="jvm")
    monkeypatch.setattr(warmup, "jvm_job", lambda _session: runtime.warm_up.give_way())  # a cell begins during the JVM job
    runtime.warm_up.run()
    assert runtime.context.cancelled == []
