"""The server extension's rewrite of the Spark UI's redirects and, on YARN, of its requests and
pages, without a server; and the kernel's files that tell the server the way (runtime.uiauth)."""

import json
import os
import types

import pytest
from tornado.httputil import HTTPHeaders

from pyspark_kernel.runtime import uiauth
from pyspark_kernel.serverext import _jupyter_server_extension_points, rewriter, route_headers, spark_relative, through_route, ui_hosts, yarn_paths_replaced

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


ROUTE = "http://rm.example.org:8088/proxy/application_1796539853393_0007/"


@pytest.mark.parametrize("uri, through", [
    ("http://localhost:4041/jobs/job/?id=3", f"{ROUTE}jobs/job/?id=3"),
    ("http://localhost:4041/", ROUTE),
    ("http://localhost:4041/api/v1/applications", f"{ROUTE}api/v1/applications"),
])
def test_a_request_for_a_yarn_kernels_ui_goes_to_its_tracking_url(uri, through):
    assert through_route(ROUTE, uri) == through


def test_a_request_to_yarns_proxy_names_its_host_and_asks_for_no_compression():
    headers = route_headers(HTTPHeaders({"Host": "127.0.0.1:8888", "Accept-Encoding": "gzip, br", "Accept": "text/html"}), ROUTE)
    assert dict(headers) == {"Host": "rm.example.org:8088", "Accept": "text/html"}


def test_yarns_proxy_path_in_a_page_becomes_the_servers_and_a_url_with_a_host_stays():
    page = (b'<a href="/proxy/application_1796539853393_0007/jobs/">Jobs</a>'
            b"<script>setUIRoot('/proxy/application_1796539853393_0007')</script>"
            b"<td>http://rm.example.org:8088/proxy/application_1796539853393_0007</td>"
            b'<a href="/proxy/application_1796539853393_00070/">another application</a>')
    assert yarn_paths_replaced(page, "/proxy/application_1796539853393_0007", PREFIX) == (
        f'<a href="{PREFIX}/jobs/">Jobs</a>'
        f"<script>setUIRoot('{PREFIX}')</script>"
        "<td>http://rm.example.org:8088/proxy/application_1796539853393_0007</td>"
        '<a href="/proxy/application_1796539853393_00070/">another application</a>').encode()


def answer(code, body, **headers):
    return types.SimpleNamespace(code=code, body=body, headers=HTTPHeaders(headers))


def test_yarns_answers_are_rewritten_for_the_server_and_local_ones_keep_their_pages():
    request = types.SimpleNamespace(host="hub.example.org")
    moved = answer(302, b"", Location=f"{ROUTE}jobs/?id=1")
    rewriter("/user/ann/", ROUTE)(moved, request, 4041)
    assert moved.headers["Location"] == "/jobs/?id=1"  # jupyter-server-proxy then adds the server's prefix
    page = answer(200, b'<a href="/proxy/application_1796539853393_0007/jobs/">', **{"Content-Type": "text/html;charset=utf-8"})
    rewriter("/user/ann/", ROUTE)(page, request, 4041)
    assert page.body == f'<a href="{PREFIX}/jobs/">'.encode()
    script = answer(200, b"'/proxy/application_1796539853393_0007'", **{"Content-Type": "text/javascript"})
    rewriter("/user/ann/", ROUTE)(script, request, 4041)
    assert script.body == b"'/proxy/application_1796539853393_0007'"  # only pages name the UI's root
    local = answer(200, b'<a href="/proxy/application_1796539853393_0007/jobs/">', **{"Content-Type": "text/html"})
    rewriter("/user/ann/", None)(local, request, 4041)
    assert local.body == b'<a href="/proxy/application_1796539853393_0007/jobs/">'


def test_a_yarn_kernel_adds_a_stand_in_for_yarns_filter_and_no_token(tmp_path):
    (tmp_path / "yarn-site.xml").write_text("<configuration><property><name>yarn.resourcemanager.hostname</name><value>rm.example.org</value></property></configuration>")
    found = uiauth.protect({}, "owner", "4.1.0", "yarn", {"HADOOP_CONF_DIR": str(tmp_path)})
    assert (found.settings, found.secrets, found.token) == ({
        "spark.ui.filters": uiauth.YARN_FILTER,
        f"spark.{uiauth.YARN_FILTER}.param.PROXY_HOSTS": "rm.example.org",
        f"spark.{uiauth.YARN_FILTER}.param.PROXY_URI_BASES": "http://rm.example.org:8088/cluster"}, {}, None)
    # Without a ResourceManager to name, the token filter keeps the UI closed.
    assert uiauth.protect({}, "owner", "4.1.0", "yarn", {}).settings == {"spark.ui.filters": uiauth.FILTER}
    assert uiauth.protect({}, "owner", "4.1.0", "local[*]", {"HADOOP_CONF_DIR": str(tmp_path)}).settings == {"spark.ui.filters": uiauth.FILTER}


def test_a_route_file_is_its_owners_alone_and_goes_with_the_session(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    credential = uiauth.Credential(str(scratch))
    assert credential.publish_route(str(tmp_path), 4041, "http://rm:8088/cluster") is None  # not a tracking URL
    path = credential.publish_route(str(tmp_path), 4041, ROUTE)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600" and uiauth.read_route(str(tmp_path), 4041) == ROUTE
    assert (scratch / uiauth.REMOVE_AT_EXIT).read_text() == path + "\n"  # the watchdog's list
    assert uiauth.read_token(str(tmp_path), 4041) is None and uiauth.read_route(str(tmp_path), 4042) is None
    os.chmod(path, 0o644)
    assert uiauth.read_route(str(tmp_path), 4041) is None  # readable by others: not the kernel's
    credential.withdraw()
    assert not os.path.exists(path) and not (scratch / uiauth.REMOVE_AT_EXIT).exists()


def test_only_a_shared_driver_kernel_made_with_driver_prestart_is_started_ahead():
    from pyspark_kernel.prestart import asks_for_it

    def spec(options):
        return {"env": {"PYSPARK_KERNEL_OPTIONS": options if isinstance(options, str) else json.dumps(options)}}

    assert asks_for_it(spec({"spark_driver": "shared", "driver_prestart": True}))
    for options in ({"spark_driver": "shared"}, {"spark_driver": "shared", "driver_prestart": False}, {"driver_prestart": True},
                    {"spark_driver": "shared", "driver_prestart": "yes"}, "not json", "[1]"):
        assert not asks_for_it(spec(options)), options
    assert not asks_for_it({}) and not asks_for_it({"env": None})


def test_the_prestarted_drivers_environment_is_the_kernels_as_jupyter_client_expands_it():
    from pyspark_kernel.prestart import kernel_environment

    env = kernel_environment({"env": {"A": "1", "SECRET": "${SECRET}", "MISSING": "${NOT_SET}", "PATHS": "$HOME/x"}},
                             {"SECRET": "s3cr3t", "HOME": "/home/me", "A": "0", "KEPT": "k"})
    assert env == {"A": "1", "SECRET": "s3cr3t", "MISSING": "${NOT_SET}", "PATHS": "/home/me/x", "HOME": "/home/me", "KEPT": "k"}
