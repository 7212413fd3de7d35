"""The Spark UI through the Jupyter server: a real `jupyter server` at /user/x/ with
jupyter-server-proxy and pyspark-kernel's server extension, JUPYTERHUB_SERVICE_PREFIX in its
environment as a hub's single-user server has it. Each kernel's banner links to its own UI under the
server; every tab and the REST API answer through it, and in a real browser the Executors tab lists
the driver (the trap of jupyter-server-proxy#361). The screenshot stays in test-output/."""

import json
import os
import re
import socket

import pytest

from .browser import chromium  # noqa: F401 - a fixture
from .conftest import ROOT, assert_no_jvm_left, run_cli, serving_jupyter
from .server_api import banner_link, http, request, run_over_websocket

pytestmark = pytest.mark.e2e

PREFIX = "/user/x/"
TABS = ["jobs/", "stages/", "storage/", "environment/", "executors/", "SQL/"]
SCREENSHOT = os.path.join(ROOT, "test-output", "spark-ui-executors-through-the-server.png")
def test_each_kernels_ui_answers_through_the_server_on_every_tab_and_in_a_browser(tmp_path, chromium):
    data = tmp_path / "jupyter"
    kernels = data / "kernels"
    assert run_cli("create", "-k", "ui", "-d", str(kernels)).returncode == 0
    # A second kernel whose configured UI port is taken: Spark binds the next one, the link follows.
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        defaults = tmp_path / "spark-defaults.conf"
        defaults.write_text(f"spark.ui.port {busy_port}\n")
        assert run_cli("create", "-k", "ui-busy", "-d", str(kernels), "--from-spark-defaults", str(defaults)).returncode == 0
        with serving_jupyter(tmp_path, data, base_url=PREFIX, env={"JUPYTERHUB_SERVICE_PREFIX": PREFIX}) as (base, token):
            origin = base[:-len(PREFIX.rstrip("/"))]
            ids = [json.loads(request(base, token, "POST", "/api/kernels", {"name": name})[1])["id"] for name in ("ui", "ui-busy")]
            try:
                links = [banner_link(run_over_websocket(base, token, kernel_id, "spark.range(10).count()", timeout=600)) for kernel_id in ids]
                ports = [int(re.fullmatch(rf"{PREFIX}sparkui/(\d+)/jobs/", link).group(1)) for link in links]
                assert len(set(ports)) == 2, links
                assert ports[1] != busy_port, f"the link names the taken port {busy_port}"
                status = "".join(c.get("text", "") for _, c in run_over_websocket(base, token, ids[0], "%spark status"))
                assert f"| UI {links[0]}\n" in status, status
                # A job's progress links to the job's own page, through the server too.
                ran = run_over_websocket(base, token, ids[0], "sc.parallelize(range(2), 2).map(lambda x: __import__('time').sleep(1.5) or x).count()")
                summary = [c["data"]["text/html"] for kind, c in ran if kind in ("display_data", "update_display_data") and "pyspark-kernel-progress" in c["data"].get("text/html", "")][-1]
                [(job_link, job)] = re.findall(r'<a href="([^"]+)" target="_blank" rel="noopener">(\d+)</a>', summary)
                assert job_link == f"{PREFIX}sparkui/{ports[0]}/jobs/job/?id={job}", job_link
                status, _, page = http(origin + job_link, token)
                assert status == 200 and f"Details for Job {job}" in page, (status, page[:500])
                for _link, port in zip(links, ports):
                    ui = f"{origin}{PREFIX}sparkui/{port}/"
                    for tab in TABS:
                        status, _, page = http(ui + tab, token)
                        assert status == 200, f"{tab}: {status}\n{page[:500]}"
                        assert f'href="{PREFIX}sparkui/{port}/jobs/"' in page, f"{tab}: the UI's own links are not under the server's prefix"
                    status, _, listed = http(ui + "api/v1/applications", token)
                    assert status == 200, listed
                    app_id = json.loads(listed)[0]["id"]
                    status, _, executors = http(f"{ui}api/v1/applications/{app_id}/allexecutors", token)
                    assert status == 200 and [e["id"] for e in json.loads(executors)] == ["driver"], executors
                    status, headers, _ = http(ui, token, follow=False)
                    assert status == 302 and headers["Location"] == f"{PREFIX}sparkui/{port}/jobs/", (status, headers.get("Location"))
                    status, headers, _ = http(ui + "jobs/", None, follow=False)
                    assert status in (302, 403) and "sparkui" not in (headers.get("Location") or "").split("?")[0], (status, headers.get("Location"))
                # The Executors tab is drawn by the UI's JavaScript from the REST API: only a browser shows it works.
                chromium.call("Page.enable")
                chromium.call("Page.navigate", url=f"{base}/api/status?token={token}")  # the token's cookie for the server
                chromium.wait_for("document.readyState === 'complete'", 60, "the server's page did not load")
                chromium.check_executors_tab(f"{origin}{links[0][:-len('jobs/')]}executors/", SCREENSHOT,
                                             "the Executors tab shows no executor through the server (jupyter-server-proxy#361)")
            finally:
                for kernel_id in ids:
                    request(base, token, "DELETE", f"/api/kernels/{kernel_id}")
    assert_no_jvm_left("ui")
    assert_no_jvm_left("ui-busy")
