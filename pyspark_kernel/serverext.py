"""Jupyter server extension: the Spark UI of each kernel at ``<base_url>sparkui/<port>/``.

It reuses jupyter-server-proxy's local proxy (authentication, streaming, headers) under a path of
its own. jupyter-server-proxy's ``proxy/<port>/`` does not do for Spark: the UI's JavaScript takes
the path segment after ``proxy`` for an application id, so its Executors tab stays blank
(jupyter-server-proxy#361). Installing pyspark-kernel-template into the server's environment
enables the extension (etc/jupyter/jupyter_server_config.d/pyspark-kernel.json).

The UI answers only requests that carry its kernel's token (runtime.uiauth): the extension adds it,
read per request from the 0600 file the kernel keeps in this server's runtime directory, so it has
one only for its own user's kernels. It never passes the server's own credentials (cookies, the
Authorization header) on to whatever listens on the port.
"""

import urllib.parse

from .runtime import uiauth
from .runtime.ui import PATH

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _jupyter_server_extension_points():
    return [{"module": "pyspark_kernel.serverext"}]


def spark_relative(location: str, hosts, prefix: str) -> str:
    """A redirect of the UI as a path from the UI's root. The UI's own address is dropped, and so
    is the address the browser asked (Spark builds its redirects from the request's Host header),
    and the proxy base the path may already carry (spark.ui.proxyBase): jupyter-server-proxy's
    rewrite then adds the server's prefix exactly once."""
    parsed = urllib.parse.urlsplit(location)
    if parsed.netloc and parsed.netloc.lower() not in hosts:
        return location  # somewhere else altogether
    path = parsed.path or "/"
    if path == prefix or path.startswith(prefix + "/"):
        path = path[len(prefix):] or "/"
    return urllib.parse.urlunsplit(("", "", path, parsed.query, parsed.fragment))


def ui_hosts(port, request_host: str) -> set[str]:
    return {f"{host}:{port}" for host in LOCAL_HOSTS} | {request_host.lower()}


def _load_jupyter_server_extension(serverapp):
    try:
        from jupyter_server_proxy.handlers import LocalProxyHandler
    except ImportError:
        serverapp.log.warning("pyspark_kernel.serverext: jupyter-server-proxy is not installed in this server's environment, so "
                              "kernels' Spark UI links will not work (pip install jupyter-server-proxy, then restart the server)")
        return
    from jupyter_server.utils import url_path_join

    base_url = serverapp.web_app.settings["base_url"]
    runtime_dir = serverapp.runtime_dir  # where its kernels' connection files, and UI tokens, are

    class SparkUIHandler(LocalProxyHandler):
        ui_token = None  # set for each HTTP request; Spark's UI has no websockets

        def proxy(self, port, proxied_path):
            # The server's prefix for jupyter-server-proxy's own rewrite of redirects.
            self.proxy_base = f"{PATH}/{port}"
            self.ui_token = uiauth.read_token(runtime_dir, port)
            return super().proxy(port, proxied_path)

        def proxy_request_headers(self):
            return uiauth.request_headers(super().proxy_request_headers(), self.ui_token)

    def relative_redirects(response, request, port):
        location = response.headers.get("Location")
        if location and response.code in (301, 302, 303, 307, 308):
            response.headers["Location"] = spark_relative(location, ui_hosts(port, request.host), url_path_join(base_url, PATH, str(port)))

    pattern = url_path_join(base_url, PATH, r"(\d+)(.*)")
    serverapp.web_app.add_handlers(".*$", [(pattern, SparkUIHandler, {"absolute_url": False, "rewrite_response": [relative_redirects]})])
    serverapp.log.info("pyspark_kernel.serverext: kernels' Spark UIs at %s", url_path_join(base_url, PATH, "<port>/"))


# The names older Jupyter servers (and notebook < 7) look for.
load_jupyter_server_extension = _load_jupyter_server_extension
