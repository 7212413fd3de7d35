"""The address a cluster reaches the driver at.

In client mode the cluster calls the driver back: YARN's application master and every executor
connect to spark.driver.host. Left alone, Spark advertises this machine's host name, or, when that
resolves to a loopback address (as on many laptops and containers), the first address of whichever
interface it lists first: often not one the cluster can reach. The kernel knows better: the
address this machine reaches the cluster's entry point from (the ResourceManager, the standalone
master) is on a route the cluster can take back. Where the entry point cannot be found (no Hadoop
configuration, a name that does not resolve), the kernel leaves Spark's choice alone, and
``create`` and ``doctor`` say which setting to give. Standard library only.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import ipaddress
import os
import re
import socket
import xml.etree.ElementTree as ElementTree

from .masters import MASTERS, master_addresses

DRIVER_HOST = "spark.driver.host"
BIND_ADDRESS = "spark.driver.bindAddress"
RM_PORT = 8032  # YARN's default for yarn.resourcemanager.address
RM_WEB_PORT = 8088
RM_HTTPS_PORT = 8090  # yarn.resourcemanager.webapp.https.address
# Spark's own ways to choose the address, which the kernel must not overrule.
CHOSEN_BY_ENVIRONMENT = ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME")
_REFERENCE = re.compile(r"\$\{([^}]+)\}")


class Unknown(Exception):
    """Why the cluster's entry point cannot be told from here."""


def kind_of(master: str) -> str | None:
    return next((kind for kind, pattern in MASTERS.items() if pattern.fullmatch(master)), None)


def hadoop_conf_dirs(environ) -> list[str]:
    return [environ[name] for name in ("HADOOP_CONF_DIR", "YARN_CONF_DIR") if environ.get(name)]


def hadoop_properties(environ, file: str) -> dict:
    """The properties of ``file`` (yarn-site.xml, core-site.xml) in the Hadoop configuration
    directories, the first directory's value winning, ${...} references resolved within them."""
    properties: dict = {}
    for directory in reversed(hadoop_conf_dirs(environ)):
        path = os.path.join(directory, file)
        if not os.path.isfile(path):
            continue
        try:
            root = ElementTree.parse(path).getroot()
        except (ElementTree.ParseError, OSError) as error:
            raise Unknown(f"{path} is not readable Hadoop configuration ({error})") from None
        for prop in root.iter("property"):
            name, value = prop.findtext("name"), prop.findtext("value")
            if name and value is not None:
                properties[name.strip()] = value.strip()
    def value_of(found):
        name = found.group(1)
        if name.startswith("env."):  # Hadoop's ${env.NAME}: the environment's
            return environ.get(name[len("env."):], found.group(0))
        return properties.get(name, found.group(0))

    for name, value in properties.items():
        for _ in range(10):  # references to references, as Hadoop resolves them
            value = _REFERENCE.sub(value_of, value)
        properties[name] = value
    return properties


def split_address(address: str, default_port: int) -> tuple[str, int]:
    host, colon, port = address.strip().rpartition(":")
    if not colon or not port.isdigit():
        return address.strip().strip("[]"), default_port
    return host.strip("[]"), int(port)


def web_scheme(environ) -> str:
    """http, or https when yarn.http.policy makes the ResourceManager's web address HTTPS only."""
    return "https" if hadoop_properties(environ, "yarn-site.xml").get("yarn.http.policy", "").upper() == "HTTPS_ONLY" else "http"


def resource_managers(environ, web: bool = False) -> list[tuple[str, int]]:
    """(host, port) of each ResourceManager (their web addresses with ``web``), from yarn-site.xml:
    the one, or each of an HA set in yarn.resourcemanager.ha.rm-ids order."""
    if not hadoop_conf_dirs(environ):
        raise Unknown("neither HADOOP_CONF_DIR nor YARN_CONF_DIR is set, so the ResourceManager's address is unknown")
    where = os.pathsep.join(hadoop_conf_dirs(environ))
    if not any(os.path.isfile(os.path.join(directory, "yarn-site.xml")) for directory in hadoop_conf_dirs(environ)):
        raise Unknown(f"there is no yarn-site.xml in {where}, so the ResourceManager's address is unknown")
    yarn = hadoop_properties(environ, "yarn-site.xml")
    ids = [rm.strip() for rm in yarn.get("yarn.resourcemanager.ha.rm-ids", "").split(",") if rm.strip()]
    suffixes = [f".{rm}" for rm in ids] if yarn.get("yarn.resourcemanager.ha.enabled", "false").lower() == "true" and ids else [""]
    if not web:
        key, default_port = "yarn.resourcemanager.address", RM_PORT
    elif web_scheme(environ) == "https":
        key, default_port = "yarn.resourcemanager.webapp.https.address", RM_HTTPS_PORT
    else:
        key, default_port = "yarn.resourcemanager.webapp.address", RM_WEB_PORT
    found = []
    for suffix in suffixes:
        address = yarn.get(key + suffix) or yarn.get(key)
        if address and "${" not in address and not address.startswith("0.0.0.0"):
            found.append(split_address(address, default_port))
            continue
        host = yarn.get("yarn.resourcemanager.hostname" + suffix) or yarn.get("yarn.resourcemanager.hostname")
        if not host or host == "0.0.0.0" or "${" in host:
            raise Unknown(f"yarn-site.xml in {where} names no ResourceManager (yarn.resourcemanager.hostname{suffix})")
        port = split_address(address, default_port)[1] if address and "${" not in address else default_port
        found.append((host, port))
    return found


def resource_manager(environ, web: bool = False) -> tuple[str, int]:
    """(host, port) of the ResourceManager (its web address with ``web``); the first of an HA set."""
    return resource_managers(environ, web)[0]


def entry_point(master: str, environ) -> tuple[str, int]:
    """(host, port) the driver first talks to on the cluster ``master`` names."""
    kind = kind_of(master)
    if kind == "yarn":
        return resource_manager(environ)
    if kind == "standalone":
        return master_addresses(master)[0]
    raise Unknown(f"{master} is not a YARN or standalone master")


def route_source(host: str, port: int) -> str:
    """The address of this machine that packets to ``host`` leave from (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as error:
        raise Unknown(f"{host} does not resolve here ({error.strerror or error})") from None
    family, kind, proto, _, target = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.connect(target)  # UDP: picks the route and the source address, sends nothing
        except OSError as error:
            raise Unknown(f"there is no route from here to {host} ({error.strerror or error})") from None
        return probe.getsockname()[0]


def driver_host(master: str, conf: dict, environ) -> str | None:
    """The address the driver should advertise to the cluster, when the kernel has to choose it:
    a YARN or standalone master, no spark.driver.host given, no SPARK_LOCAL_IP or
    SPARK_LOCAL_HOSTNAME; None otherwise. Raises Unknown when it should choose and cannot."""
    if kind_of(master) not in ("yarn", "standalone") or conf.get(DRIVER_HOST) or any(environ.get(name) for name in CHOSEN_BY_ENVIRONMENT):
        return None
    host, port = entry_point(master, environ)
    source = route_source(host, port)
    if ipaddress.ip_address(source.split("%")[0]).is_loopback and not is_loopback(host):
        raise Unknown(f"this machine reaches {host} from a loopback address")
    return source


def jvm_environment(settings: dict, environ) -> dict:
    """What the driver JVM's environment needs beside the kernel's: a local driver's UI listens on
    its RPC's bind address (loopback, kernelspec.LOCAL_DRIVER_CONF), as Spark takes the UI's address
    from SPARK_LOCAL_IP alone, and else listens on every interface. A SPARK_LOCAL_IP of the user's stands."""
    if kind_of(settings.get("spark.master", "")) != "local" or not settings.get(BIND_ADDRESS) or environ.get("SPARK_LOCAL_IP"):
        return {}
    return {"SPARK_LOCAL_IP": settings[BIND_ADDRESS]}


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in socket.getaddrinfo(host, None))
    except socket.gaierror:
        return False


# upgrade takes no settings: create --force keeps the kernel's others and adds this one.
FIX = "give the address of this machine that the cluster reaches: pyspark-kernel create --force -k KERNEL --spark.driver.host=ADDRESS (it keeps the kernel's other settings)"
