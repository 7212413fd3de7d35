"""Spark master URLs: one reading of each form, for the generator (pyspark_kernel.validate checks
an answer against MASTERS) and for the kernel (which addresses to try, where a Spark Connect
token goes). Standard library only.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import re

CONNECT_SCHEME = "sc://"
CONNECT_PORT = 15002  # Spark Connect's default, for sc://host without a port
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
_PORT = r"(?:[1-9][0-9]{0,4})"
# Each kind of master, as a URL the generator accepts (fullmatch).
MASTERS = {
    "local": re.compile(r"local(?:\[(?:\*|[1-9][0-9]*)(?:,\s*[1-9][0-9]*)?\])?"),
    "standalone": re.compile(rf"spark://{_HOST}:{_PORT}(?:,{_HOST}:{_PORT})*"),
    "yarn": re.compile(r"yarn"),
    "kubernetes": re.compile(rf"k8s://(?:https?://)?{_HOST}(?::{_PORT})?"),
    "connect": re.compile(rf"sc://{_HOST}(?::{_PORT})?(?:/(?:;[A-Za-z_][A-Za-z0-9_]*=[^;\s]*)*)?"),
}
MASTER_FORMS = "local, local[N], local[*], local[N,F], spark://host:port[,host:port], yarn, k8s://https://host:port, sc://host[:port][/;params]"


def is_connect(master: str) -> bool:
    """Whether ``master`` is a Spark Connect server's URL."""
    return master.startswith(CONNECT_SCHEME)


def split_master(master: str) -> tuple[str, str, str]:
    """A master URL's scheme, its authority (one or more host:port, comma-separated) and the rest
    from the first "/" on ("" when there is none): "sc://h:1/;a=b" -> ("sc", "h:1", "/;a=b")."""
    scheme, _, rest = master.partition("://")
    authority, slash, path = rest.partition("/")
    return scheme, authority, slash + path


def master_addresses(master: str) -> list[tuple[str, int]]:
    """(host, port) pairs a cluster master URL names; empty for local, yarn and k8s masters."""
    scheme, authority, _ = split_master(master)
    if scheme not in ("spark", "sc"):
        return []
    pairs = []
    for address in authority.split(","):
        host, colon, port = address.rpartition(":")
        if not colon or host.endswith(":") or not port.isdigit():  # no port (sc://host, sc://[::1]): Spark Connect's default
            host, port = address, str(CONNECT_PORT)
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def with_token(master: str, token: str | None) -> str:
    """A Spark Connect URL with the token from the environment added, if there is one."""
    if not token:
        return master
    _, _, path = split_master(master)
    return master + ("" if path else "/") + f";token={token}"
