"""Parts of the kernel runtime that need no kernel: start-up checks, messages, the archive key."""

import importlib.util
import os
import socket
import stat

import pytest

from .conftest import ROOT

spec = importlib.util.spec_from_file_location("runtime_under_test", os.path.join(ROOT, "{{cookiecutter.kernel_name}}", "pyspark_kernel_runtime.py"))
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)


@pytest.mark.parametrize("master, addresses", [
    ("local[*]", []), ("yarn", []), ("k8s://https://10.0.0.1:6443", []),
    ("spark://127.0.0.1:7077", [("127.0.0.1", 7077)]),
    ("spark://m1:7077,m2:7078", [("m1", 7077), ("m2", 7078)]),
    ("sc://localhost", [("localhost", 15002)]),
    ("sc://h:443/;use_ssl=true", [("h", 443)]),
])
def test_master_addresses(master, addresses):
    assert runtime.master_addresses(master) == addresses


def test_a_master_where_nothing_listens_is_refused_at_once():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(runtime.SparkStartError, match=f"nothing listens on 127.0.0.1:{port}"):
        runtime.check_master_reachable(f"spark://127.0.0.1:{port}")


def test_a_listening_master_passes_the_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        runtime.check_master_reachable(f"spark://127.0.0.1:{server.getsockname()[1]}")


def test_java_home_without_java_is_named(tmp_path):
    with pytest.raises(runtime.SparkStartError, match=f"JAVA_HOME is {tmp_path}, which has no bin/java"):
        runtime.find_java({"JAVA_HOME": str(tmp_path), "PATH": ""})


def test_java_is_found_on_path(tmp_path):
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    assert runtime.find_java({"PATH": str(tmp_path)}) == str(java)


def test_spark_home_without_spark_submit_is_named(tmp_path):
    with pytest.raises(runtime.SparkStartError, match="has no bin/spark-submit"):
        runtime.check_spark_home({"SPARK_HOME": str(tmp_path)})


def test_known_causes_are_read_from_the_jvm_output(tmp_path):
    log = tmp_path / "driver.log"
    log.write_text('[0.1s][warning][cds] noise\nException in thread "main" java.lang.UnsupportedClassVersionError: class file version 65.0\n')
    message = runtime.explain(RuntimeError("Java gateway process exited"), str(log))
    assert message.startswith("Spark did not start: this Java is too old for this Spark (install a JDK 17+")
    assert "UnsupportedClassVersionError" in message and "[cds]" not in message


def test_options_fill_defaults_and_ignore_an_unknown_mode():
    options = runtime.read_options({"PYSPARK_KERNEL_OPTIONS": '{"init": "sometimes", "progress": false}'})
    assert options == {**runtime.DEFAULT_OPTIONS, "progress": False}


def test_archive_key_follows_the_jdk_and_the_spark_jars(tmp_path):
    java = tmp_path / "java"
    java.write_text("jdk 17")
    (tmp_path / "spark" / "jars").mkdir(parents=True)
    (tmp_path / "spark" / "jars" / "spark-core.jar").write_text("a")
    key = runtime.cds_key(str(java), str(tmp_path / "spark"))
    assert key == runtime.cds_key(str(java), str(tmp_path / "spark"))
    (tmp_path / "spark" / "jars" / "extra.jar").write_text("b")
    assert runtime.cds_key(str(java), str(tmp_path / "spark")) != key
    java.write_text("jdk 17.0.16")
    assert runtime.cds_key(str(java), str(tmp_path / "spark")) != key


def test_archive_options_train_when_missing_and_map_when_present(tmp_path):
    java = tmp_path / "java"
    java.write_text("jdk")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    training = runtime.cds_java_options(str(java), str(tmp_path), str(scratch), env, os.getpid())
    assert training[0].startswith("-XX:ArchiveClassesAtExit=") and training[0].endswith(".partial")
    assert (scratch / "cds-training.sh").exists()
    archive = training[0].split("=", 1)[1].rsplit(".", 2)[0]
    open(archive, "w").close()
    assert runtime.cds_java_options(str(java), str(tmp_path), str(scratch), env, os.getpid()) == [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]


def test_while_one_kernel_writes_the_archive_the_others_start_without_it(tmp_path):
    java = tmp_path / "java"
    java.write_text("jdk")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    options = []
    for index in range(3):
        scratch = tmp_path / f"scratch-{index}"
        scratch.mkdir()
        options.append(runtime.cds_java_options(str(java), str(tmp_path), str(scratch), env, os.getpid()))
    assert options[0][0].startswith("-XX:ArchiveClassesAtExit=") and options[1:] == [[], []]
    assert not (tmp_path / "scratch-1" / "cds-training.sh").exists()


def dead_pid():
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_lock_left_by_a_crashed_writer_is_taken_over(tmp_path):
    lock = tmp_path / "spark-x.jsa.lock"
    lock.write_text(f"{socket.gethostname()} {dead_pid()}\n")
    assert runtime.claim_archive(str(lock), os.getpid())
    assert lock.read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert not runtime.claim_archive(str(lock), os.getpid())  # now held by a live process


def test_a_lock_just_created_and_not_yet_written_is_respected(tmp_path):
    lock = tmp_path / "spark-x.jsa.lock"
    lock.write_text("")
    assert not runtime.claim_archive(str(lock), os.getpid())
    os.utime(lock, (0, 0))  # empty for ages: its maker died between create and write
    assert runtime.claim_archive(str(lock), os.getpid())


def test_a_lock_from_another_host_is_trusted_for_a_day(tmp_path):
    lock = tmp_path / "spark-x.jsa.lock"
    lock.write_text(f"other-host-{socket.gethostname()} 1\n")
    assert not runtime.claim_archive(str(lock), os.getpid())
    os.utime(lock, (0, 0))
    assert runtime.claim_archive(str(lock), os.getpid())


@pytest.mark.parametrize("master, token, url", [
    ("sc://h:15002", None, "sc://h:15002"),
    ("sc://h:15002", "t0k", "sc://h:15002/;token=t0k"),
    ("sc://h:15002/;use_ssl=true", "t0k", "sc://h:15002/;use_ssl=true;token=t0k"),
])
def test_the_connect_token_comes_from_the_environment(master, token, url):
    assert runtime.with_token(master, token) == url


def test_a_yarn_kernel_that_ships_its_environment_launches_spark_with_exactly_this():
    conf = {"spark.master": "yarn", "spark.submit.deployMode": "client", "spark.yarn.queue": "analytics", "spark.archives": "hdfs:///libs/geo.zip#geo"}
    settings = runtime.launch_settings(conf, {"ship_environment": "environment.tar.gz"}, "/tmp/scratch", "/k/etl", ["-XX:SharedArchiveFile=/c/a.jsa", "-Xshare:auto"])
    assert settings == {
        "spark.master": "yarn",
        "spark.submit.deployMode": "client",
        "spark.yarn.queue": "analytics",
        "spark.archives": "hdfs:///libs/geo.zip#geo,/k/etl/environment.tar.gz#environment",
        "spark.driver.defaultJavaOptions": "-Djava.io.tmpdir=/tmp/scratch -XX:SharedArchiveFile=/c/a.jsa -Xshare:auto",
        "spark.local.dir": "/tmp/scratch",
    }


def test_the_users_java_options_and_local_dir_are_kept():
    conf = {"spark.master": "local[*]", "spark.driver.defaultJavaOptions": "-Dteam=a", "spark.local.dir": "/data/spark"}
    settings = runtime.launch_settings(conf, {}, "/tmp/scratch", "/k", [])
    assert settings["spark.driver.defaultJavaOptions"] == "-Dteam=a -Djava.io.tmpdir=/tmp/scratch"
    assert settings["spark.local.dir"] == "/data/spark" and "spark.archives" not in settings


def test_secret_settings_are_resolved_from_the_kernels_environment():
    settings = {"spark.master": "yarn", "spark.hadoop.fs.s3a.secret.key": "${env:S3_SECRET}"}
    assert runtime.resolve_secrets(settings, {"S3_SECRET": "x"}) == {"spark.hadoop.fs.s3a.secret.key": "x"}
    with pytest.raises(runtime.SparkStartError, match=r"comes from \$S3_SECRET, which is not set"):
        runtime.resolve_secrets(settings, {})


class FakeClient:
    """A Py4J gateway client whose call runs ``during`` while the main thread is inside it."""

    def __init__(self, during):
        self.during = during

    def send_command(self, command):
        self.during()
        return f"answer to {command}"


class Interrupted(Exception):
    """Stands for KeyboardInterrupt, which pytest takes as the user stopping the test run."""


def test_an_interrupt_inside_a_py4j_call_is_raised_as_the_call_returns():
    held = runtime.HeldInterrupt()
    held.interrupt = Interrupted
    client = FakeClient(lambda: calls.append(held.hold()))
    calls = []
    held.guard(client)
    with pytest.raises(Interrupted):
        client.send_command("collect")  # the answer is read whole; then the interrupt
    assert calls == [True] and not held.pending and held.depth == 0
    client.during = lambda: None  # no interrupt this time
    assert client.send_command("next") == "answer to next"  # nothing left pending


def test_a_second_interrupt_inside_the_call_is_not_held():
    held = runtime.HeldInterrupt()
    client = FakeClient(lambda: calls.append((held.hold(), held.hold())))
    calls = []
    held.guard(client)
    client.send_command("stuck")
    assert calls == [(True, False)] and not held.pending


def test_outside_a_py4j_call_an_interrupt_is_raised_at_once():
    assert runtime.HeldInterrupt().hold() is False


def test_other_threads_calls_do_not_hold_the_main_threads_interrupt():
    import threading

    held = runtime.HeldInterrupt()
    seen = []
    client = FakeClient(lambda: seen.append(held.depth))
    held.guard(client)
    worker = threading.Thread(target=client.send_command, args=("progress",))
    worker.start()
    worker.join()
    assert seen == [0] and held.hold() is False
