"""Another Unix user of the machine against a kernel's Spark driver, with Spark's own client classes
(tests/rpc_probe/RpcProbe.java, compiled here with javac and run as a user the test creates): while
the first user's notebook runs, on a dedicated local driver, the shared driver and the test's
standalone cluster, the other user can neither call the driver's RPC endpoints nor fetch its cached
blocks (spark.authenticate), and the first user's session keeps working: jobs, cached blocks,
shuffles, Python UDFs. The same probe against a kernel with spark.authenticate=false reads the
driver's block managers and a cached block: what every kernel allowed before. Nothing of the
secret shows in ps, kernel.json or the logs. The refusals on a local and on the shared driver run on
test_ui_access's kernels, which another user already tries (check_a_local_driver_refuses_another_user,
check_the_shared_driver_refuses_another_user): a kernel start each fewer."""

import glob
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import psutil
import pytest

from .conftest import PYTHON, make_kernel, standalone
from .kernels import Kernel, kernel_environment, wait_until
from .test_jupyterhub import add_user, remove_user
from .test_shared_driver import record_of, server_jvms, servers_of

pytestmark = pytest.mark.e2e

REFUSED = "Expected SaslMessage"  # what Spark's server answers a client that does not authenticate
SECRET_VARIABLE = "PK_TEST_SPARK_AUTH_SECRET"
LINGER = 5

# The first user's work: cached blocks (an RDD's and a DataFrame's), a shuffle, a Python UDF.
WORK = ("from pyspark.sql.functions import udf\n"
        "cached = spark.range(100000).selectExpr('id % 7 AS k', 'id').cache()\n"
        "print('cached', cached.count())\n"
        "print('shuffled', sorted(r[1] for r in cached.groupBy('k').count().collect())[:2])\n"
        "print('udf', [r[0] for r in spark.range(3).select(udf(lambda x: x * 2, 'long')('id')).collect()])\n")
RDD_WORK = ("rdd = sc.parallelize(range(1000), 2).cache()\n"
            "print('rdd', rdd.count(), rdd.map(lambda x: x % 3).distinct().count())\n")
WORK_DONE = ["cached 100000", "shuffled [14285, 14285]", "udf [0, 2, 4]"]


@pytest.fixture(scope="module")
def other_user():
    name = f"rpc{os.getpid()}"
    add_user(name)
    try:
        yield name
    finally:
        remove_user(name)


def printed(cell):
    assert cell.error is None, cell.text
    return cell.stream.strip().splitlines()


def assert_refused(lines):
    rpc, fetch = lines
    assert rpc.startswith("rpc refused:") and REFUSED in rpc, lines
    assert fetch.startswith("fetch refused:") and REFUSED in fetch, lines


def assert_reached(lines, block_port):
    rpc, fetch = lines
    assert rpc.startswith("rpc ok: block managers ") and f"127.0.0.1, {block_port}" in rpc and "found rdd_" in rpc, lines
    assert fetch.startswith("fetch ok: ") and int(fetch.split()[2]) > 0, lines


def assert_secret_nowhere(secret, files):
    """Not in any process's command line (what ps shows every user), nor in these files."""
    assert len(secret) >= 16
    listed = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=True).stdout
    assert secret not in listed
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            assert secret not in handle.read(), path


def scratch_logs(tmp_dir):
    """The kernel's kernel.log and driver.log, in its scratch directory under its TMPDIR."""
    logs = glob.glob(os.path.join(tmp_dir, "pyspark-kernel-*", "kernel.log")) + glob.glob(os.path.join(tmp_dir, "pyspark-kernel-*", "driver.log"))
    assert len(logs) == 2, logs
    return logs


FOUND_LOCAL = ("print(spark.conf.get('spark.driver.port'), sc._jsc.sc().getExecutorMemoryStatus().keys().head().split(':')[-1],"
               " sc.applicationId, 'rdd_%d_0' % rdd.id())")
SECRET_OF_A_LOCAL_SESSION = ("_jvm = sc._jvm\n"
                             "print(bytes(_jvm.org.apache.hadoop.security.UserGroupInformation.getCurrentUser().getCredentials()"
                             ".getSecretKey(_jvm.org.apache.hadoop.io.Text('sparkCookie'))).decode())")


def check_a_local_driver_refuses_another_user(printed, status, user, probe, files):
    """On a kernel's own local driver with the default settings (spark.authenticate on): ``user``
    can neither call the driver's RPC nor fetch its cached blocks, without the secret or with a
    guess; the first user's session keeps working, its cached blocks too; the session's secret is in
    none of ``files()`` (kernel.json, the kernel's logs) nor on a command line. ``printed(code)``: the
    lines a cell printed; ``status()``: the text of %spark status. test_ui_access runs it on its
    dedicated kernel (one start for both)."""
    assert printed(WORK)[-3:] == WORK_DONE, "the first user's work (cached blocks, a shuffle, a Python UDF) did not run"
    assert printed(RDD_WORK)[-1] == "rdd 1000 3", "the first user's cached RDD did not run"
    driver_port, block_port, app_id, block = printed(FOUND_LOCAL)[-1].split()
    lines = probe(user, driver_port, block_port, app_id, block)
    assert_refused(lines)
    assert probe(user, driver_port, block_port, app_id, block, secret="a-guess-at-the-secret")[0].startswith("rpc refused:"), "a guessed secret got in"
    said = status()
    assert "RPC authentication: on: the driver's RPC and block transfers need a secret Spark makes for each session" in said, said
    # The first user's session still works, its cached blocks too.
    assert printed(RDD_WORK)[-1] == "rdd 1000 3", "the first user's RDD failed after the other user's tries"
    assert printed("print(cached.count(), cached.storageLevel.useMemory)")[-1] == "100000 True", "the first user's cached blocks are gone"
    # Spark's secret for the session: in the JVM's memory only (the current user's credentials, for local masters).
    assert_secret_nowhere(printed(SECRET_OF_A_LOCAL_SESSION)[-1], files())


def test_another_user_reaches_a_local_driver_whose_kernel_turned_authentication_off(start, other_user, probe):
    # With the default (spark.authenticate on), refused: test_ui_access's dedicated kernel runs
    # check_a_local_driver_refuses_another_user. This is the control: the same probe gets in.
    kernel = start("rpc-local", "--spark_master", "local[2]", "--spark.ui.enabled=false", "--spark.authenticate=false", PYSPARK_KERNEL_LOG_LEVEL="DEBUG")
    assert printed(kernel.run(WORK))[-3:] == WORK_DONE
    assert printed(kernel.run(RDD_WORK))[-1] == "rdd 1000 3"
    driver_port, block_port, app_id, block = printed(kernel.run(FOUND_LOCAL))[-1].split()
    assert_reached(probe(other_user, driver_port, block_port, app_id, block), block_port)
    status = kernel.run("%spark status").text
    assert "RPC authentication: off: any local process can call the driver's RPC and fetch its blocks" in status, status


def listening_ports(pid):
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def shared_driver_ports(printed, run_dir):
    """(driver port, block manager port, application id) of the shared driver under ``run_dir``."""
    driver_port, app_id = printed("print(spark.conf.get('spark.driver.port'), spark.conf.get('spark.app.id'))")[-1].split()
    record = record_of(run_dir)
    # The block manager's port: the one the server's JVM listens on that is neither Connect's, the UI's nor the driver's.
    others = listening_ports(record["jvm"]) - {record["port"], int(driver_port), int(record["ui"].rsplit(":", 1)[1])}
    assert len(others) == 1, f"not one block manager's port among the shared driver's: {others}"
    [block_port] = others
    return driver_port, block_port, app_id


def check_the_shared_driver_refuses_another_user(printed, status, run_dir, user, probe):
    """On the shared driver (its server JVM under ``run_dir``) with the default settings: ``user``
    can neither call its RPC nor fetch its blocks, the first user's work keeps running, and Spark
    made the secret in the server's JVM (its settings hold none). test_ui_access runs it on its
    shared kernel (one start for both)."""
    assert printed(WORK)[-3:] == WORK_DONE, "the first user's work (cached blocks, a shuffle, a Python UDF) did not run"
    driver_port, block_port, app_id = shared_driver_ports(printed, run_dir)
    assert_refused(probe(user, driver_port, block_port, app_id, "-"))
    said = status()
    assert "RPC authentication: on: the driver's RPC and block transfers need a secret Spark makes for each session" in said, said
    assert printed(WORK)[-3:] == WORK_DONE, "the first user's work failed after the other user's tries"
    assert printed("print(spark.conf.get('spark.authenticate'), spark.conf.get('spark.authenticate.secret', 'none'))")[-1] == "true none", \
        "the shared driver's settings hold a secret, or do not authenticate"


def test_another_user_reaches_the_shared_driver_whose_kernel_turned_authentication_off(kernels_dir, tmp_path, other_user, probe):
    # With the default, refused: test_ui_access's shared kernel runs check_the_shared_driver_refuses_another_user.
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="pyspark-kernel-rpc-"))
    make_kernel(kernels_dir, "rpc-shared", "--spark_driver", "shared", "--driver_linger", str(LINGER), "--spark_master", "local[2]", "--spark.authenticate=false", "--no-class_data_sharing")
    (tmp_path / "tmp").mkdir()
    kernel = None
    try:
        kernel = Kernel(kernels_dir, "rpc-shared", kernel_environment(tmp_path / "tmp", XDG_RUNTIME_DIR=str(run_dir), PYSPARK_KERNEL_LOG_LEVEL="DEBUG"))

        def run(code):
            return printed(kernel.run(code))

        assert run(WORK)[-3:] == WORK_DONE
        driver_port, block_port, app_id = shared_driver_ports(run, run_dir)
        assert_reached(probe(other_user, driver_port, block_port, app_id, "-"), block_port)
        status = kernel.run("%spark status").text
        assert "RPC authentication: off" in status, status
    finally:
        if kernel is not None:
            kernel.stop()
        try:
            wait_until(lambda: not server_jvms(run_dir) and not servers_of(run_dir), LINGER + 60, "the shared driver did not leave after the last notebook")
        finally:
            for process in server_jvms(run_dir) + servers_of(run_dir):
                process.kill()
            shutil.rmtree(run_dir, ignore_errors=True)


def test_a_standalone_kernel_with_the_clusters_secret_keeps_other_users_out(start, other_user, probe, kernels_dir, tmp_path):
    import secrets

    secret = secrets.token_hex(32)
    # As a cluster's admin would: the secret in a 0600 properties file, not on the daemons' command lines.
    properties = tmp_path / "cluster.properties"
    properties.touch(mode=0o600)
    properties.write_text(f"spark.authenticate=true\nspark.authenticate.secret={secret}\n")
    work = tmp_path / "cluster"
    work.mkdir()
    with standalone(work, properties=properties) as master:
        kernel = start("rpc-standalone", "--profile", "standalone", "--spark_master", master, "--executor_python", PYTHON,
                       "--spark.executor.memory=512m", "--spark.executor.cores=2",
                       "--spark.ui.enabled=false", "--no-class_data_sharing", f"--spark.authenticate.secret=${{env:{SECRET_VARIABLE}}}", "--env-from", SECRET_VARIABLE,
                       **{SECRET_VARIABLE: secret})
        assert printed(kernel.run(WORK))[-3:] == WORK_DONE
        assert printed(kernel.run(RDD_WORK))[-1] == "rdd 1000 3"
        # The block managers: the driver's, on this machine's end of the link to the cluster's host,
        # and the executor's there, which holds the cached blocks. The other user probes both from here.
        found = printed(kernel.run("print(spark.conf.get('spark.driver.host') + ':' + spark.conf.get('spark.driver.port'), sc.applicationId, 'rdd_%d_0' % rdd.id(), "
                                   "*sorted(sc._jsc.sc().getExecutorMemoryStatus().keys().mkString(',').split(',')))"))[-1]
        driver, app_id, block, *block_managers = found.split()
        assert sorted(manager.rsplit(":", 1)[0] for manager in block_managers) == sorted([master.host.gateway, master.host.address]), found
        status = kernel.run("%spark status").text
        assert "RPC authentication: on: the driver's RPC and block transfers need the cluster's secret" in status, status
        for block_manager in block_managers:
            assert_refused(probe(other_user, driver, block_manager, app_id, block))
        assert printed(kernel.run(RDD_WORK))[-1] == "rdd 1000 3"
        assert_secret_nowhere(secret, [kernels_dir / "rpc-standalone" / "kernel.json", *scratch_logs(tmp_path / "tmp-rpc-standalone"),
                                       *glob.glob(str(work / "*.log")), *glob.glob(str(work / "worker" / "*" / "*" / "std*"))])
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600
