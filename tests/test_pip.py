"""%pip in a kernel: what changed since the executors got the environment (runtime.pipwatch), the
line each kind of kernel shows (runtime.shipping, the Connect driver), the fresh pack at a cluster
kernel's start and the zipped distributions Spark Connect takes (runtime.artifacts). The live
cluster test is tests/test_clusters.py's shipped-environment test."""

import os
import subprocess
import sys
import time
import types
import zipfile

import pytest

from pyspark_kernel.pack import pack_environment
from pyspark_kernel.runtime import artifacts, envpack, pipwatch, shipping
from pyspark_kernel.runtime.connect import ConnectDriver
from pyspark_kernel.runtime.state import State


def fake_env(root):
    """An environment's layout as pip leaves it: site-packages with a distribution's metadata directory."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    install(site, "six", "1.16.0")
    return site


def install(site, name, version, files=("__init__.py",)):
    """What pip writes for a pure-Python wheel: the package, its dist-info with a RECORD; the
    directory's modification time moved on, as a later install's would be."""
    (site / name).mkdir(exist_ok=True)
    for file in files:
        (site / name / file).write_text("WHERE = 'zipped'\n")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{name}/{file},,\n" for file in files) + f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    bump(site)


def uninstall(site, name, version):
    for path in sorted((site / f"{name}-{version}.dist-info").iterdir()):
        path.unlink()
    (site / f"{name}-{version}.dist-info").rmdir()
    bump(site)


def bump(path):
    """A later modification time (a coarse file-system clock may not have moved yet)."""
    later = os.stat(path).st_mtime_ns + 10_000_000
    os.utime(path, ns=(later, later))


def test_an_install_an_upgrade_and_an_uninstall_are_each_told_once(tmp_path):
    site = fake_env(tmp_path)
    watch = pipwatch.Watch(str(tmp_path))
    assert watch.changes() is None
    install(site, "tinyprobe", "0.1")
    changes = watch.changes()
    assert changes.summary() == "added tinyprobe 0.1" and changes.names == ["tinyprobe"]
    assert watch.changes() is None  # told once
    uninstall(site, "tinyprobe", "0.1")
    install(site, "tinyprobe", "0.2")
    assert watch.changes().summary() == "added tinyprobe 0.2"  # still against what the executors have
    watch.ship(pipwatch.distributions(str(tmp_path)))  # a new session's executors get it
    uninstall(site, "tinyprobe", "0.2")
    install(site, "tinyprobe", "0.3")
    uninstall(site, "six", "1.16.0")
    assert watch.changes().summary() == "upgraded tinyprobe 0.2 -> 0.3; removed six 1.16.0"


def test_a_cell_that_changed_nothing_costs_a_stat_per_site_packages_directory(tmp_path, monkeypatch):
    fake_env(tmp_path)
    watch = pipwatch.Watch(str(tmp_path))
    monkeypatch.setattr(pipwatch, "distributions", lambda prefix: pytest.fail("read the distributions of an unchanged environment"))
    began = time.perf_counter()
    for _ in range(1000):
        assert watch.changes() is None
    assert (time.perf_counter() - began) / 1000 < 0.002  # seconds a cell, on a busy machine


def test_a_summary_names_a_few_and_counts_the_rest():
    before = {"a": ["1", 1]}
    after = {**before, **{name: ["2", 2] for name in "bcdef"}}
    assert pipwatch.Changes(before, after).summary() == "added b 2, c 2, d 2 and 2 more"
    assert pipwatch.Changes({"a": ["1", 1]}, {"a": ["1", 2]}).summary() == "reinstalled a 1"
    assert not pipwatch.Changes(before, dict(before))


def runtime_of(master, state=State.READY, **options):
    return types.SimpleNamespace(conf={"spark.master": master}, master=master, options=options, state=state,
                                 environ={"PYSPARK_PYTHON": "/opt/team/bin/python"})


ADDED = pipwatch.Changes({}, {"tinyprobe": ["0.1", 1]})


def test_a_cluster_kernel_that_ships_its_environment_says_the_restart_packs_it_again(tmp_path):
    (tmp_path / "environment.tar.gz").write_bytes(b"x" * 3 * 1024 * 1024)
    runtime = runtime_of("spark://h:7077", ship_environment="environment.tar.gz")
    assert shipping.pip_notice(runtime, ADDED, str(tmp_path)) == (
        "NOTE: %pip changed this environment (added tinyprobe 0.1); the executors run it as it was packed. "
        "They get it at the next restart, which packs it again (about 3.0 MiB): %spark restart")
    runtime.state = State.IDLE  # no session yet: its start packs it
    assert shipping.pip_notice(runtime, ADDED, str(tmp_path)) == (
        "NOTE: %pip changed this environment (added tinyprobe 0.1); the session's start packs it again for the executors (about 3.0 MiB).")


def test_a_kernel_whose_executors_run_a_python_of_the_hosts_says_pip_does_not_reach_it(tmp_path):
    kernels = tmp_path / "team kernels"  # the fix names the kernel's own directory: without -d, create makes a new kernel elsewhere
    assert shipping.pip_notice(runtime_of("yarn"), ADDED, str(kernels / "etl"), prefix=str(tmp_path)) == (
        "NOTE: %pip changed this environment only (added tinyprobe 0.1): the executors run /opt/team/bin/python on the cluster's hosts, "
        f"which %pip does not change. Install it there, or ship this environment: pyspark-kernel create --force -k etl -d '{kernels}' --executor_python pack")


def test_executors_that_run_the_kernels_own_virtualenv_by_its_path_see_the_change_on_a_shared_file_system(tmp_path):
    small_venv(tmp_path / "env")  # its bin/python links to the interpreter it was made from, outside it
    runtime = runtime_of("yarn")
    runtime.environ["PYSPARK_PYTHON"] = str(tmp_path / "env" / "bin" / "python")
    line = shipping.pip_notice(runtime, ADDED, str(tmp_path / "kernels" / "etl"), prefix=str(tmp_path / "env"))
    assert line.startswith(f"NOTE: %pip changed this environment (added tinyprobe 0.1); the executors run {tmp_path}/env/bin/python on the cluster's hosts, "
                           "and see the change only where that path is this environment (a shared file system)"), line


@pytest.mark.parametrize("master", ["local[*]", "local[2]", "local-cluster[2,1,1024]"])
def test_a_local_kernel_says_nothing(master):
    assert shipping.pip_notice(runtime_of(master), ADDED) is None


def small_venv(root):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return next((root / "lib").glob("python3*/site-packages"))


def test_a_changed_environment_is_packed_again_at_the_start_once_for_every_kernel_of_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = small_venv(tmp_path / "env")
    kernels = [tmp_path / "k1", tmp_path / "k2"]
    for kernel in kernels:
        kernel.mkdir()
        pack_environment(str(tmp_path / "env"), str(kernel))  # create's pack and its manifest

    def start(kernel):
        runtime = types.SimpleNamespace(options={"ship_environment": "environment.tar.gz"}, environ=dict(os.environ), scratch=str(tmp_path / f"scratch-{kernel.name}"),
                                        pip=pipwatch.Watch(str(tmp_path / "env")), mark=lambda step: None)
        os.makedirs(runtime.scratch, exist_ok=True)
        attempt = types.SimpleNamespace(notices=[])
        return runtime, attempt, shipping.environment_archive(runtime, attempt, str(kernel), str(tmp_path / "env"))

    runtime, attempt, shipped = start(kernels[0])
    assert shipped == str(kernels[0] / "environment.tar.gz") and attempt.notices == []  # unchanged: create's
    install(site, "tinyprobe", "0.1")
    runtime, attempt, shipped = start(kernels[0])
    key = envpack.fingerprint(str(tmp_path / "env"))
    assert shipped == os.path.join(runtime.scratch, f"environment-{key}.tar.gz")
    assert os.path.samefile(shipped, os.path.join(envpack.cache_dir(), f"{key}-{envpack.PACK_FORMAT}.tar.gz"))
    (notice,) = attempt.notices
    assert notice.startswith("The executors get the environment as it is now (added tinyprobe 0.1): ") and " MiB, packed in " in notice
    assert runtime.pip.shipped == pipwatch.distributions(str(tmp_path / "env"))  # the cells' notices measure from here
    runtime, attempt, shipped = start(kernels[1])  # another kernel of the same environment: the same archive
    assert attempt.notices[0].endswith("from the per-user cache.") and os.path.basename(shipped) == f"environment-{key}.tar.gz"
    assert len([name for name in os.listdir(envpack.cache_dir()) if name.endswith(".tar.gz")]) == 2


def test_a_pure_python_distribution_zips_for_spark_connect_and_imports_from_the_zip(tmp_path, monkeypatch):
    site = fake_env(tmp_path)
    install(site, "tinyprobe", "0.1", files=("__init__.py", "more.py"))
    zipped = artifacts.zip_distribution("tinyprobe", "0.1", str(tmp_path), prefix=str(tmp_path))
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == ["tinyprobe-0.1.dist-info/METADATA", "tinyprobe-0.1.dist-info/RECORD", "tinyprobe/__init__.py", "tinyprobe/more.py"]
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {zipped!r}); import tinyprobe.more; print(tinyprobe.WHERE)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "zipped", done.stderr
    assert artifacts.zip_distribution("tinyprobe", "0.1", str(tmp_path), prefix=str(tmp_path)) == zipped  # named by its contents


def test_an_upgrade_after_a_sent_zip_zips_the_environments_new_version(tmp_path, monkeypatch):
    """PySpark's addArtifacts(pyfile=True) puts each zip on the kernel's own sys.path, ahead of
    site-packages: the upgraded distribution is still the environment's, not the zip's."""
    site = fake_env(tmp_path / "env")
    install(site, "tinyprobe", "0.1")
    sent = artifacts.zip_distribution("tinyprobe", "0.1", str(tmp_path), prefix=str(tmp_path / "env"))
    monkeypatch.setattr(sys, "path", [sys.path[0], sent, *sys.path[1:]])  # as pyspark.sql.connect.client.artifact does
    for old in site.glob("tinyprobe-0.1.dist-info/*"):
        old.unlink()
    (site / "tinyprobe-0.1.dist-info").rmdir()
    install(site, "tinyprobe", "0.2")
    zipped = artifacts.zip_distribution("tinyprobe", "0.2", str(tmp_path), prefix=str(tmp_path / "env"))
    with zipfile.ZipFile(zipped) as archive:
        assert "tinyprobe-0.2.dist-info/METADATA" in archive.namelist() and zipped != sent


def test_spark_connect_gets_pure_python_distributions_as_artifacts_and_is_told_of_the_rest(tmp_path, monkeypatch):
    site = fake_env(tmp_path)
    install(site, "tinyprobe", "0.1")
    install(site, "fastthing", "2.0", files=("__init__.py", "_speed.cpython-311-x86_64-linux-gnu.so"))
    added = []
    session = types.SimpleNamespace(addArtifacts=lambda *paths, pyfile: added.append((paths, pyfile)))
    driver = ConnectDriver(types.SimpleNamespace(scratch=str(tmp_path), state=State.READY, session=session, pip=pipwatch.Watch(str(tmp_path))))
    found = pipwatch.distributions(str(tmp_path))
    line = driver.pip_notice(pipwatch.Changes({"six": found["six"]}, found))
    assert line == ("NOTE: %pip changed this environment (added fastthing 2.0, tinyprobe 0.1): tinyprobe sent to the Spark Connect session's Python workers "
                    "(addArtifacts, pyfile): its UDFs import them from now on, and each new session gets them as it starts; fastthing not sent: it has compiled code "
                    "(fastthing/_speed.cpython-311-x86_64-linux-gnu.so), which zipped Python files cannot carry; install it where the Spark Connect server runs.")
    ((paths, pyfile),) = added
    assert pyfile and [os.path.basename(path).rsplit("-", 1)[0] for path in paths] == ["pip-tinyprobe-0.1"] and driver.sent == {"tinyprobe": paths[0]}


class StandInSession:
    """A Spark Connect session's artifacts, as addArtifacts leaves them: the zips' names, in order."""

    def __init__(self):
        self.artifacts = []

    def addArtifacts(self, *paths, pyfile):
        assert pyfile
        self.artifacts.extend(os.path.basename(path).rsplit("-", 1)[0] for path in paths)


def test_each_new_connect_session_gets_what_differs_from_the_environment_at_create(tmp_path):
    """A session's artifacts die with it: a new one (a kernel restart, %spark restart, an idle stop)
    gets every pure-Python distribution added or upgraded since `create` recorded the environment,
    once, said in one line after the banner; a cell's %pip sends the ready session only what it lacks."""
    from pyspark_kernel.pack import record_environment
    from pyspark_kernel.runtime.attempt import StartAttempt

    env, kernel = tmp_path / "env", tmp_path / "kernel"
    site = fake_env(env)
    install(site, "oldpkg", "1.0")
    kernel.mkdir()
    record_environment(str(env), str(kernel))  # create's record of the environment
    install(site, "tinyprobe", "0.1")
    install(site, "fastthing", "2.0", files=("__init__.py", "_speed.cpython-311-x86_64-linux-gnu.so"))
    uninstall(site, "oldpkg", "1.0")
    marks = []
    runtime = types.SimpleNamespace(scratch=str(tmp_path), state=State.STARTING, pip=pipwatch.Watch(str(env)), mark=marks.append)  # a kernel started after the %pip
    driver = ConnectDriver(runtime)
    for _ in range(2):  # two sessions of the same kernel: each gets it
        session, attempt = StandInSession(), StartAttempt()
        driver.send_environment(session, attempt, str(kernel))
        assert session.artifacts == ["pip-tinyprobe-0.1"] and list(driver.sent) == ["tinyprobe"]
        assert attempt.notices == ["The Spark Connect session gets what %pip changed since create (added fastthing 2.0, tinyprobe 0.1; removed oldpkg 1.0): "
                                   "tinyprobe sent to its Python workers (addArtifacts, pyfile); fastthing not sent: it has compiled code "
                                   "(fastthing/_speed.cpython-311-x86_64-linux-gnu.so), which zipped Python files cannot carry; "
                                   "install it where the Spark Connect server runs."]
    assert marks == ["adding %pip's packages to the session"] * 2
    runtime.state, runtime.session = State.READY, session
    assert runtime.pip.changes() is None  # what the session got is not told again at the next cell
    install(site, "another", "0.3")
    line = driver.pip_notice(runtime.pip.changes())
    assert session.artifacts == ["pip-tinyprobe-0.1", "pip-another-0.3"], session.artifacts  # tinyprobe not again
    assert line.startswith("NOTE: %pip changed this environment (added another 0.3): another sent to the Spark Connect session's Python workers"), line
    # An environment as create recorded it: nothing to send, nothing said.
    record_environment(str(env), str(kernel))
    session, attempt = StandInSession(), StartAttempt()
    driver.send_environment(session, attempt, str(kernel))
    assert (session.artifacts, attempt.notices, driver.sent) == ([], [], {})


def test_a_connect_kernel_made_before_the_record_measures_from_the_kernels_start(tmp_path):
    from pyspark_kernel.runtime.attempt import StartAttempt

    site = fake_env(tmp_path / "env")
    runtime = types.SimpleNamespace(scratch=str(tmp_path), state=State.STARTING, pip=pipwatch.Watch(str(tmp_path / "env")), mark=lambda step: None)
    install(site, "tinyprobe", "0.1")
    session, attempt = StandInSession(), StartAttempt()
    ConnectDriver(runtime).send_environment(session, attempt, str(tmp_path / "no-record"))
    assert session.artifacts == ["pip-tinyprobe-0.1"] and attempt.notices[0].startswith("The Spark Connect session gets what %pip changed since create (added tinyprobe 0.1)")


def test_doctor_says_the_next_start_packs_what_pip_changed_and_a_problem_for_other_changes(tmp_path):
    from pyspark_kernel.doctor import environment_check

    env, kernel = tmp_path / "env", tmp_path / "etl"
    site = fake_env(env)
    kernel.mkdir()
    (kernel / "environment.tar.gz").write_bytes(b"packed")
    pipwatch.write_manifest(str(kernel / pipwatch.MANIFEST), pipwatch.distributions(str(env)), "k")
    metadata = {"packed_from": envpack.fingerprint(str(env)), "venv_dir": str(env)}
    archive = str(kernel / "environment.tar.gz")
    (site / "loose_module.py").write_text("X = 1\n")  # no distribution of its own: the kernel cannot tell
    assert environment_check(archive, metadata, "pyspark-kernel upgrade etl").status == "PROBLEM"
    install(site, "tinyprobe", "0.1")
    assert environment_check(archive, metadata, "pyspark-kernel upgrade etl").line() == (
        f"OK executor_environment: {env} changed since it was packed into {archive} (added tinyprobe 0.1): "
        "the kernel's next session packs it again as it starts (pyspark-kernel upgrade etl packs it now)")


def test_a_cells_send_that_fails_is_said_and_the_next_session_gets_it(tmp_path):
    site = fake_env(tmp_path)

    def refuse(*paths, pyfile):
        raise RuntimeError("the server went away\nits traceback")

    runtime = types.SimpleNamespace(scratch=str(tmp_path), state=State.READY, session=types.SimpleNamespace(addArtifacts=refuse), pip=pipwatch.Watch(str(tmp_path)))
    driver = ConnectDriver(runtime)
    install(site, "tinyprobe", "0.1")
    line = driver.pip_notice(runtime.pip.changes())
    assert line == ("NOTE: %pip changed this environment (added tinyprobe 0.1): sending tinyprobe to the Spark Connect session failed (the server went away): "
                    "a new session gets them as it starts (%spark restart).") and driver.sent == {}


def test_a_connect_kernels_record_is_kept_when_made_again_of_the_same_environment(tmp_path):
    from pyspark_kernel.pack import keep_record, record_environment

    site, old, new = fake_env(tmp_path / "env"), tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    record_environment(str(tmp_path / "env"), str(old))
    install(site, "tinyprobe", "0.1")  # %pip, before the kernel is made again
    record_environment(str(tmp_path / "env"), str(new))
    keep_record(str(new), str(old))
    assert list(pipwatch.read_manifest(str(new / pipwatch.MANIFEST))) == ["six"]
    fake_env(tmp_path / "other")  # another environment: its own record
    record_environment(str(tmp_path / "other"), str(new))
    keep_record(str(new), str(old))
    assert pipwatch.read_manifest(str(new / pipwatch.MANIFEST), str(tmp_path / "other")) == pipwatch.distributions(str(tmp_path / "other"))
    record_environment(str(tmp_path / "env"), str(new), key="packed")  # a packed environment's record is what it packed
    keep_record(str(new), str(old))
    assert sorted(pipwatch.read_manifest(str(new / pipwatch.MANIFEST))) == ["six", "tinyprobe"]
