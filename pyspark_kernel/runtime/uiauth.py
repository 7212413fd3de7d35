"""The Spark UI and its REST API answer only their owner.

Spark listens on loopback, where every user of the machine can reach it: its pages, its REST API,
and its kill buttons (the jobs page hands out its CSRF token). Spark 4's
``org.apache.spark.ui.JWSFilter`` refuses (403) every request without ``Authorization: Bearer
<JWS>`` signed with its key. Each session gets a fresh key, handed to the JVM the way secrets go
(over Py4J, or the shared driver's 0600 properties file), never on a command line. The kernel keeps
the token, not the key, in a 0600 file beside its connection file, in the Jupyter runtime
directory; the user's own Jupyter server (pyspark_kernel.serverext) reads it there and adds it to
the requests it proxies, so a path to another user's port gets nothing from it.

A token file left by a kernel that was killed names a port whose JVM is gone: a new JVM on that
port, of any user, has another key and refuses that token.

Spark 3.5 has no such filter: its UI stays off unless the kernel's settings turn it on
(spark.ui.enabled=true) or ui_access is "anyone".

On YARN the gate is YARN's. Once the application master registers, the driver puts YARN's
AmIpFilter in front of every page: it lets in only the ResourceManager's web proxy, which carries
no Authorization header, so a token filter behind it would refuse every request. The kernel adds
no token filter there; until YARN's filter arrives a stand-in of the same class, pointed at the
ResourceManager's web host, keeps the UI closed (an application can wait in its queue for long).
Once it has arrived, the kernel writes the application's tracking URL (the ResourceManager's proxy
for it) in a 0600 file beside the token's would be, and the server extension goes through that
proxy instead of the port.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import base64
import glob
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import time

from . import address

log = logging.getLogger(__name__)

FILTER = "org.apache.spark.ui.JWSFilter"
KEY_SETTING = f"spark.{FILTER}.param.secretKey"  # "secret" in the name: Spark redacts it in its environment page
YARN_FILTER = "org.apache.spark.deploy.yarn.AmIpFilter"  # Spark 4's (3.5 used Hadoop's own)
ACCESS = ("owner", "anyone")  # ui_access: who may open the UI
TOKEN_PREFIX = "pyspark-kernel-sparkui-"
TOKEN_SUFFIX = ".jws"
ROUTE_SUFFIX = ".yarn"  # the tracking URL of a YARN application's UI
# YARN's tracking URL for an application: its ResourceManager's (or web proxy's) /proxy/<id>/.
TRACKING_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?/proxy/application_[0-9]+_[0-9]+/")
YARN_NOTE = "UI access: YARN's: only its ResourceManager's web proxy reaches the UI, and your Jupyter server opens it through that proxy"
REMOVE_AT_EXIT = "remove-at-exit"  # in the scratch directory: files the watchdog removes after the kernel (watchdog.sh)
KEY_BYTES = 32  # HS256 wants 256 bits at least (jjwt's Keys.hmacShaKeyFor)


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_key() -> str:
    """A fresh HMAC key, base64url as the filter decodes it."""
    return base64url(secrets.token_bytes(KEY_BYTES))


def sign(key: str, claims: dict | None = None) -> str:
    """A JWS (HS256) of ``claims`` with ``key``: what the filter wants after "Bearer "."""
    raw_key = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    header = base64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = base64url(json.dumps(claims or {"sub": "pyspark-kernel", "iat": int(time.time())}, separators=(",", ":")).encode())
    signature = hmac.new(raw_key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64url(signature)}"


def has_filter(spark_version: str) -> bool:
    """Whether this Spark ships the JWS filter (4.0 and later)."""
    try:
        return int(str(spark_version).split(".")[0]) >= 4
    except ValueError:
        return False


class Protection:
    """How one session's UI is kept to its owner: settings for its JVM (``settings`` may go on a
    command line, ``secrets`` may not), the token its owner's requests carry, and a line for
    %spark status."""

    def __init__(self, settings: dict, secrets: dict, token: str | None, note: str) -> None:
        self.settings, self.secrets, self.token, self.note = settings, secrets, token, note


def protect(conf: dict, access: str, spark_version: str, master: str = "", environ=None) -> Protection:
    """The protection of a UI whose JVM gets ``conf``, for ui_access ``access``, on ``master``
    (a YARN master's ResourceManager is found from ``environ``'s Hadoop configuration)."""
    if conf.get("spark.ui.enabled", "true").strip().lower() == "false":
        return Protection({}, {}, None, "")
    if access == "anyone":  # on YARN, only until YARN's filter arrives
        return Protection({}, {}, None, YARN_NOTE if master.strip() == "yarn" else "UI access: any user of this machine (ui_access anyone)")
    if conf.get("spark.ui.filters"):
        return Protection({}, {}, None, "UI access: your spark.ui.filters decide")
    if not has_filter(spark_version):
        if "spark.ui.enabled" in conf:  # the kernel's own choice
            return Protection({}, {}, None, f"UI access: any user of this machine (Spark {spark_version} has no token filter)")
        return Protection({"spark.ui.enabled": "false"}, {}, None,
                          f"UI off: Spark {spark_version} cannot keep it to you (set spark.ui.enabled=true, or ui_access anyone, to open it to every local user)")
    stand_in = yarn_stand_in(environ or {}) if master.strip() == "yarn" else None
    if stand_in:
        return Protection(stand_in, {}, None, YARN_NOTE)
    key = new_key()
    return Protection({"spark.ui.filters": FILTER}, {KEY_SETTING: key}, sign(key), "")


def yarn_stand_in(environ) -> dict | None:
    """Settings for YARN's AmIpFilter as it stands before the application master registers: only
    the ResourceManager's web host gets in, and others are sent to its web UI. YARN's own filter,
    with the application's proxy, comes in front of it when the master registers. None when the
    ResourceManager cannot be found: the token filter then keeps the UI closed."""
    try:
        host, port = address.resource_manager(environ, web=True)
    except address.Unknown:
        return None
    if not host or "," in host:
        return None
    web = f"[{host}]" if ":" in host else host
    return {"spark.ui.filters": YARN_FILTER, f"spark.{YARN_FILTER}.param.PROXY_HOSTS": host,
            f"spark.{YARN_FILTER}.param.PROXY_URI_BASES": f"http://{web}:{port}/cluster"}


def token_directory(fallback: str) -> str:
    """Where the kernel keeps its UI token: beside its connection file (the Jupyter server's runtime
    directory, where pyspark_kernel.serverext looks), or ``fallback`` outside a Jupyter kernel."""
    try:
        from ipykernel.kernelapp import IPKernelApp

        if IPKernelApp.initialized():
            return os.path.dirname(os.path.abspath(IPKernelApp.instance().abs_connection_file))
    except Exception:  # not in a kernel, or an ipykernel without these names
        log.debug("finding the kernel's connection file", exc_info=True)
    return fallback


def token_path(directory: str, port, pid: int | None = None, suffix: str = TOKEN_SUFFIX) -> str:
    return os.path.join(directory, f"{TOKEN_PREFIX}{int(port)}-{os.getpid() if pid is None else pid}{suffix}")


class Credential:
    """A kernel's way into its UI: the protection of its session's UI, and at most one token file
    and one route file (a YARN application's tracking URL), removed when the session ends, and by
    the kernel's watchdog once the kernel has exited (jupyter_client's SIGTERM comes before
    Python's exit handlers on a busy machine)."""

    def __init__(self, scratch: str) -> None:
        self.path = None  # the token file
        self.route = None  # the route file
        self.token = None
        self.note = ""
        self.at_exit = os.path.join(scratch, REMOVE_AT_EXIT)

    def protect(self, conf: dict, access: str, spark_version: str, master: str = "", environ=None) -> Protection:
        """The protection of a new session's UI (see protect); its token is published once the UI has a port."""
        found = protect(conf, access, spark_version, master, environ)
        self.token, self.note = found.token, found.note
        return found

    def publish(self, directory: str, port, token: str | None = None, note: str | None = None) -> str | None:
        """Write the token (``token``, or the one protect made) for the UI on ``port``, 0600 and
        atomically; the file, or None."""
        self.withdraw()
        if token is not None or note is not None:  # a UI protected by another process (the shared driver)
            self.token, self.note = token, note or ""
        if not self.token or not port:
            return None
        self.path = self.write(directory, token_path(directory, port), self.token)
        return self.path

    def publish_route(self, directory: str, port, url: str) -> str | None:
        """Write YARN's tracking URL for the UI on ``port``: the Jupyter server opens the UI through
        it. Only for a UI whose gate is YARN's (no token: YARN's proxy would not carry it)."""
        if self.token or not port or not TRACKING_URL.fullmatch(url):
            return None
        self.route = self.write(directory, token_path(directory, port, suffix=ROUTE_SUFFIX), url)
        return self.route

    def write(self, directory: str, path: str, text: str) -> str | None:
        """``text`` in ``path``, a new 0600 file renamed into place, and named for the watchdog; None
        when it cannot be written (the UI then stays closed, and the session goes on)."""
        if "\n" in path:  # the watchdog reads one path a line
            return None
        try:
            # A new file of its own (O_EXCL, 0600), renamed into place: never one another user made.
            descriptor, partial = tempfile.mkstemp(prefix=".pyspark-kernel-", dir=directory)
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(text)
            os.replace(partial, path)
            with open(self.at_exit, "w", encoding="utf-8") as handle:
                handle.writelines(f"{kept}\n" for kept in (self.path, self.route, path) if kept)
        except OSError:
            log.warning("could not write the Spark UI's file %s", path, exc_info=True)
            return None
        return path

    def withdraw(self) -> None:
        kept = [path for path in (self.path, self.route) if path]
        self.path = self.route = None
        for gone in [*kept, self.at_exit] if kept else ():
            try:
                os.unlink(gone)
            except FileNotFoundError:
                log.debug("%s was already gone", gone, exc_info=True)

    def status_lines(self, url: str | None) -> list[str]:
        """%spark status: who may open the UI at ``url`` (the driver's own address), and how
        without a Jupyter server in between."""
        if self.path and url:
            return [f"UI access: yours alone, through your Jupyter server; without it: "
                    f'curl -H "Authorization: Bearer $(cat {self.path})" {url.rstrip("/")}/jobs/']
        return [self.note] if self.note else []


def read_token(directory: str, port) -> str | None:
    """The token of this user's kernel whose UI is on ``port``, from ``directory``: only a regular
    file of this user's, unreadable by others, of a kernel that still runs (the newest if several)."""
    return read_private(directory, port, TOKEN_SUFFIX)


def read_route(directory: str, port) -> str | None:
    """The tracking URL through which this user's YARN kernel's UI on ``port`` opens, as read_token finds files."""
    url = read_private(directory, port, ROUTE_SUFFIX)
    return url if url and TRACKING_URL.fullmatch(url) else None


def read_private(directory: str, port, suffix: str) -> str | None:
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), f"{TOKEN_PREFIX}{int(port)}-*{suffix}")):
        pid = path[len(os.path.join(directory, f"{TOKEN_PREFIX}{int(port)}-")):-len(suffix)]
        try:
            if not pid.isdigit() or not alive(int(pid)):
                continue
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            log.debug("opening the UI's file %s", path, exc_info=True)
            continue
        with os.fdopen(descriptor, encoding="ascii", errors="replace") as handle:
            info = os.fstat(descriptor)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077:
                found.append((info.st_mtime, handle.read().strip()))
    return max(found)[1] if found else None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process of this user's."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: not the kernel that wrote the file
        return False


def request_headers(headers, token: str | None):
    """A browser's request headers as the UI gets them: none of the Jupyter server's credentials
    (cookies, its token), and the UI's own token when this user has one for that port."""
    for name in ("Cookie", "Authorization"):
        while name in headers:
            del headers[name]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers
