"""Cluster profiles: layering, the exact configuration YARN and Kubernetes kernels give Spark, and a
live Spark standalone cluster whose executors run the kernel's shipped environment."""

import json
import os
import pathlib
import re

import pytest

from pyspark_kernel.smoke import cell_text

from .conftest import ONE_EXECUTOR, assert_no_jvm_left, kernel_env, read_spec, run_cli, spark_conf_of, venv_with_project_packages
from .kernels import Kernel, kernel_environment

ENV_WITHOUT = {"HADOOP_CONF_DIR": None, "YARN_CONF_DIR": None, "YARN_QUEUE": None, "SPARK_YARN_ARCHIVE": None, "KUBECONFIG": None,
               "K8S_MASTER_URL": None, "SPARK_K8S_NAMESPACE": None, "SPARK_K8S_IMAGE": None, "SPARK_MASTER_URL": None}


def create(kernels_dir, name, *flags, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ENV_WITHOUT}
    environ.update({k: v for k, v in env.items() if v is not None})
    done = run_cli("create", "-k", name, "-d", str(kernels_dir), *flags, env=environ)
    assert done.returncode == 0, done.stderr
    return read_spec(kernels_dir / name)


def test_yarn_profile_gives_spark_exactly_this(kernels_dir):
    spec = create(kernels_dir, "on-yarn", "--profile", "yarn", "--executor_python", "/opt/venvs/etl/bin/python",
                  HADOOP_CONF_DIR="/etc/hadoop/conf", YARN_QUEUE="analytics", SPARK_YARN_ARCHIVE="hdfs:///spark/spark-libs.jar")
    conf = spark_conf_of(spec)
    assert {k: v for k, v in conf.items() if k not in ("spark.ui.showConsoleProgress", "spark.sql.repl.eagerEval.enabled")} == {
        "spark.master": "yarn", "spark.app.name": "on-yarn", "spark.submit.deployMode": "client", "spark.yarn.queue": "analytics",
        "spark.executor.memory": "2g", "spark.executor.cores": "2", "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.maxExecutors": "10", "spark.dynamicAllocation.shuffleTracking.enabled": "true", "spark.yarn.archive": "hdfs:///spark/spark-libs.jar",
    }
    env = kernel_env(spec)
    assert env["HADOOP_CONF_DIR"] == "/etc/hadoop/conf" and "YARN_CONF_DIR" not in env
    assert env["PYSPARK_PYTHON"] == "/opt/venvs/etl/bin/python"  # executors' fixed Python: nothing packed
    assert "ship_environment" not in json.loads(env["PYSPARK_KERNEL_OPTIONS"])
    assert not (kernels_dir / "on-yarn" / "environment.tar.gz").exists()


def test_kubernetes_profile_gives_spark_exactly_this(kernels_dir):
    spec = create(kernels_dir, "on-k8s", "--profile", "kubernetes", "--executor_python", "/opt/conda/bin/python",
                  K8S_MASTER_URL="k8s://https://10.0.0.1:6443", SPARK_K8S_NAMESPACE="team-a", SPARK_K8S_IMAGE="registry.example/spark-py:4.3.0")
    conf = spark_conf_of(spec)
    assert conf["spark.master"] == "k8s://https://10.0.0.1:6443"
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == "team-a"
    assert conf["spark.kubernetes.container.image"] == "registry.example/spark-py:4.3.0"
    assert conf["spark.executor.instances"] == "2"
    assert kernel_env(spec)["PYSPARK_PYTHON"] == "/opt/conda/bin/python"


def test_layers_profile_then_spark_defaults_then_flags(kernels_dir, tmp_path):
    defaults = tmp_path / "spark-defaults.conf"
    defaults.write_text("# from the cluster\nspark.executor.memory 3g\nspark.yarn.queue=imported\nspark.eventLog.enabled true\n")
    spec = create(kernels_dir, "layered", "--profile", "yarn", "--from-spark-defaults", str(defaults), "--spark.yarn.queue", "flag",
                  "--executor_python", "/usr/bin/python3")
    conf = spark_conf_of(spec)
    assert conf["spark.executor.memory"] == "3g"  # spark-defaults.conf over the profile
    assert conf["spark.yarn.queue"] == "flag"  # a flag over both
    assert conf["spark.eventLog.enabled"] == "true"


def test_a_team_profile_file_can_include_a_base(kernels_dir, tmp_path):
    base = tmp_path / "base.conf"
    base.write_text('spark { master = "yarn", conf { "spark.executor.memory" = "8g", "spark.yarn.queue" = "base" } }\n')
    team = tmp_path / "team.conf"
    team.write_text('include "base.conf"\nspark.conf { "spark.yarn.queue" = "team" }\n')
    spec = create(kernels_dir, "team", "--profile", str(team), "--executor_python", "/usr/bin/python3")
    conf = spark_conf_of(spec)
    assert (conf["spark.master"], conf["spark.executor.memory"], conf["spark.yarn.queue"]) == ("yarn", "8g", "team")


# Cluster sessions are released when idle (they hold a cluster's executors); local ones are not.
@pytest.mark.parametrize("profile, seconds, idle", [("local", 600, 0), ("standalone", 300, 3600), ("yarn", 1800, 3600), ("kubernetes", 900, 3600), ("connect", 120, 0)])
def test_each_profile_sets_its_own_start_and_idle_limits(kernels_dir, profile, seconds, idle):
    spec = create(kernels_dir, f"limit-{profile}", "--profile", profile, "--executor_python", "/usr/bin/python3")
    options = json.loads(kernel_env(spec)["PYSPARK_KERNEL_OPTIONS"])
    assert (options["start_timeout"], options["idle_timeout"]) == (seconds, idle)


def test_start_and_idle_timeout_answers_beat_the_profiles(kernels_dir):
    spec = create(kernels_dir, "limit-given", "--profile", "yarn", "--executor_python", "/usr/bin/python3", "--start_timeout", "45", "--idle_timeout", "0")
    options = json.loads(kernel_env(spec)["PYSPARK_KERNEL_OPTIONS"])
    assert (options["start_timeout"], options["idle_timeout"]) == (45, 0)


def test_a_team_profile_with_a_bad_start_limit_is_refused(kernels_dir, tmp_path):
    team = tmp_path / "team.conf"
    team.write_text('spark.master = "local[2]"\nkernel.start_timeout = "soon"\n')
    done = run_cli("create", "-k", "limit-bad", "-d", str(kernels_dir), "--profile", str(team))
    assert done.returncode == 1 and done.stderr.startswith("ERROR: start_timeout: \"soon\" is not a number of seconds"), done.stderr
    assert os.listdir(kernels_dir) == []


def test_connect_profile_points_at_a_connect_server(kernels_dir):
    spec = create(kernels_dir, "on-connect", "--profile", "connect")
    assert spark_conf_of(spec)["spark.master"] == "sc://127.0.0.1:15002"
    # The environment's distributions as they are now: what %pip adds later, each session gets as artifacts.
    from pyspark_kernel.runtime import pipwatch

    manifest = kernels_dir / "on-connect" / pipwatch.MANIFEST
    venv_dir = spec["metadata"]["pyspark_kernel"]["venv_dir"]
    recorded = pipwatch.read_manifest(str(manifest), venv_dir)
    assert recorded == pipwatch.distributions(venv_dir) and "pyspark" in recorded
    assert not (kernels_dir / "on-connect" / "environment.tar.gz").exists()
    # Made again (create --force, upgrade) of the same environment: the first record stays, so what
    # %pip added since (here, as if: one the record lacks) still reaches each session.
    del recorded["pyspark"]
    pipwatch.write_manifest(str(manifest), recorded, None, venv_dir)
    create(kernels_dir, "on-connect", "--force", "--profile", "connect")
    assert pipwatch.read_manifest(str(manifest), venv_dir) == recorded


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0, reason="a worker that cannot see the driver's files needs a mount namespace: root (CI runs as root)")
def test_executors_on_a_host_without_the_drivers_files_run_the_shipped_environment(tmp_path):
    """The master and worker run on a host of their own (a network namespace), where the kernel's
    environment and the interpreter it was made from are hidden (a mount namespace): the executors
    can only run what the kernel shipped, and reach the driver only at the address it advertises.
    The archive's path has a space, '#', '%' and a quote in it. Then %pip installs a wheel into the
    kernel's environment: the cell says the executors get it at the next restart, they lack it
    until then, and after %spark restart they import it from a fresh pack in the per-user cache."""
    import sys

    import nbformat

    from pyspark_kernel.runtime import envpack

    from .conftest import standalone

    kernels_dir = tmp_path / "Jane's #1 100% kernels"

    venv = venv_with_project_packages(tmp_path / "env", LEAN, copy=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "only_in_kernel_env").mkdir()
    (site / "only_in_kernel_env" / "__init__.py").write_text('WHERE = "shipped with the kernel"\n')
    work = tmp_path / "cluster"
    work.mkdir()
    check = tmp_path / "executors.ipynb"
    source = ("import sys\n"
              "def _where(_):\n"
              "    import os, sys, only_in_kernel_env\n"
              f"    return sys.executable, only_in_kernel_env.WHERE, os.path.exists({str(venv / 'bin' / 'python')!r}), os.path.exists({sys.base_prefix!r} + '/bin')\n"
              "_found = sorted(set(sc.parallelize(range(4), 2).map(_where).collect()))\n"
              "assert _found and all(path.endswith('/environment/bin/python%d.%d-shipped' % sys.version_info[:2]) for path, _, _, _ in _found), _found\n"
              "assert all(where == 'shipped with the kernel' and not env and not base for _, where, env, base in _found), _found\n"
              "print('executors run the shipped interpreter and see neither the environment nor its base')")
    # A one-off copy of Spark would write an archive nothing maps: this kernel has class-data
    # sharing off, and its driver JVM gets no archive option.
    no_archive = ("_args = [str(arg) for arg in sc._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()]\n"
                  "assert not [arg for arg in _args if 'SharedArchiveFile' in arg or 'ArchiveClassesAtExit' in arg], _args\n"
                  "print('no class-data-sharing archive')")
    with standalone(work, hide=[venv, sys.base_prefix]) as master:
        # Given no address, the kernel advertises this machine's end of the link to the cluster's host.
        advertised = (f"assert sc.getConf().get('spark.driver.host') == {master.host.gateway!r}, sc.getConf().get('spark.driver.host')\n"
                      "print('the driver advertises the address the cluster reaches')")
        wheel = write_wheel(tmp_path / "wheels", "tinyprobe", "0.1", 'WHERE = "installed by %pip"\n')
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"tags": ["check:other_host"]}),
                                                       nbformat.v4.new_code_cell(no_archive, metadata={"tags": ["check:no_archive"]}),
                                                       nbformat.v4.new_code_cell(advertised, metadata={"tags": ["check:driver_host"]}),
                                                       *pip_cells(wheel)]), check)
        create(kernels_dir, "pip-on-standalone", "-e", str(venv), "--profile", "standalone", "--spark_master", master,
               "--spark.executor.memory=512m", ONE_EXECUTOR, "--no-class_data_sharing")
        assert (kernels_dir / "pip-on-standalone" / "environment.tar.gz").stat().st_size > 0
        executed = tmp_path / "executed.ipynb"
        done = run_cli("smoke", "pip-on-standalone", "-d", str(kernels_dir), "--notebook", str(check), "--save-notebook", str(executed))
        assert done.returncode == 0, done.stdout + done.stderr  # the executor-Python check included
        assert "PASS other_host: executors run the shipped interpreter and see neither the environment nor its base" in done.stdout
        assert "PASS no_archive: no class-data-sharing archive" in done.stdout
        assert "PASS driver_host: the driver advertises the address the cluster reaches" in done.stdout
        # %pip's cell ends with the one line that says what the executors get, and when.
        assert re.search(r"PASS pip_install: NOTE: %pip changed this environment \(added tinyprobe 0\.1\); the executors run it as it was packed\. "
                         r"They get it at the next restart, which packs it again \(about [\d.]+ MiB\): %spark restart$", done.stdout, re.MULTILINE), done.stdout
        assert "PASS pip_before_restart: the executors lack it until the restart: No module named 'tinyprobe'" in done.stdout
        assert "PASS pip_after_restart: after %spark restart the executors import tinyprobe from the fresh pack" in done.stdout
        shown = "\n".join(cell_text(cell) for cell in nbformat.read(executed, as_version=4).cells)
        assert re.search(r"The executors get the environment as it is now \(added tinyprobe 0\.1\): [\d.]+ MiB, packed in \d+ s\.", shown), shown
        # The fresh pack is the cache's, keyed by the environment's contents, beside create's.
        made_from = [name for name in os.listdir(envpack.cache_dir()) if name.endswith(".tar.gz")
                     and json.loads((pathlib.Path(envpack.cache_dir()) / f"{name}.json").read_text())["needs"] == [os.path.realpath(venv)]]
        assert len(made_from) == 2 and f"{envpack.fingerprint(str(venv))}-{envpack.PACK_FORMAT}.tar.gz" in made_from, made_from
        assert_no_jvm_left("pip-on-standalone")


def pip_cells(wheel):
    """%pip install of ``wheel`` (module tinyprobe) in a cluster kernel, and what its executors import before and after %spark restart."""
    import nbformat

    def cell(name, source):
        return nbformat.v4.new_code_cell(source, metadata={"tags": [f"check:{name}"]})

    return [
        cell("pip_install", f"%pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check -q {wheel}"),
        cell("pip_before_restart", "import tinyprobe  # the driver has it at once\n"
                                   "try:\n"
                                   "    sc.parallelize([0], 1).map(lambda _: __import__('tinyprobe').WHERE).collect()\n"
                                   "except Exception as error:\n"
                                   "    assert \"No module named 'tinyprobe'\" in str(error), str(error)[-3000:]\n"
                                   "    print(\"the executors lack it until the restart: No module named 'tinyprobe'\")\n"
                                   "else:\n"
                                   "    raise AssertionError('the executors imported tinyprobe before the restart')"),
        cell("pip_restart", "%spark restart"),
        cell("pip_after_restart", "_got = sorted(set(sc.parallelize(range(2), 2).map(lambda _: __import__('tinyprobe').WHERE).collect()))\n"
                                  "assert _got == ['installed by %pip'], _got\n"
                                  "print('after %spark restart the executors import tinyprobe from the fresh pack')"),
    ]


def write_wheel(directory, name, version, source):
    """A pure-Python wheel of one module package, written by hand (no build tool, no network)."""
    import base64
    import hashlib
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": source,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: pyspark-kernel-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


# Big packages no executor of this test imports: a leaner environment to pack.
LEAN = ("jupyterlab", "jupyter_server", "notebook", "playwright", "pyarrow", "pandas", "numpy", "grpc", "babel", "hypothesis", "pytest")


@pytest.mark.e2e
def test_spark_connect_kernel_runs_the_smoke_notebook_without_a_local_jvm(kernels_dir, connect_server, tmp_path):
    import nbformat

    spec = create(kernels_dir, "on-connect-live", "--profile", "connect", "--spark_master", connect_server, "--spark.sql.shuffle.partitions=5")
    env = kernel_env(spec)
    assert (env["SPARK_CONNECT_MODE_ENABLED"], env["SPARK_REMOTE"]) == ("1", connect_server)
    assert spark_conf_of(spec) == {"spark.master": connect_server, "spark.sql.repl.eagerEval.enabled": "true", "spark.sql.shuffle.partitions": "5"}
    # The magics on Spark Connect too, as a team's own checks in the same smoke run.
    magics = tmp_path / "magics.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%%sql -n 2 -o first\nSELECT id FROM range(5)", metadata={"tags": ["check:sql_on_connect"]}),
        nbformat.v4.new_code_cell("assert first.count() == 5\n%spark conf spark.sql.shuffle.partitions=3\nassert spark.conf.get('spark.sql.shuffle.partitions') == '3'\n"
                                  "print('%%sql and %spark conf on Spark Connect')", metadata={"tags": ["check:magics_on_connect"]}),
    ]), magics)
    done = run_cli("smoke", "on-connect-live", "-d", str(kernels_dir), "--notebook", str(magics), env={**os.environ, "SPARK_CONNECT_TOKEN": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS master: Spark Connect session, no local JVM" in done.stdout
    assert "PASS sql_on_connect: first: a Spark DataFrame of the whole result" in done.stdout, done.stdout
    assert "PASS magics_on_connect: %%sql and %spark conf on Spark Connect" in done.stdout, done.stdout
    assert done.stdout.splitlines()[0].startswith("Spark 4") and "Spark Connect" in done.stdout.splitlines()[0]
    assert_no_jvm_left("on-connect-live")


CONNECT_INTERRUPT_BOUND = 5  # seconds, as issue 13 asks of a Spark Connect kernel


def server_jobs(ui):
    """The jobs the Spark Connect server's own UI reports, by id."""
    import urllib.request

    with urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=30) as page:
        [app] = json.load(page)
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app['id']}/jobs", timeout=30) as page:
        return {job["jobId"]: job for job in json.load(page)}


@pytest.mark.e2e
def test_a_connect_kernel_shows_progress_and_an_interrupt_stops_the_servers_operation_and_pip_reaches_its_sessions(start, connect_server, tmp_path):
    """One kernel (a start costs): progress and an interrupt, then %pip on Spark Connect. The kernel's
    environment is a throwaway virtualenv that sees the project's packages (and pip) through a .pth
    file, so %pip installs into it alone: the server's Python workers run the project's .venv
    (the connect_server fixture's PYSPARK_PYTHON) and can import the package only from the session's
    artifacts, in the first session and, sent again, in the one %spark restart makes."""
    import ast
    import time

    from .kernels import wait_for_message, wait_until

    venv = venv_with_project_packages(tmp_path / "env", ())
    kernel = start("connect-cells", "-e", str(venv), "--profile", "connect", "--spark_master", connect_server, SPARK_CONNECT_TOKEN="")
    assert kernel.run("spark.range(3).count()").result == "3"
    before = set(server_jobs(connect_server.ui))
    markers = tmp_path / "running"
    markers.mkdir()
    msg_id = kernel.client.execute(
        "from pyspark.sql.functions import udf\n"
        "@udf('long')\n"
        "def sleepy(x):\n"
        f"    open({str(markers)!r} + '/%d' % x, 'w').close()\n"
        "    __import__('time').sleep(60)\n"
        "    return x\n"
        "spark.range(0, 2, 1, 2).select(sleepy('id')).collect()", stop_on_error=False)
    wait_for_message(kernel.client, msg_id, lambda kind, content: kind in ("display_data", "update_display_data") and "pyspark-kernel-progress" in content["data"].get("text/html", ""),
                     60, "the running query showed no progress display")
    wait_until(lambda: len(os.listdir(markers)) == 2, 60, "the query's tasks never started")
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    error = wait_for_message(kernel.client, msg_id, lambda kind, content: kind == "error", 30, "the cell was not interrupted within 30 s")
    stopped_after = time.monotonic() - interrupted
    assert error["ename"] == "KeyboardInterrupt", "\n".join(error["traceback"])
    assert stopped_after < CONNECT_INTERRUPT_BOUND, f"the cell took {stopped_after:.1f} s to stop"
    print(f"\nSpark Connect: a 60 s query interrupted after {stopped_after:.2f} s")
    kernel.client.get_shell_msg(timeout=30)
    # The server's own account: the query's job ended, not by finishing, and it carried the cell's tag.
    wait_until(lambda: [job for id, job in server_jobs(connect_server.ui).items() if id not in before and job["status"] == "RUNNING"] == [], 30,
               "the server still runs the interrupted query's job 30 s after the interrupt")
    ran = [job for id, job in server_jobs(connect_server.ui).items() if id not in before]
    assert ran and all(job["status"] == "FAILED" for job in ran), [(job["jobId"], job["status"]) for job in ran]
    assert any("_Tag_pyspark-kernel-cell-" in tag for job in ran for tag in job.get("jobTags", [])), [job.get("jobTags") for job in ran]
    after = kernel.run("spark.range(5).count()", timeout=60)
    assert after.result == "5", after.text

    wheel = write_wheel(tmp_path / "wheels", "tinyprobe", "0.1", 'WHERE = "installed by %pip"\n')
    installed = kernel.run(f"%pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check -q {wheel}", timeout=120)
    assert list(next((venv / "lib").glob("python3*/site-packages")).glob("tinyprobe-0.1.dist-info"))  # the kernel's environment, not the project's
    # Seen once in about 16 runs, on CI: no line at all. The kernel's log says why, if it knows.
    logs = "".join(path.read_text(errors="replace")[-3000:] for path in (tmp_path / "tmp-connect-cells").rglob("kernel.log"))
    assert installed.stream.strip().splitlines()[-1] == (
        "NOTE: %pip changed this environment (added tinyprobe 0.1): tinyprobe sent to the Spark Connect session's Python workers (addArtifacts, pyfile): "
        "its UDFs import them from now on, and each new session gets them as it starts."), installed.text + "\nkernel.log:\n" + logs
    probe = ("from pyspark.sql.functions import udf\n"
             "@udf('string')\n"
             "def _where(_):\n"
             "    import sys, tinyprobe\n"
             "    return '|'.join((tinyprobe.WHERE, tinyprobe.__file__, sys.prefix))\n"
             "(spark.session_id, spark.range(1).select(_where('id')).first()[0])")

    def where():
        done = kernel.run(probe, timeout=120)
        assert done.reply["status"] == "ok", done.text
        session, found = ast.literal_eval(done.result)
        imported, path, prefix = found.split("|")
        assert imported == "installed by %pip" and "/pip-tinyprobe-0.1-" in path and ".zip/tinyprobe/" in path, found  # from the sent zip
        assert os.path.realpath(prefix) != os.path.realpath(venv), found  # a worker that cannot see the kernel's environment
        return session, done.text

    sent_again = ("The Spark Connect session gets what %pip changed since create (added tinyprobe 0.1): "
                  "tinyprobe sent to its Python workers (addArtifacts, pyfile).")
    first, _ = where()
    restarted = kernel.run("%spark restart", timeout=120)
    second, _ = where()
    assert second != first and sent_again in restarted.text, restarted.text  # a new server session, whose start sent the artifacts
    # A new kernel process remembers nothing of what it sent: it measures from create's record.
    kernel.manager.restart_kernel(now=True)
    kernel.wait_for_ready()
    third, shown = where()
    assert third not in (first, second) and sent_again in shown, shown
    again = kernel.run(f"%pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check -q {wheel}", timeout=120)
    assert again.reply["status"] == "ok" and "NOTE: %pip" not in again.stream, again.text  # already there, and sent: nothing to say


def test_a_token_in_the_connect_url_is_refused(kernels_dir):
    done = run_cli("create", "-k", "leaky", "-d", str(kernels_dir), "--spark_master", "sc://h:15002/;token=s3cr3t")
    assert done.returncode == 1 and done.stderr.startswith("ERROR: spark_master: has a token in it")
    assert os.listdir(kernels_dir) == []


# Three: more kernels than the machine has cores, one to write the archive and others to start
# without it (each a JVM, about 12 s of CPU, so no more than that). make bench starts 8.
TOGETHER = int(os.environ.get("PYSPARK_KERNEL_TEST_TOGETHER", "3"))


@pytest.mark.e2e
def test_kernels_of_one_spec_start_together_with_an_empty_cache(kernels_dir, tmp_path):
    """Several local[*] kernels of one spec, started at once on a small machine with no class-data-
    sharing archive yet: a slow start is not a failed one. One JVM writes the archive, the others
    start without it, and each kernel has its own Spark UI."""
    import glob
    import threading

    from .conftest import spark_jvms
    from .kernels import wait_until

    create(kernels_dir, "many")
    cache, tmp_dir = tmp_path / "cache", tmp_path / "tmp"
    tmp_dir.mkdir()
    env = kernel_environment(tmp_dir, XDG_CACHE_HOME=str(cache))
    kernels = []
    try:
        for _ in range(TOGETHER):  # all launched before any is waited for
            kernels.append(Kernel(kernels_dir, "many", env, wait=False))
        for kernel in kernels:
            kernel.wait_for_ready()
        runs = [None] * len(kernels)

        def run(index):
            runs[index] = kernels[index].run("print('COUNT', spark.range(1000).count(), sc.uiWebUrl)", timeout=600)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(len(kernels))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        printed = [[line.split() for line in cell.stream.splitlines() if line.startswith("COUNT ")] for cell in runs]
        assert all(cell.error is None for cell in runs), [cell.text for cell in runs if cell.error]
        assert [lines[0][1] if lines else None for lines in printed] == ["1000"] * TOGETHER, [cell.text for cell in runs]
        assert len({lines[0][2] for lines in printed}) == TOGETHER  # a UI, and a port, each
        cds = [[arg.split("=")[0] for arg in jvm.cmdline() if arg.startswith(("-XX:ArchiveClassesAtExit", "-XX:SharedArchiveFile"))] for jvm in spark_jvms("many")]
        assert sorted(cds) == [[]] * (TOGETHER - 1) + [["-XX:ArchiveClassesAtExit"]], cds
    finally:
        for kernel in kernels:
            kernel.stop()
    assert_no_jvm_left("many", timeout=120)
    store = cache / "pyspark-kernel" / "cds"
    wait_until(lambda: not glob.glob(str(store / "*.lock")), 120, f"the archive lock was never released: {os.listdir(store)}")
    assert len(glob.glob(str(store / "*.jsa"))) == 1 and not glob.glob(str(store / "*.partial")), os.listdir(store)
    wait_until(lambda: os.listdir(tmp_dir) == [], 120, f"kernels left files in their TMPDIR: {os.listdir(tmp_dir)}")


def test_a_connect_kernel_needs_the_connect_client_in_its_environment(kernels_dir, tmp_path):
    venv = venv_with_project_packages(tmp_path, ("pandas", "pyarrow"))
    done = run_cli("create", "-k", "thin", "-d", str(kernels_dir), "-e", str(venv), "--profile", "connect")
    assert done.returncode == 1
    assert done.stderr.strip() == (f'ERROR: venv_dir: "{venv}" lacks the Spark Connect client\'s pandas, pyarrow '
                                   f"({venv / 'bin' / 'python'} -m pip install 'pyspark[connect]==4.3.0')")
    assert os.listdir(kernels_dir) == []


def test_an_environment_is_packed_once_per_version(tmp_path, monkeypatch):
    import subprocess
    import sys

    from pyspark_kernel.pack import pack_environment
    from pyspark_kernel.runtime.envpack import cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    venv = tmp_path / "small"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    first, second, third = (tmp_path / name for name in ("k1", "k2", "k3"))
    for kernel in (first, second, third):
        kernel.mkdir()
    def archives():
        return {name: os.stat(os.path.join(cache_dir(), name)).st_mtime_ns for name in os.listdir(cache_dir()) if name.endswith(".tar.gz")}

    pack_environment(str(venv), str(first))
    cached = archives()
    (record,) = [os.path.join(cache_dir(), name + ".json") for name in cached]
    with open(record, encoding="utf-8") as handle:
        assert json.load(handle) == {"needs": [os.path.realpath(venv)]}  # what runtime.cache prunes it by
    pack_environment(str(venv), str(second))  # unchanged: the cached archive, not a new packing
    assert archives() == cached
    assert (first / "environment.tar.gz").read_bytes() == (second / "environment.tar.gz").read_bytes()
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "new_module.py").write_text("X = 1\n")
    pack_environment(str(venv), str(third))  # changed: packed again
    assert len(archives()) == 2
    import tarfile

    with tarfile.open(third / "environment.tar.gz") as archive:
        assert any(name.endswith("site-packages/new_module.py") for name in archive.getnames())


@pytest.mark.e2e
def test_a_client_only_pyspark_is_enough_for_spark_connect(kernels_dir, tmp_path, connect_server):
    """pyspark-client's layout: pyspark without pyspark.core, jars or bin/, and no py4j."""
    import shutil

    import pyspark

    venv = venv_with_project_packages(tmp_path, ("pyspark", "py4j"), copy=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    shutil.copytree(os.path.dirname(pyspark.__file__), site / "pyspark", ignore=shutil.ignore_patterns("jars", "bin", "sbin", "__pycache__"))
    shutil.rmtree(site / "pyspark" / "core")  # what pyspark-client leaves out: pyspark sees it runs remote-only
    spec = create(kernels_dir, "thin-client", "-e", str(venv), "--profile", "connect", "--spark_master", connect_server)
    assert spec["metadata"]["pyspark_kernel"]["spark_layout"] == "client"
    done = run_cli("smoke", "thin-client", "-d", str(kernels_dir))
    assert done.returncode == 0, done.stdout + done.stderr
