"""Hub culling: jupyter_server's kernel culler (MappingKernelManager.cull_idle_timeout) counts a
kernel idle from its last iopub message. The kernel's own background work (the Spark start, the
warm-up, a cell's progress display) must send none once the cell is over, or an idle notebook
would never be culled; and a culled kernel's JVM goes with it."""

import json
import time
import uuid

import pytest
import websocket

from .conftest import assert_left_nothing, make_kernel, serving_jupyter
from .kernels import wait_until
from .server_api import request
from .test_runtime import python_daemons

pytestmark = pytest.mark.e2e

CULL_TIMEOUT = 10  # seconds: --MappingKernelManager.cull_idle_timeout
CULL_INTERVAL = 2
WARM_UP_BOUND = 300  # the background start and the warm-up, on a busy machine
CULLED_BOUND = 60  # the culler's next look and the kernel's shutdown
CONNECT_BOUND = 120
LISTEN_EVERY = 1  # seconds a look at the websocket waits for a message


class Channels:
    """A front end's websocket on the kernel: while it is open, the culler leaves the kernel alone
    (cull_connected is off), and every iopub message the kernel sends comes through it."""

    def __init__(self, base, token, kernel_id):
        # The server answers the handshake once the kernel does: in seconds on a busy machine.
        self.ws = websocket.create_connection(f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={token}", timeout=CONNECT_BOUND)
        self.ws.settimeout(LISTEN_EVERY)
        self.session = uuid.uuid4().hex
        self.after = []  # (msg_type, parent msg_type, content) of messages after the last cell's end

    def run(self, code, timeout=180):
        """Run a cell; its outputs' text."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.session, "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False},
        }))
        text, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive()
            if message is None or message["parent_header"].get("msg_id") != msg_id:
                continue
            content = message["content"]
            if message["msg_type"] == "stream":
                text.append(content["text"])
            if message["msg_type"] in ("execute_result", "display_data", "update_display_data"):
                text.append(content["data"].get("text/plain", "") + "\n")
            assert message["msg_type"] != "error", content
            if message["msg_type"] == "status" and content["execution_state"] == "idle":
                self.after = []
                self.idle_at = message["header"]["date"]  # when the kernel sent it
                return "".join(text)
        raise AssertionError(f"the cell {code!r} did not end within {timeout} s")

    def receive(self):
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def listen(self):
        """Take in what the kernel sent meanwhile (while the test waits for something else)."""
        message = self.receive()
        if message is not None and message["channel"] == "iopub":
            self.after.append((message["msg_type"], message["parent_header"].get("msg_type"), message["content"]))
        return message

    def close(self):
        self.ws.close()


def kernel_model(base, token, kernel_id):
    """The server's view of the kernel (last_activity, execution_state), or None once it is gone."""
    kernels = json.loads(request(base, token, "GET", "/api/kernels")[1])
    return next((kernel for kernel in kernels if kernel["id"] == kernel_id), None)


def activity_after(base, token, kernel_id, channels):
    """The server's last_activity once it has taken in the last cell's idle status. The server
    records it apart from passing it to the websocket, so a front end can see it first."""
    from .kernels import wait_until

    seen = {}

    def recorded():
        seen["at"] = kernel_model(base, token, kernel_id)["last_activity"]
        return moment(seen["at"]) >= moment(channels.idle_at)

    wait_until(recorded, 30, f"the server's last_activity stayed before the cell's idle status ({channels.idle_at})")
    return seen["at"]


def moment(text):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def idle_for(last_activity):
    """Seconds since the server's last_activity (an ISO time in UTC)."""
    from datetime import datetime, timezone

    return (datetime.now(timezone.utc) - datetime.fromisoformat(last_activity.replace("Z", "+00:00"))).total_seconds()


def test_an_idle_notebook_is_culled_on_time_after_its_spark_started_warmed_up_and_ran_a_job(tmp_path):
    data, tmp_dir = tmp_path / "jupyter", tmp_path / "tmp"
    tmp_dir.mkdir()
    make_kernel(data / "kernels", "culled", "--warm_up", "python")  # the warm-up's Python workers: the progress to follow
    args = (f"--MappingKernelManager.cull_idle_timeout={CULL_TIMEOUT}", f"--MappingKernelManager.cull_interval={CULL_INTERVAL}")
    with serving_jupyter(tmp_path, data, env={"TMPDIR": str(tmp_dir)}, args=args) as (base, token):
        status, body = request(base, token, "POST", "/api/kernels", {"name": "culled"})
        kernel_id = json.loads(body)["id"]
        channels = Channels(base, token, kernel_id)
        try:
            # A cell that does not use Spark: Spark starts in the background, and the warm-up runs after it.
            assert channels.run("1 + 1").strip() == "2"
            ended = activity_after(base, token, kernel_id, channels)

            def quiet_after(what):
                """Wait for ``what`` (the kernel's own progress) and for the culler's timeout to
                pass since the cell's end, listening to the kernel all the while."""
                def done():
                    channels.listen()
                    return what() and idle_for(ended) > CULL_TIMEOUT + CULL_INTERVAL
                return done

            warmed = lambda: len(python_daemons("culled")) == 2 and all(len(workers) >= 2 for workers in python_daemons("culled").values())  # noqa: E731
            wait_until(quiet_after(warmed), WARM_UP_BOUND, "the background start and the warm-up did not end")
            assert channels.after == []  # not a message once the cell was over: not a status, not a stream, not a display
            assert kernel_model(base, token, kernel_id)["last_activity"] == ended

            # A cell whose job shows its progress display, updated from a thread of the cell's. It may
            # also cancel the warm-up's last step, which then runs again once the cell is over.
            shown = channels.run("sc.parallelize(range(2), 2).map(lambda x: __import__('time').sleep(2) or x).sum()")
            assert shown.startswith("Spark ") and "Spark: 1 job(s) done, 2/2 tasks" in shown, shown
            ended = activity_after(base, token, kernel_id, channels)
            wait_until(quiet_after(lambda: True), WARM_UP_BOUND, "the culler's timeout did not pass")
            assert channels.after == []
            assert kernel_model(base, token, kernel_id)["last_activity"] == ended
        finally:
            channels.close()  # no front end left: the culler's next look culls it, idle for longer than its timeout
        closed = time.monotonic()
        wait_until(lambda: kernel_model(base, token, kernel_id) is None, CULLED_BOUND, "the idle kernel was not culled")
        culled_after = time.monotonic() - closed
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert f"Culling 'idle' kernel 'culled' ({kernel_id})" in log, log[-3000:]
    assert culled_after < CULLED_BOUND
    assert_left_nothing("culled", tmp_dir)  # its JVM and the Python workers with it, and its scratch directory
