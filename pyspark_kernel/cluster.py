"""What `doctor` asks the cluster itself, and `create`'s word on the driver's address.

For a YARN kernel: the ResourceManager answers (its REST API), the queue the kernel names exists
and takes applications, and HDFS answers when it is the default file system (a TCP connection to
the NameNode's RPC port, which is what the driver uses); where Spark's jars come from. For YARN
and standalone kernels: the address the driver will advertise (runtime.address). Everything is
read from the Hadoop client configuration the kernel would get (HADOOP_CONF_DIR in its env); no
JVM is started. Standard library and the generator's own modules only.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator

from .checks import Check, ok, problem
from .runtime import address

TIMEOUT = 10  # seconds for each request or connection: a daemon that is up answers at once
NAMENODE_PORT = 8020  # HDFS's default NameNode RPC port
JARS_KEYS = ("spark.yarn.archive", "spark.yarn.jars")
ARCHIVE_DOC = "docs/clusters.md, Spark's jars on YARN"


def shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def why_not(error: BaseException, where: str) -> str:
    """What a failed request or connection to ``where`` says, in a few words."""
    reason = getattr(error, "reason", error)  # URLError wraps the socket's error
    if isinstance(reason, socket.gaierror):
        return f"{where.rsplit(':', 1)[0]} does not resolve here"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"{where} did not answer within {TIMEOUT} s"
    if isinstance(reason, ConnectionRefusedError):
        return f"nothing listens on {where}"
    if isinstance(reason, OSError):
        return f"{where}: {reason.strerror or reason}"
    return f"{where}: {reason}"


def get_json(url: str):
    # Straight to the cluster, as the driver's RPC goes: a proxy for the web would not be the driver's path.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=TIMEOUT) as page:
        return json.load(page)


def conf_dirs_text(env) -> str:
    return os.pathsep.join(address.hadoop_conf_dirs(env))


def yarn_checks(conf: dict, env, create: str) -> Iterator[Check]:
    """The live checks of a YARN kernel whose client configuration is there."""
    rm_check, base = resource_manager_check(env)
    yield rm_check
    if base:
        yield queue_check(base, conf.get("spark.yarn.queue") or "default", create)
    yield hdfs_check(env)
    yield jars_check(conf, env)


def resource_manager_check(env) -> tuple[Check, str | None]:
    """The ResourceManager's answer to /ws/v1/cluster/info (the active one of an HA set), and the
    base URL of its REST API (None when it cannot be asked)."""
    try:
        found = address.resource_managers(env, web=True)
        scheme = address.web_scheme(env)
    except address.Unknown as why:
        return problem("resource_manager", str(why), "point HADOOP_CONF_DIR at the cluster's client configuration, whose yarn-site.xml names its ResourceManager"), None
    failures = []
    for host, port in found:
        base = f"{scheme}://{shown(host, port)}"
        try:
            info = get_json(f"{base}/ws/v1/cluster/info")["clusterInfo"]
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):  # a secured cluster (SPNEGO): it is up, its REST API is not ours to read
                return ok("resource_manager", f"{base} answers, and asks for authentication (HTTP {error.code}): the queue is not checked"), None
            failures.append(f"{base} answers HTTP {error.code}")
            continue
        except (OSError, ValueError, KeyError, TypeError) as error:
            failures.append(why_not(error, shown(host, port)))
            continue
        if info.get("haState") == "STANDBY" or info.get("state") != "STARTED":
            failures.append(f"{base} is {info.get('state')} ({info.get('haState')})")
            continue
        return ok("resource_manager", f"{base} answers: Hadoop {info.get('hadoopVersion', '?')}, {info.get('state')}"), base
    curl = f"curl {scheme}://{shown(*found[0])}/ws/v1/cluster/info"
    return problem("resource_manager", f"the ResourceManager does not answer: {'; '.join(failures)}",
                   f"start the cluster, or check that {conf_dirs_text(env)} is its client configuration; from this machine: {curl}"), None


def queue_paths(info: dict) -> Iterator[tuple[str, str, bool]]:
    """(path, state, is a leaf) of each queue in the scheduler's answer: the Capacity Scheduler's
    (queues under the root), the Fair Scheduler's (rootQueue, childQueues), FIFO's one queue."""
    if info.get("type") == "fifoScheduler":
        yield "root.default", info.get("qstate", "RUNNING"), True
        return

    def walk(queue: dict, parent: str) -> Iterator[tuple[str, str, bool]]:
        name = queue.get("queueName", "")
        path = queue.get("queuePath") or (name if not parent or name.startswith(parent + ".") else f"{parent}.{name}")
        children = queue.get("queues") or queue.get("childQueues") or {}
        kids = children.get("queue", []) if isinstance(children, dict) else children
        kids = [kids] if isinstance(kids, dict) else kids  # a lone queue comes as an object in some versions
        yield path, str(queue.get("state") or "RUNNING"), not kids
        for kid in kids:
            yield from walk(kid, path)

    yield from walk(info.get("rootQueue") or info, "")


def short_name(path: str) -> str:
    """A queue as spark.yarn.queue takes it: a child of the root by its name, deeper ones by path."""
    rest = path.removeprefix("root.")
    return rest if "." not in rest else path


def queue_check(base: str, wanted: str, create: str) -> Check:
    try:
        queues = list(queue_paths(get_json(f"{base}/ws/v1/cluster/scheduler")["scheduler"]["schedulerInfo"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # AttributeError: an answer of another shape
        return problem("queue", f"the ResourceManager's scheduler did not say its queues: {why_not(error, base)}", f"from this machine: curl {base}/ws/v1/cluster/scheduler")
    leaves = [short_name(path) for path, _, leaf in queues if leaf]
    choose = f"{create} --spark.yarn.queue=QUEUE, QUEUE one of {', '.join(leaves)} (it keeps the kernel's other settings)"
    match = [(path, state, leaf) for path, state, leaf in queues if wanted in (path, f"root.{wanted}") or ("." not in wanted and path.rsplit(".", 1)[-1] == wanted)]
    if not match:
        return problem("queue", f"the ResourceManager has no queue {wanted} (spark.yarn.queue); its queues: {', '.join(leaves)}", choose)
    path, state, leaf = match[0]
    if not leaf:
        return problem("queue", f"{wanted} ({path}) is a parent queue, and applications go to leaf queues: {', '.join(leaves)}", choose)
    if state != "RUNNING":
        return problem("queue", f"the queue {wanted} ({path}) is {state}: it takes no new application", f"ask the cluster's administrators to start it, or choose another: {choose}")
    return ok("queue", f"{wanted} ({path}) is {state}")


def namenodes(env, default_fs: str) -> list[tuple[str, int]]:
    """The RPC addresses of the NameNodes behind ``default_fs``: its host and port, or each
    NameNode of an HA nameservice (hdfs-site.xml)."""
    parsed = urllib.parse.urlsplit(default_fs)
    name = parsed.hostname or ""
    hdfs = address.hadoop_properties(env, "hdfs-site.xml")
    services = [service.strip() for service in hdfs.get("dfs.nameservices", "").split(",")]
    if parsed.port is None and name in services:
        ids = [node.strip() for node in hdfs.get(f"dfs.ha.namenodes.{name}", "").split(",") if node.strip()]
        found = [address.split_address(hdfs[key], NAMENODE_PORT) for key in (f"dfs.namenode.rpc-address.{name}.{node}" for node in ids) if hdfs.get(key)]
        if found:
            return found
    return [(name, parsed.port or NAMENODE_PORT)]


def hdfs_check(env) -> Check:
    """HDFS, when core-site.xml makes it the default file system (Spark's staging directory and
    paths without a scheme are there): its NameNode's RPC port accepts a connection."""
    try:
        core = address.hadoop_properties(env, "core-site.xml")
        default_fs = core.get("fs.defaultFS") or core.get("fs.default.name") or "file:///"
        if not default_fs.startswith("hdfs://"):
            return ok("hdfs", f"the default file system is {default_fs}, not HDFS: not checked")
        nodes = namenodes(env, default_fs)
    except address.Unknown as why:
        return problem("hdfs", str(why), "point HADOOP_CONF_DIR at the cluster's client configuration")
    failures = []
    for host, port in nodes:
        try:
            socket.create_connection((host, port), timeout=TIMEOUT).close()
            return ok("hdfs", f"{default_fs}: the NameNode at {shown(host, port)} accepts connections")
        except OSError as error:
            failures.append(why_not(error, shown(host, port)))
    return problem("hdfs", f"{default_fs} is the default file system (fs.defaultFS), and its NameNode does not answer: {'; '.join(failures)}",
                   f"start HDFS, or check fs.defaultFS in the core-site.xml of {conf_dirs_text(env)}")


def jars_check(conf: dict, env) -> Check:
    """Where the containers get Spark's jars: without spark.yarn.archive or spark.yarn.jars, Spark
    uploads its whole jars directory to the staging directory at every start."""
    given = next((key for key in JARS_KEYS if conf.get(key)), None)
    if given:
        return ok("spark_jars", f"{given} {conf[given]}: Spark's jars are not uploaded at each start")
    jars = os.path.join(env.get("SPARK_HOME") or "", "jars")
    size = sum(entry.stat().st_size for entry in os.scandir(jars) if entry.is_file()) if os.path.isdir(jars) else 0
    return ok("spark_jars", f"neither spark.yarn.archive nor spark.yarn.jars is set: every start uploads Spark's jars ({size / 2**20:.0f} MiB) to the cluster; "
                            f"to upload them once, set spark.yarn.archive ({ARCHIVE_DOC})")


def driver_address_check(module, master: str, conf: dict, env, create: str) -> Check:
    """The address the driver will advertise to a YARN or standalone cluster, and why; ``module``:
    the address module the kernel runs (its own copy of runtime.address)."""
    given = conf.get(module.DRIVER_HOST)
    if given:
        return ok("driver_address", f"{given}, as the kernel's {module.DRIVER_HOST} sets it")
    chosen = next((name for name in module.CHOSEN_BY_ENVIRONMENT if env.get(name)), None)
    if chosen:
        return ok("driver_address", f"Spark's choice from {chosen}={env[chosen]}")
    try:
        host = module.driver_host(master, conf, env)
        target = module.entry_point(master, env)
    except module.Unknown as why:
        return problem("driver_address", f"{why}; Spark will pick an address itself, which the cluster may not reach",
                       f"give the address of this machine that the cluster reaches: {create} --spark.driver.host=ADDRESS (it keeps the kernel's other settings)")
    what = "ResourceManager" if module.kind_of(master) == "yarn" else "master"
    return ok("driver_address", f"{host}, the address this machine reaches the {what} at {shown(*target)} from")


def create_notes(master: str, conf: dict, env, create: str) -> list[str]:
    """What `create` says of a YARN or standalone kernel whose driver address the kernel will not
    be able to choose when it starts (the kernel is made all the same)."""
    if address.kind_of(master) not in ("yarn", "standalone"):
        return []
    if address.kind_of(master) == "yarn":
        try:
            address.resource_manager(env)
        except address.Unknown as why:  # the kernel would not find the cluster at all: that first
            return [f"NOTE: HADOOP_CONF_DIR: {why} "
                    f"({create} --env HADOOP_CONF_DIR=DIR, DIR holding the cluster's yarn-site.xml and core-site.xml)"]
    check = driver_address_check(address, master, conf, env, create)
    return [f"NOTE: {address.DRIVER_HOST}: {check.text} ({check.fix})"] if check.problem else []
