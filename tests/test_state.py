"""The session's states and its start attempts, without a JVM: which state may follow which, that
SparkRuntime.transition alone changes the state and always under the runtime's lock, and what a
start attempt does when its clock runs out."""

import ast
import collections
import json
import pathlib
import threading

import pytest

from pyspark_kernel.runtime import session
from pyspark_kernel.runtime.attempt import StartAttempt
from pyspark_kernel.runtime.state import ALLOWED, State, allowed

RUNTIME_DIR = pathlib.Path(session.__file__).parent
EXPECTED = {  # (from, to) pairs, as the session's docstring tells them
    (State.IDLE, State.STARTING), (State.STOPPED, State.STARTING),
    (State.STARTING, State.READY), (State.STARTING, State.FAILED),
    (State.READY, State.STOPPED), (State.READY, State.DEAD), (State.READY, State.STOPPING),
    (State.IDLE, State.IDLE), (State.FAILED, State.IDLE), (State.STOPPED, State.IDLE), (State.DEAD, State.IDLE),
}


def runtime_for(tmp_path, master="local[1]"):
    environ = {"TMPDIR": str(tmp_path), "PYSPARK_KERNEL_SPARK_CONF": json.dumps({"spark.master": master}),
               "PYSPARK_KERNEL_OPTIONS": json.dumps({"init": "lazy"})}
    return session.SparkRuntime(environ)


def path_to(target):
    """The transitions that take a new runtime (idle) to ``target``."""
    paths = {State.IDLE: []}
    queue = collections.deque([State.IDLE])
    while queue:
        current = queue.popleft()
        for to in State:
            if to not in paths and allowed(current, to):
                paths[to] = paths[current] + [to]
                queue.append(to)
    return paths[target]


def reach(runtime, target):
    for to in path_to(target):
        assert runtime.transition(to)
    assert runtime.state is target


def test_a_state_prints_and_compares_as_its_name():
    assert [str(state) for state in State] == ["idle", "starting", "ready", "failed", "stopped", "dead", "stopping"]
    assert f"state: {State.READY}" == "state: ready" and State.READY == "ready" and "ready" in (State.READY,)


def test_the_allowed_transitions_are_the_documented_ones():
    assert {(before, to) for to, befores in ALLOWED.items() for before in befores} == EXPECTED


def test_every_state_is_named_in_the_session_modules_docstring():
    assert all(state.value in session.__doc__ for state in State)


def test_every_state_can_be_reached_from_idle():
    assert all(path_to(state) is not None for state in State)


@pytest.mark.parametrize("before", list(State), ids=str)
def test_a_transition_happens_only_from_an_allowed_state(tmp_path, before):
    for to in State:
        runtime = runtime_for(tmp_path)
        reach(runtime, before)
        moved = runtime.transition(to, stopped_by="marker")
        assert moved == ((before, to) in EXPECTED), (before, to)
        assert runtime.state is (to if moved else before)
        assert (runtime.stopped_by == "marker") == moved  # the attributes that go with it: only when it moves


def test_a_transition_waits_for_the_lock(tmp_path):
    runtime = runtime_for(tmp_path)
    results = []
    with runtime.lock:
        thread = threading.Thread(target=lambda: results.append(runtime.transition(State.STARTING)))
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and runtime.state is State.IDLE  # held off while another thread holds the lock
    thread.join(5)
    assert results == [True] and runtime.state is State.STARTING


def test_of_concurrent_transitions_from_one_state_only_one_happens(tmp_path):
    runtime = runtime_for(tmp_path)
    reach(runtime, State.READY)
    start = threading.Barrier(8)
    won = []

    def stop(who):
        start.wait()
        if runtime.transition(State.STOPPED, stopped_by=who):
            won.append(who)

    threads = [threading.Thread(target=stop, args=(f"thread {index}",)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(won) == 1 and runtime.state is State.STOPPED and runtime.stopped_by == won[0]


def test_of_concurrent_start_claims_only_one_wins(tmp_path):
    runtime = runtime_for(tmp_path)
    start = threading.Barrier(8)
    claims = []

    def claim():
        start.wait()
        claims.append(runtime.claim_start())

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(claims) == [False] * 7 + [True] and runtime.state is State.STARTING
    assert runtime.attempt.started_at is not None and not runtime.done.is_set()


def test_no_code_but_the_transition_assigns_the_state():
    assigned = []
    for path in sorted(RUNTIME_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for found in ast.walk(target):
                    if isinstance(found, ast.Attribute) and found.attr in ("state", "_state"):
                        assigned.append(f"{path.name}:{found.lineno}")
    # The transition's own assignment, and the initial state.
    assert [where.split(":")[0] for where in assigned] == ["session.py", "session.py"], assigned


def test_a_runtime_begins_idle_with_a_blank_attempt(tmp_path):
    runtime = runtime_for(tmp_path)
    assert runtime.state is State.IDLE and runtime.elapsed() == 0.0 and not runtime.done.is_set() and runtime.profile.steps == []


class FakeProc:
    def __init__(self):
        self.killed = False

    def poll(self):
        return -9 if self.killed else None

    def kill(self):
        self.killed = True

    def wait(self, timeout=None):
        return -9


def test_an_attempt_that_gives_up_kills_its_jvm_even_one_launched_after():
    attempt = StartAttempt(started_at=0.0)
    running = FakeProc()
    attempt.launched(running)
    attempt.give_up()
    assert running.killed and attempt.timed_out and not attempt.cancelled
    late = FakeProc()
    attempt.launched(late)  # the clock ran out before the process existed
    assert late.killed and attempt.proc is late


def test_an_attempt_that_is_done_is_not_given_up():
    attempt = StartAttempt(started_at=0.0)
    proc = FakeProc()
    attempt.launched(proc)
    attempt.done.set()
    attempt.give_up(cancelled=True)
    assert not proc.killed and not attempt.timed_out and not attempt.cancelled


def test_an_attempt_marks_its_steps_in_its_profile():
    attempt = StartAttempt(started_at=0.0)
    attempt.mark("loading pyspark")
    attempt.mark("launching the driver JVM")
    attempt.profile.end()
    assert attempt.step == "launching the driver JVM"
    assert [step for step, _ in attempt.profile.steps] == ["loading pyspark", "launching the driver JVM"]
