"""`pyspark-kernel doctor` on YARN kernels, against the live cluster (tests/hadoop_cluster.py): the
ResourceManager answers, the queue exists, HDFS answers, the packed environment is the
environment's, the driver's address; and each of them failing, with a fix that works as printed.
No kernel is started: doctor asks the cluster itself."""

import os
import re
import shlex
import shutil

import pytest

from .conftest import run_cli, venv_with_project_packages
from .test_yarn import LEAN

pytestmark = pytest.mark.e2e


def create(yarn_cluster, kernels_dir, name, *flags, conf_dir=None):
    """A kernel of the yarn profile for the live cluster (or the client configuration ``conf_dir``);
    nothing packed unless ``flags`` ask for it."""
    env = {**os.environ, "HADOOP_CONF_DIR": str(conf_dir or yarn_cluster.cluster.conf_dir)}
    env.pop("YARN_CONF_DIR", None)
    if "-e" not in flags:
        flags = ("--executor_python", "/usr/bin/python3", *flags)
    done = run_cli("create", "-k", name, "-d", str(kernels_dir), "--profile", "yarn", *yarn_cluster.flags, *flags, env=env)
    assert done.returncode == 0, done.stderr
    return done


def doctor(kernels_dir, name):
    env = {key: value for key, value in os.environ.items() if key not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    return run_cli("doctor", name, "-d", str(kernels_dir), env=env)


def line(report, name):
    """The report's line for the check ``name``."""
    found = [entry for entry in report.stdout.splitlines() if re.match(rf"(OK|PROBLEM) {name}: ", entry)]
    assert len(found) == 1, report.stdout
    return found[0]


def printed_command(entry):
    """The `pyspark-kernel ...` command a PROBLEM line prints as its fix."""
    return re.search(r"pyspark-kernel [^,(:]*", entry).group(0).strip()


def run_printed(command, **values):
    """A printed fix run as printed, its placeholders (ADDRESS, QUEUE) given ``values``."""
    words = shlex.split(command)
    if values:
        words = [re.sub(rf"\b({'|'.join(values)})\b", lambda found: values[found.group(1)], word) for word in words]
    assert words[0] == "pyspark-kernel", command
    done = run_cli(*words[1:], env={key: value for key, value in os.environ.items() if key not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR")})
    assert done.returncode == 0, done.stderr
    return done


def test_a_yarn_kernel_on_the_live_cluster_passes_every_check(yarn_cluster, kernels_dir):
    cluster = yarn_cluster.cluster
    create(yarn_cluster, kernels_dir, "healthy")
    report = doctor(kernels_dir, "healthy")
    assert report.returncode == 0, report.stdout
    assert line(report, "resource_manager") == f"OK resource_manager: {cluster.rm} answers: Hadoop 3.5.0, STARTED"
    assert line(report, "queue") == "OK queue: default (root.default) is RUNNING"
    assert line(report, "hdfs") == f"OK hdfs: {cluster.default_fs}: the NameNode at {cluster.host.address}:8020 accepts connections"
    assert line(report, "driver_address") == (f"OK driver_address: {cluster.host.gateway}, the address this machine reaches the ResourceManager "
                                              f"at {cluster.host.address}:8032 from")
    assert line(report, "spark_jars").startswith("OK spark_jars: spark.yarn.jars local:")


def test_a_queue_the_cluster_lacks_fails_and_its_fix_works(yarn_cluster, kernels_dir):
    create(yarn_cluster, kernels_dir, "no-queue", "--spark.yarn.queue=nope")
    report = doctor(kernels_dir, "no-queue")
    assert report.returncode == 1
    entry = line(report, "queue")
    assert entry.startswith("PROBLEM queue: the ResourceManager has no queue nope (spark.yarn.queue); its queues: default, etl ("), entry
    assert f"pyspark-kernel create --force -k no-queue -d {kernels_dir} --spark.yarn.queue=QUEUE, QUEUE one of default, etl" in entry
    run_printed(printed_command(entry), QUEUE="etl")
    assert line(doctor(kernels_dir, "no-queue"), "queue") == "OK queue: etl (root.etl) is RUNNING"
    # A parent queue takes no application: root itself.
    create(yarn_cluster, kernels_dir, "root-queue", "--spark.yarn.queue=root")
    assert line(doctor(kernels_dir, "root-queue"), "queue").startswith("PROBLEM queue: root (root) is a parent queue, and applications go to leaf queues: default, etl")


def test_a_resource_manager_and_namenode_that_do_not_answer_fail(yarn_cluster, kernels_dir, tmp_path):
    """A copy of the client configuration whose ResourceManager and NameNode are on closed ports."""
    cluster = yarn_cluster.cluster
    conf = tmp_path / "closed-conf"
    shutil.copytree(cluster.conf_dir, conf)
    for name, old, new in (("yarn-site.xml", ":8088<", ":9<"), ("core-site.xml", ":8020<", ":7<")):
        text = (conf / name).read_text()
        assert old in text, text
        (conf / name).write_text(text.replace(old, new))
    create(yarn_cluster, kernels_dir, "closed", conf_dir=conf)
    report = doctor(kernels_dir, "closed")
    assert report.returncode == 1
    address = cluster.host.address
    assert line(report, "resource_manager") == (f"PROBLEM resource_manager: the ResourceManager does not answer: nothing listens on {address}:9 "
                                                f"(start the cluster, or check that {conf} is its client configuration; from this machine: "
                                                f"curl http://{address}:9/ws/v1/cluster/info)")
    assert not re.search(r"^(OK|PROBLEM) queue:", report.stdout, re.M)  # not asked of a ResourceManager that does not answer
    assert line(report, "hdfs") == (f"PROBLEM hdfs: hdfs://{address}:7 is the default file system (fs.defaultFS), and its NameNode does not answer: "
                                    f"nothing listens on {address}:7 (start HDFS, or check fs.defaultFS in the core-site.xml of {conf})")
    # The driver's address comes from the ResourceManager's RPC address, which is still the cluster's.
    assert line(report, "driver_address").startswith(f"OK driver_address: {cluster.host.gateway}")


def test_an_unknown_resource_manager_host_is_said_by_create_and_doctor(yarn_cluster, kernels_dir, tmp_path):
    conf = tmp_path / "unknown-conf"
    shutil.copytree(yarn_cluster.cluster.conf_dir, conf)
    text = (conf / "yarn-site.xml").read_text()
    (conf / "yarn-site.xml").write_text(text.replace(f">{yarn_cluster.cluster.host.address}<", ">rm.no-such-cluster.invalid<"))
    made = create(yarn_cluster, kernels_dir, "nowhere", conf_dir=conf)
    assert ("NOTE: spark.driver.host: rm.no-such-cluster.invalid does not resolve here") in made.stderr, made.stderr
    assert f"(give the address of this machine that the cluster reaches: pyspark-kernel create --force -k nowhere -d {kernels_dir} --spark.driver.host=ADDRESS" in made.stderr
    entry = line(doctor(kernels_dir, "nowhere"), "driver_address")
    assert entry.startswith("PROBLEM driver_address: rm.no-such-cluster.invalid does not resolve here"), entry
    gateway = yarn_cluster.cluster.host.gateway
    run_printed(printed_command(entry), ADDRESS=gateway)
    assert line(doctor(kernels_dir, "nowhere"), "driver_address") == f"OK driver_address: {gateway}, as the kernel's spark.driver.host sets it"


# Packed twice (made, then upgraded): leaner still than the kernels that start, since this one never does.
NEVER_STARTED = (*LEAN, "sqlalchemy", "zstandard", "pip", "cryptography", "aiohttp", "setuptools", "jupyterhub", "pydantic", "jedi", "debugpy")


@pytest.fixture(scope="module")
def packed_env(yarn_cluster):
    return venv_with_project_packages(yarn_cluster.envs / "doctor", NEVER_STARTED, copy=True)


def test_an_environment_changed_after_packing_fails_until_upgrade(yarn_cluster, kernels_dir, packed_env):
    create(yarn_cluster, kernels_dir, "packed", "-e", str(packed_env), "--executor_python", "pack")
    archive = kernels_dir / "packed" / "environment.tar.gz"
    assert line(doctor(kernels_dir, "packed"), "executor_environment") == f"OK executor_environment: {archive}, packed from {packed_env} as it is now"
    site = next((packed_env / "lib").glob("python3*/site-packages"))
    (site / "added_after_packing.py").write_text("VALUE = 1\n")
    report = doctor(kernels_dir, "packed")
    assert report.returncode == 1
    entry = line(report, "executor_environment")
    assert entry == (f"PROBLEM executor_environment: {packed_env} changed since it was packed into {archive}: the executors would run the environment as it was "
                     f"(pyspark-kernel upgrade packed -d {kernels_dir}: it packs the environment again)")
    run_printed(printed_command(entry))
    assert line(doctor(kernels_dir, "packed"), "executor_environment") == f"OK executor_environment: {archive}, packed from {packed_env} as it is now"
