"""The Spark UI's address as the notebook's browser reaches it.

A kernel under a Jupyter server whose base URL it knows serves its UI through that server, at
``<base>sparkui/<port>/`` (pyspark-kernel's server extension, on jupyter-server-proxy). A JupyterHub
single-user server gives its base in JUPYTERHUB_SERVICE_PREFIX; any server can give it in
PYSPARK_KERNEL_SERVER_URL, in its own environment or in the kernel's (``--env``). The path has no ``proxy`` segment:
the UI's JavaScript takes the segment after one for an application id, and its Executors tab stays
blank (jupyter-server-proxy#361). Spark learns the path before its JVM starts (spark.ui.proxyBase,
a JVM system property), so its own links and REST calls stay under it.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import re
import socket
import urllib.parse

from .diagnostics import SparkStartError

PATH = "sparkui"  # also the server extension's (pyspark_kernel.serverext)
SERVER_URL_VARIABLE = "PYSPARK_KERNEL_SERVER_URL"
HUB_PREFIX_VARIABLE = "JUPYTERHUB_SERVICE_PREFIX"
# A URL path as RFC 3986 allows it (JupyterHub %-escapes other characters in user names): nothing
# that could leave an HTML attribute or a JVM option.
URL_PATH = re.compile(r"/[A-Za-z0-9._~%!$&()*+,;=:@/-]*")
URL_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")


def server_base(environ) -> str | None:
    """The Jupyter server's base URL ("/user/ann/" or "https://host/user/ann/"), or None."""
    for where in (SERVER_URL_VARIABLE, HUB_PREFIX_VARIABLE):
        value = environ.get(where)
        if value:
            parsed = urllib.parse.urlsplit(value)
            if (not URL_PATH.fullmatch(parsed.path) or parsed.query or parsed.fragment
                    or (parsed.scheme or parsed.netloc) and (parsed.scheme not in ("http", "https") or not URL_HOST.fullmatch(parsed.netloc))):
                raise SparkStartError(f"{where} is {value!r}, not the Jupyter server's base URL",
                                      "set it to a path such as /user/ann/ or a URL such as https://hub.example.org/user/ann/, then restart the kernel")
            return value if value.endswith("/") else value + "/"
    return None


def free_port() -> int:
    """A TCP port free on loopback now (the kernel's UI, the shared driver's ports)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proxy_base(base: str, port) -> str:
    """spark.ui.proxyBase for a UI on ``port``: the path part only, without a trailing slash."""
    return urllib.parse.urlsplit(base).path + f"{PATH}/{port}"


def ui_settings(conf: dict, base: str | None, pick_port=free_port) -> dict:
    """Settings that put the UI under the server's base: a port chosen now (the path names it) and
    the proxy base. None needed without a base, or when the UI is off."""
    if base is None or conf.get("spark.ui.enabled", "true").strip().lower() == "false":
        return {}
    port = conf.get("spark.ui.port") or str(pick_port())
    return {"spark.ui.port": port, "spark.ui.proxyBase": proxy_base(base, port)}


def ui_port(web_url: str | None) -> int | None:
    return urllib.parse.urlsplit(web_url).port if web_url else None


def ui_root(web_url: str | None, base: str | None) -> str | None:
    """The UI's root, through the server when there is a base; its pages are below it."""
    if not web_url:
        return None
    if base is None:
        return web_url.rstrip("/")
    return f"{base}{PATH}/{ui_port(web_url)}"


def ui_link(web_url: str | None, base: str | None) -> str | None:
    """The link the banner and %spark status show: through the server when there is a base."""
    if not web_url:
        return None
    if base is None:
        return web_url
    return f"{ui_root(web_url, base)}/jobs/"
