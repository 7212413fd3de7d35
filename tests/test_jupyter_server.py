"""A real Jupyter server on 127.0.0.1 serving a baked kernel: kernelspec and logo over REST, a
kernel started through the API, a Spark cell over the kernel's websocket, shutdown through the API."""

import json

import pytest

from .conftest import assert_no_jvm_left
from .server_api import execute_over_websocket, request

pytestmark = pytest.mark.e2e


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
