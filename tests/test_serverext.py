"""The server extension's rewrite of the Spark UI's redirects, without a server."""

import pytest

from pyspark_kernel.serverext import _jupyter_server_extension_points, spark_relative, ui_hosts

PREFIX = "/user/ann/sparkui/4041"


@pytest.mark.parametrize("location, relative", [
    ("http://127.0.0.1:4041/jobs/", "/jobs/"),  # Spark's own absolute redirect
    ("http://localhost:4041/jobs/?id=3", "/jobs/?id=3"),
    (f"http://127.0.0.1:4041{PREFIX}/jobs/", "/jobs/"),  # with spark.ui.proxyBase already in it
    (f"{PREFIX}/stages/", "/stages/"),
    (PREFIX, "/"),
    ("/jobs/", "/jobs/"),
    ("https://idp.example.org/login", "https://idp.example.org/login"),  # elsewhere: left alone
    ("http://hub.example.org/jobs/", "/jobs/"),  # built from the Host header the browser sent
    ("http://127.0.0.1:8888/jobs/", "http://127.0.0.1:8888/jobs/"),  # another port is another server
    ("/user/ann/sparkui/40410/jobs/", "/user/ann/sparkui/40410/jobs/"),  # a prefix of the path, not the UI's
])
def test_a_redirect_of_the_ui_becomes_a_path_from_its_root(location, relative):
    assert spark_relative(location, ui_hosts(4041, "hub.example.org"), PREFIX) == relative


def test_the_extension_names_its_module_for_jupyter_server():
    assert _jupyter_server_extension_points() == [{"module": "pyspark_kernel.serverext"}]
