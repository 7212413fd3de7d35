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

A YARN kernel's UI lets in only YARN's ResourceManager web proxy (YARN's AmIpFilter): for a port
whose kernel left a tracking URL (runtime.uiauth), the extension goes through that proxy instead,
and puts its own path where Spark's pages name YARN's (/proxy/<application>), so that the pages'
links, and the Executors tab's JavaScript, stay under the server.

It also starts the shared drivers of kernels made with driver_prestart, as the server starts (prestart).
"""

import re
import urllib.parse

from . import prestart
from .runtime import uiauth
from .runtime.ui import PATH

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
REDIRECTS = (301, 302, 303, 307, 308)


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


def through_route(route: str, uri: str) -> str:
    """The URL of a request for ``uri`` (the UI on its local port) through YARN's tracking URL ``route``."""
    parsed = urllib.parse.urlsplit(uri)
    return route.rstrip("/") + (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")


def route_headers(headers, route: str):
    """Request headers for YARN's web proxy: its own host, and no compression, so that pages can be
    rewritten (the proxy decompresses the UI's answers anyway)."""
    headers["Host"] = urllib.parse.urlsplit(route).netloc
    while "Accept-Encoding" in headers:
        del headers["Accept-Encoding"]
    return headers


def yarn_paths_replaced(page: bytes, yarn_path: str, prefix: str) -> bytes:
    """A page of the UI with YARN's proxy path (``/proxy/<application>``, Spark's proxy base on
    YARN) replaced by the server's ``prefix``: the page's links, and the UI root its JavaScript
    reads. A URL with a host (YARN's own, shown on the environment page) stays as it is."""
    return re.sub(rb"(?<![A-Za-z0-9.:\]-])" + re.escape(yarn_path.encode()) + rb"(?![0-9])", prefix.encode(), page)


def rewriter(base_url: str, route: str | None):
    """The rewrite of the UI's answers for one request: redirects as paths under the server's
    prefix, and on YARN (``route``) pages too."""
    from jupyter_server.utils import url_path_join

    def rewrite(response, request, port):
        prefix = url_path_join(base_url, PATH, str(port))
        hosts, strip = ui_hosts(port, request.host), prefix
        if route:
            yarn = urllib.parse.urlsplit(route)
            hosts, strip = hosts | {yarn.netloc.lower()}, yarn.path.rstrip("/")
        location = response.headers.get("Location")
        if location and response.code in REDIRECTS:
            response.headers["Location"] = spark_relative(location, hosts, strip)
        if route and response.body and response.headers.get("Content-Type", "").startswith("text/html") and "Content-Encoding" not in response.headers:
            response.body = yarn_paths_replaced(response.body, strip, prefix)

    return rewrite


def _load_jupyter_server_extension(serverapp):
    # Kernels made with driver_prestart: their shared drivers start now, ahead of their notebooks.
    prestart.start_drivers(serverapp.kernel_spec_manager, serverapp.root_dir, serverapp.log)
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
        # Set for each HTTP request; Spark's UI has no websockets.
        ui_token = None
        ui_route = None  # a YARN application's tracking URL, through which its UI opens

        def proxy(self, port, proxied_path):
            # The server's prefix for jupyter-server-proxy's own rewrite of redirects.
            self.proxy_base = f"{PATH}/{port}"
            self.ui_route = uiauth.read_route(runtime_dir, port)
            self.ui_token = None if self.ui_route else uiauth.read_token(runtime_dir, port)
            self.rewrite_response = [rewriter(base_url, self.ui_route)]
            return super().proxy(port, proxied_path)

        def get_client_uri(self, protocol, host, port, proxied_path):
            uri = super().get_client_uri(protocol, host, port, proxied_path)
            return through_route(self.ui_route, uri) if self.ui_route else uri

        def proxy_request_headers(self):
            headers = uiauth.request_headers(super().proxy_request_headers(), self.ui_token)
            return route_headers(headers, self.ui_route) if self.ui_route else headers

    pattern = url_path_join(base_url, PATH, r"(\d+)(.*)")
    serverapp.web_app.add_handlers(".*$", [(pattern, SparkUIHandler, {"absolute_url": False})])
    serverapp.log.info("pyspark_kernel.serverext: kernels' Spark UIs at %s", url_path_join(base_url, PATH, "<port>/"))


# The names older Jupyter servers (and notebook < 7) look for.
load_jupyter_server_extension = _load_jupyter_server_extension
