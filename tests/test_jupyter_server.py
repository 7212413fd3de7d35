"""A real Jupyter server on 127.0.0.1 serving a baked kernel: kernelspec and logo over REST, a
kernel started through the API, a Spark cell over the kernel's websocket, shutdown through the API."""

import json
import time
import urllib.request
import uuid

import pytest
import websocket

from .conftest import assert_no_jvm_left

pytestmark = pytest.mark.e2e


def request(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read()


def execute_over_websocket(base, token, kernel_id, code, timeout=120):
    """Send an execute_request on the kernel's channels websocket; return its execute_result text."""
    ws = websocket.create_connection(f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={token}", timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        }))
        deadline, result = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_result":
                result = message["content"]["data"]["text/plain"]
            if message["msg_type"] == "error":
                raise AssertionError(f"the cell failed: {message['content']['ename']}: {message['content']['evalue']}")
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return result
        raise AssertionError("no reply from the kernel over the websocket")
    finally:
        ws.close()


def test_a_jupyter_server_lists_starts_runs_and_stops_our_kernel(jupyter_server):
    base, token, data = jupyter_server
    status, body = request(base, token, "GET", "/api/kernelspecs")
    spec = json.loads(body)["kernelspecs"]["served"]
    assert spec["spec"]["display_name"] == "PySpark served"
    assert spec["resources"]["logo-64x64"] == "/kernelspecs/served/logo-64x64.png"
    status, logo = request(base, token, "GET", "/kernelspecs/served/logo-64x64.png")
    assert status == 200 and logo == (data / "kernels" / "served" / "logo-64x64.png").read_bytes()
    status, body = request(base, token, "POST", "/api/kernels", {"name": "served"})
    kernel_id = json.loads(body)["id"]
    assert status == 201
    assert execute_over_websocket(base, token, kernel_id, "spark.range(1000).count()") == "1000"
    status, _ = request(base, token, "DELETE", f"/api/kernels/{kernel_id}")
    assert status == 204
    assert kernel_id not in [k["id"] for k in json.loads(request(base, token, "GET", "/api/kernels")[1])]
    assert_no_jvm_left("served")
