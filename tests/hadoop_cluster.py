"""A live Hadoop cluster for the tests: HDFS and YARN of the Hadoop whose client pip's PySpark
ships, on a host of their own.

The host is a network namespace with a veth pair: the cluster has its own address, and the test
machine (where kernels and their drivers run) another one on the same /30 link; the namespace has
no other route, so the cluster reaches the driver only at an address the driver advertises on that
link. Its daemons (tests/hadoop_cluster/OneNodeCluster.java) run in a mount namespace of their own
too, where the directories a test names are hidden under empty tmpfs mounts: the executors in its
containers can run only what the kernel shipped them.

Hadoop's jars come from Maven Central (tests/hadoop_cluster/pom.xml), compiled against with javac,
and cached in the test cache by the contents of the pom and the Java source. Needs root (ip netns,
unshare) and Maven; CI has both.
"""

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import shlex
import shutil
import subprocess
import time
import urllib.request

from .environments import cache_root

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hadoop_cluster")
POM = os.path.join(HERE, "pom.xml")
SOURCE = os.path.join(HERE, "OneNodeCluster.java")
BUILD_TIMEOUT = 900  # seconds: Maven's first download of Hadoop (about 110 MB)
START_TIMEOUT = 180  # seconds for the four daemons to come up and the node to register
STOP_TIMEOUT = 60  # seconds for them to stop, the NodeManager's containers with them
# A test's cluster lives minutes on a busy machine: the JIT's first tier only, one GC thread.
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
LOG_TIMES = ("-Dorg.slf4j.simpleLogger.showDateTime=true", "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS")
SUBNETS = ipaddress.ip_network("10.231.0.0/16")  # /30 links for the tests' hosts


def java_home():
    """The JDK the cluster and its containers run on: JAVA_HOME, else the one javac belongs to."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "javac")):
        return home
    javac = shutil.which("javac")
    if javac is None:
        raise AssertionError("no javac on PATH: the live YARN tests compile their cluster; install a JDK (apt-get install openjdk-17-jdk-headless)")
    return os.path.dirname(os.path.dirname(os.path.realpath(javac)))


def built_cluster():
    """(classpath, classes directory) of the one-node cluster, built once per pom and source."""
    import fcntl

    with open(POM, "rb") as pom, open(SOURCE, "rb") as source:
        key = hashlib.sha256(pom.read() + b"\0" + source.read()).hexdigest()[:16]
    target = os.path.join(cache_root(), f"hadoop-cluster-{key}")
    lib, classes = os.path.join(target, "lib"), os.path.join(target, "classes")
    marker = os.path.join(target, ".complete")
    os.makedirs(cache_root(), exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building it right now
        if not os.path.isfile(marker):
            shutil.rmtree(target, ignore_errors=True)
            if shutil.which("mvn") is None:
                raise AssertionError("no mvn on PATH: the live YARN tests fetch Hadoop with Maven; install it (apt-get install maven)")
            fetched = subprocess.run(["mvn", "-q", "-B", "-f", POM, "dependency:copy-dependencies", f"-DoutputDirectory={lib}"],
                                     capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            if fetched.returncode != 0:
                raise AssertionError(f"Maven could not fetch Hadoop's mini cluster:\n{fetched.stdout[-3000:]}{fetched.stderr[-3000:]}")
            built = subprocess.run([os.path.join(java_home(), "bin", "javac"), "-d", classes, "-cp", os.path.join(lib, "*"), SOURCE],
                                   capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            if built.returncode != 0:
                raise AssertionError(f"javac could not compile {SOURCE}:\n{built.stderr[-3000:]}")
            open(marker, "w").close()
            prune(keep=target)
    return f"{classes}:{os.path.join(lib, '*')}", classes


def prune(keep):
    """Builds of other poms and sources, and their locks: superseded."""
    for entry in os.listdir(cache_root()):
        path = os.path.join(cache_root(), entry)
        if not entry.startswith("hadoop-cluster-") or path in (keep, keep + ".lock"):
            continue
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


class Host:
    """A network namespace linked to this machine by a veth pair: ``address`` is the host's,
    ``gateway`` this machine's end of the link (the only address of ours it can reach)."""

    def __init__(self, name, gateway, address):
        self.name, self.gateway, self.address = name, gateway, address

    def command(self, argv, hide=()):
        """``argv`` run on this host, with ``hide`` hidden from it (its own mount namespace)."""
        mounts = "".join(f"mount -t tmpfs none {shlex.quote(str(path))} && " for path in hide)
        return ["ip", "netns", "exec", self.name, "unshare", "-m", "--propagation", "private", "/bin/sh", "-c", f'{mounts}exec "$@"', "sh", *argv]

    def pids(self):
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(pid) for pid in done.stdout.split()]


def _ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def network_host(prefix="psk"):
    """A host of its own (a Host) for as long as the block runs; then nothing of it is left: its
    processes are killed and the namespace and link deleted."""
    used = {ipaddress.ip_interface(entry["local"] + "/" + str(entry["prefixlen"])).network
            for link in json.loads(_ip("-j", "addr")) for entry in link.get("addr_info", []) if entry.get("family") == "inet"}
    for _ in range(100):
        link = random.choice(list(SUBNETS.subnets(new_prefix=30)))
        if not any(link.overlaps(other) for other in used):
            break
    else:
        raise AssertionError(f"no free /30 link in {SUBNETS}")
    gateway, address = (str(a) for a in list(link.hosts()))
    tag = f"{prefix}{link.network_address.packed[2]:02x}{link.network_address.packed[3]:02x}"
    name, outside, inside = tag, f"{tag}h", f"{tag}c"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("addr", "add", f"{gateway}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{address}/30", "dev", inside)
        _ip("netns", "exec", name, "ip", "link", "set", inside, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield Host(name, gateway, address)
    finally:
        host = Host(name, gateway, address)
        for pid in host.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)  # its peer goes with it
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Cluster:
    """A running one-node cluster: its client configuration (HADOOP_CONF_DIR), and where its
    ResourceManager's REST API and the NameNode's WebHDFS answer."""

    def __init__(self, host, conf_dir, work):
        self.host, self.conf_dir, self.work = host, str(conf_dir), work
        self.rm = f"http://{host.address}:8088"
        self.webhdfs = f"http://{host.address}:9870/webhdfs/v1"
        self.default_fs = f"hdfs://{host.address}:8020"

    def rest(self, path):
        with urllib.request.urlopen(f"{self.rm}/ws/v1/cluster/{path}", timeout=30) as page:
            return json.load(page)

    def apps(self, name=None):
        """The ResourceManager's applications (of the Spark application name ``name``), oldest first."""
        found = (self.rest("apps").get("apps") or {}).get("app") or []
        return sorted((app for app in found if name is None or app["name"] == name), key=lambda app: app["id"])

    def app(self, app_id):
        return self.rest(f"apps/{app_id}")["app"]

    def hdfs_list(self, path):
        """Names under ``path`` in HDFS ([] when it does not exist)."""
        try:
            with urllib.request.urlopen(f"{self.webhdfs}{path}?op=LISTSTATUS&user.name=root", timeout=30) as page:
                return [entry["pathSuffix"] for entry in json.load(page)["FileStatuses"]["FileStatus"]]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise


@contextlib.contextmanager
def hadoop_cluster(work, hide=()):
    """HDFS and YARN on a host of their own (see the module's text), with ``hide`` hidden from
    them and their containers; yields a Cluster and stops it, leaving no process, namespace or link."""
    classpath, _ = built_cluster()
    conf_dir = work / "conf"
    with network_host() as host:
        env = {**os.environ, "JAVA_HOME": java_home()}
        tmp = work / "tmp"  # Jetty unpacks each daemon's web application there: not in /tmp, where it would stay
        tmp.mkdir(exist_ok=True)
        site = work / "site"  # settings for every Configuration in its JVM (OneNodeCluster.writeSite)
        site.mkdir(exist_ok=True)  # before the JVM starts: its class path keeps no directory that was missing then
        argv = [os.path.join(env["JAVA_HOME"], "bin", "java"), "-Xmx1g", *JVM_OPTIONS, f"-Djava.io.tmpdir={tmp}", *LOG_TIMES, "-cp", f"{site}:{classpath}",
                "OneNodeCluster", host.address, str(work / "daemons"), str(conf_dir), str(site)]
        with open(work / "cluster.log", "wb") as log:
            process = subprocess.Popen(host.command(argv, hide), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        try:
            ready = _read_ready(process)
            if not ready:
                raise AssertionError(f"the Hadoop cluster did not come up within {START_TIMEOUT} s; see {work}/cluster.log")
            yield Cluster(host, conf_dir, work)
        finally:
            process.stdin.close()  # it stops the NodeManager, which stops its containers, and exits
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
            # network_host kills whatever is left on the host.


def _read_ready(process):
    """Whether the cluster said READY before the time was up (a thread reads its output)."""
    import threading

    said = threading.Event()

    def read():
        for line in process.stdout:
            if line.strip() == b"READY":
                said.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not said.wait(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
    return True
