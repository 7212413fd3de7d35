"""Parts of the kernel runtime that need no kernel: start-up checks, messages, the archive key."""

import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from pyspark_kernel.runtime import diagnostics, entrypoints, guard, idle, jvm, magics, masters, notebook, options, progress, sql, ui, workdir
from pyspark_kernel.runtime.dedicated import DedicatedDriver
from pyspark_kernel.runtime.profile import BEFORE_RUNTIME, StartProfile, process_age


@pytest.mark.parametrize("master, addresses", [
    ("local[*]", []), ("yarn", []), ("k8s://https://10.0.0.1:6443", []),
    ("spark://127.0.0.1:7077", [("127.0.0.1", 7077)]),
    ("spark://m1:7077,m2:7078", [("m1", 7077), ("m2", 7078)]),
    ("sc://localhost", [("localhost", 15002)]),
    ("sc://h:443/;use_ssl=true", [("h", 443)]),
])
def test_master_addresses(master, addresses):
    assert masters.master_addresses(master) == addresses


def test_a_master_where_nothing_listens_is_refused_at_once():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(diagnostics.SparkStartError, match=f"nothing listens on 127.0.0.1:{port}"):
        diagnostics.check_master_reachable(f"spark://127.0.0.1:{port}")


def test_a_listening_master_passes_the_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        diagnostics.check_master_reachable(f"spark://127.0.0.1:{server.getsockname()[1]}")


def test_java_home_without_java_is_named(tmp_path):
    with pytest.raises(diagnostics.SparkStartError, match=f"JAVA_HOME is {tmp_path}, which has no bin/java"):
        diagnostics.find_java({"JAVA_HOME": str(tmp_path), "PATH": ""})


def test_java_is_found_on_path(tmp_path):
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    assert diagnostics.find_java({"PATH": str(tmp_path)}) == str(java)


def test_spark_home_without_spark_submit_is_named(tmp_path):
    with pytest.raises(diagnostics.SparkStartError, match="has no bin/spark-submit"):
        diagnostics.check_spark_home({"SPARK_HOME": str(tmp_path)})


def test_known_causes_are_read_from_the_jvm_output(tmp_path):
    log = tmp_path / "driver.log"
    log.write_text('[0.1s][warning][cds] noise\nException in thread "main" java.lang.UnsupportedClassVersionError: class file version 65.0\n')
    message = diagnostics.explain(RuntimeError("Java gateway process exited"), str(log))
    assert message.startswith("Spark did not start: this Java is too old for this Spark (install a JDK 17+")
    assert "UnsupportedClassVersionError" in message and "[cds]" not in message


def test_options_fill_defaults_and_ignore_an_unknown_mode():
    read = options.read_options({"PYSPARK_KERNEL_OPTIONS": '{"init": "sometimes", "progress": false}'})
    assert read == {**options.DEFAULT_OPTIONS, "progress": False}


def test_variables_kernel_json_unsets_and_server_variables_the_server_lacks_are_removed():
    environ = {"SPARK_HOME": "", "MASTER": "", "PYTHONPATH": "/p", "TEAM_TOKEN": "${TEAM_TOKEN}", "DB_URL": "postgres://db", "OTHER": "${OTHER}",
               "PYSPARK_KERNEL_OPTIONS": '{"env_from": ["TEAM_TOKEN", "DB_URL"]}'}
    options.clear_unset(environ)
    # OTHER is not taken from the server: its text is the kernel's own, kept as it is.
    assert environ == {"PYTHONPATH": "/p", "DB_URL": "postgres://db", "OTHER": "${OTHER}", "PYSPARK_KERNEL_OPTIONS": '{"env_from": ["TEAM_TOKEN", "DB_URL"]}'}


@pytest.mark.parametrize("text, problem", [("{not json", "is not valid JSON"), ("[1, 2]", "is not a JSON object of options")])
def test_broken_options_are_a_setup_error_that_says_what_to_do(text, problem):
    with pytest.raises(diagnostics.SetupError, match=f"PYSPARK_KERNEL_OPTIONS in kernel.json {problem}.*regenerate the kernel"):
        options.read_options({"PYSPARK_KERNEL_OPTIONS": text})


@pytest.mark.parametrize("text, key", [('{"idle_timeout": -1}', "idle_timeout"), ('{"start_timeout": 0}', "start_timeout"), ('{"idle_timeout": "x"}', "idle_timeout")])
def test_a_time_limit_that_is_not_seconds_is_a_setup_error(text, key):
    with pytest.raises(diagnostics.SetupError, match=f"{key} in PYSPARK_KERNEL_OPTIONS is .*, not a number of seconds; regenerate the kernel"):
        options.read_options({"PYSPARK_KERNEL_OPTIONS": text})
    assert options.read_options({"PYSPARK_KERNEL_OPTIONS": '{"idle_timeout": 0}'})["idle_timeout"] == 0  # 0: never


@pytest.mark.parametrize("key, value, shown", [
    ("spark.app.name", "etl", "etl"),
    ("spark.hadoop.fs.s3a.secret.key", "s3cr3t", "*********(redacted)"),
    ("spark.ssl.keyStorePassword", "pw", "*********(redacted)"),
    ("spark.executor.memory", "${env:MEM}", "*********(redacted)"),
])
def test_values_the_runtime_prints_are_redacted_as_spark_redacts_them(key, value, shown):
    assert options.shown_value(key, value) == shown


@pytest.mark.parametrize("returncode, described", [
    (-9, "killed by signal 9 (SIGKILL: often the out-of-memory killer)"),
    (-15, "killed by signal 15 (SIGTERM)"),
    (1, "exited with code 1"),
    (52, "exited with code 52 (an OutOfMemoryError in the driver (raise spark.driver.memory))"),
])
def test_how_the_jvm_ended_is_said_plainly(returncode, described, monkeypatch):
    monkeypatch.delenv("MEM_LIMIT", raising=False)  # a runner on a hub may have one: its line is tested with the limits
    assert diagnostics.describe_exit(returncode) == described


def test_a_dead_jvm_message_names_the_way_back(tmp_path, monkeypatch):
    monkeypatch.delenv("MEM_LIMIT", raising=False)
    log = tmp_path / "driver.log"
    log.write_text("25/01/01 WARN last words\n")
    message = diagnostics.died_message(-9, str(log))
    assert message.startswith("The Spark driver JVM has exited: killed by signal 9 (SIGKILL: often the out-of-memory killer).")
    assert "run %spark restart for a new session; your Python variables are kept" in message and message.endswith("WARN last words")


def test_archive_key_follows_the_jdk_and_the_spark_jars(tmp_path):
    java = tmp_path / "java"
    java.write_text("jdk 17")
    (tmp_path / "spark" / "jars").mkdir(parents=True)
    (tmp_path / "spark" / "jars" / "spark-core.jar").write_text("a")
    key = jvm.cds_key(str(java), str(tmp_path / "spark"))
    assert key == jvm.cds_key(str(java), str(tmp_path / "spark"))
    (tmp_path / "spark" / "jars" / "extra.jar").write_text("b")
    assert jvm.cds_key(str(java), str(tmp_path / "spark")) != key
    key = jvm.cds_key(str(java), str(tmp_path / "spark"))
    os.utime(tmp_path / "spark" / "jars" / "extra.jar", ns=(0, 10**18))  # a jar of the same name and size, from another install
    assert jvm.cds_key(str(java), str(tmp_path / "spark")) != key
    java.write_text("jdk 17.0.16")
    assert jvm.cds_key(str(java), str(tmp_path / "spark")) != key


@pytest.mark.parametrize("version, first", [(17, "-XX:ArchiveClassesAtExit="), (13, "-XX:ArchiveClassesAtExit="), (21, "-XX:+AutoCreateSharedArchive")])
def test_archive_options_write_it_when_missing_and_map_it_when_present(tmp_path, version, first):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    archive = tmp_path / "cache" / "pyspark-kernel" / "cds" / "spark-k.jsa"
    writing = jvm.cds_java_options(version, "spark-k", str(scratch), env, os.getpid())
    assert writing[0].startswith(first)
    assert {stat.S_IMODE(os.stat(archive.parent).st_mode), stat.S_IMODE(os.stat(archive.parent.parent).st_mode)} == {0o700}  # the user's own
    facts = (scratch / "cds-training.sh").read_text()
    assert f"lock={archive}.lock" in facts
    # The JVM logs the archive it writes: the watchdog records its size once it is written whole.
    assert writing[-1] == f"-Xlog:cds+dynamic=info:file={scratch / 'cds-training.log'}" and f"archive={archive}" in facts
    if version >= 19:  # the JVM writes the archive in place: nothing for the watchdog to rename
        assert writing[:2] == ["-XX:+AutoCreateSharedArchive", f"-XX:SharedArchiveFile={archive}"] and "partial=" not in facts
    else:
        assert writing[0] == f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.partial"
    (tmp_path / "cache" / "pyspark-kernel" / "cds" / "spark-k.jsa.lock").unlink()  # as the watchdog does once the JVM is gone
    archive.write_bytes(b"an archive")
    (scratch / "cds-training.sh").unlink()
    (archive.parent / "spark-k.jsa.size").write_text("10\n")  # as the watchdog records an archive written whole
    mapping = jvm.cds_java_options(version, "spark-k", str(scratch), env, os.getpid())
    if version >= 19:  # the lock holder's JVM maps it, and rewrites it should it be stale
        assert mapping[:2] == ["-XX:+AutoCreateSharedArchive", f"-XX:SharedArchiveFile={archive}"]
    else:
        assert mapping == [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto", f"-XX:ErrorFile={scratch}/hs_err_pid%p.log"]


@pytest.mark.parametrize("version", [17, 25])
def test_an_archive_not_at_its_recorded_size_is_set_aside_and_written_again(tmp_path, version):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    directory = tmp_path / "cache" / "pyspark-kernel" / "cds"
    directory.mkdir(parents=True)
    archive = directory / "spark-k.jsa"
    archive.write_bytes(b"cut sh")
    (directory / "spark-k.jsa.size").write_text("150000000\n")
    notices = []
    options = jvm.cds_java_options(version, "spark-k", str(scratch), env, os.getpid(), notices=notices)
    assert not archive.exists() and not (directory / "spark-k.jsa.size").exists()
    assert [path.name for path in directory.glob("spark-k.jsa.set-aside.*")] == [f"spark-k.jsa.set-aside.{os.getpid()}"]
    assert options[0] == (f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.partial" if version < 19 else "-XX:+AutoCreateSharedArchive")
    assert notices == [f"The class-data-sharing archive {archive} was unusable (it is 6 bytes long, and was written 150000000 bytes long): "
                       "set aside; this kernel's JVM writes a new one as it exits."]


def test_an_archive_being_written_is_not_mapped_before_its_size_is_recorded(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    scratches = [tmp_path / "writer", tmp_path / "other"]
    for scratch in scratches:
        scratch.mkdir()
    assert jvm.cds_java_options(25, "spark-k", str(scratches[0]), env, os.getpid())[0] == "-XX:+AutoCreateSharedArchive"
    archive = tmp_path / "cache" / "pyspark-kernel" / "cds" / "spark-k.jsa"
    archive.write_bytes(b"half")  # JDK 19+ writes it in place
    assert jvm.cds_java_options(25, "spark-k", str(scratches[1]), env, os.getpid()) == []
    assert archive.exists()  # the writer's, left alone


def test_a_jdk_without_a_base_archive_gets_no_archive_options(tmp_path):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "lib" / "server").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text('JAVA_VERSION="21.0.8"\n')
    (tmp_path / "spark" / "jars").mkdir(parents=True)
    found = jvm.archive_options(str(home / "bin" / "java"), str(tmp_path / "spark"), str(tmp_path), {"XDG_CACHE_HOME": str(tmp_path)}, os.getpid(), [])
    assert found == (None, [])
    (home / "lib" / "server" / "classes.jsa").write_text("")
    assert jvm.archive_options(str(home / "bin" / "java"), str(tmp_path / "spark"), str(tmp_path), {"XDG_CACHE_HOME": str(tmp_path)}, os.getpid(), [])[1]


def test_a_launch_that_crashes_on_the_archive_is_retried_without_it_and_says_so(tmp_path):
    archive = tmp_path / "spark-k.jsa"
    archive.write_bytes(b"archive")
    (tmp_path / "spark-k.jsa.size").write_text("7\n")
    output = tmp_path / "driver.log"
    output.write_text("an earlier start's lines\n")
    tried = []

    def launch(options):
        tried.append(options)
        if options:
            with open(output, "a", encoding="utf-8") as handle:
                handle.write("#\n# A fatal error has been detected by the Java Runtime Environment:\n#  SIGBUS (0x7)\n")
            raise RuntimeError("Java gateway process exited before sending its port number")
        return "gateway"

    options = [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]
    notices = []
    assert jvm.launch_healing(launch, options, str(archive), str(tmp_path), str(output), lambda: False, notices) == "gateway"
    assert tried == [options, []] and not archive.exists()
    assert notices == [f"The class-data-sharing archive {archive} was unusable (the JVM crashed mapping it): set aside; "
                       "this start ran without it and the next rebuilds it."]
    # A launch that fails for another reason fails as it did, and a start given up is not retried.
    for lines, gave_up in (("Error: Invalid maximum heap size: -Xmx1q\n", False), ("# A fatal error has been detected by the Java Runtime Environment:\n", True)):
        output.write_text(lines)
        archive.write_bytes(b"archive")

        def failing(options):
            raise RuntimeError("Java gateway process exited before sending its port number")

        with pytest.raises(RuntimeError):
            jvm.launch_healing(failing, options, str(archive), str(tmp_path), str(output), lambda gave_up=gave_up: gave_up, [])
        assert archive.exists()


def test_an_archive_the_jvm_refused_is_set_aside_for_the_next_start(tmp_path):
    archive = tmp_path / "spark-k.jsa"
    archive.write_bytes(b"archive")
    output = tmp_path / "driver.log"

    def launch(options):
        output.write_text(f"[0.012s][warning][cds,dynamic] Unable to use shared archive. The top archive failed to load: {archive}\n")
        return "gateway"

    notices = []
    assert jvm.launch_healing(launch, [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"], str(archive), str(tmp_path), str(output),
                              lambda: False, notices) == "gateway"
    assert not archive.exists() and len(notices) == 1 and "the JVM refused it: [0.012s][warning][cds,dynamic] Unable to use shared archive" in notices[0]
    # A JVM that rewrites the archive itself as it exits keeps it.
    archive.write_bytes(b"archive")
    jvm.launch_healing(launch, ["-XX:+AutoCreateSharedArchive", f"-XX:SharedArchiveFile={archive}"], str(archive), str(tmp_path), str(output), lambda: False, [])
    assert archive.exists()


@pytest.mark.parametrize("version", [None, 8, 11, 12])
def test_jdks_before_13_get_no_archive_options(tmp_path, version):
    assert jvm.cds_java_options(version, "spark-k", str(tmp_path), {"XDG_CACHE_HOME": str(tmp_path)}, os.getpid()) == []


def test_while_one_kernel_writes_the_archive_the_others_start_without_it(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    found = []
    for index in range(3):
        scratch = tmp_path / f"scratch-{index}"
        scratch.mkdir()
        found.append(jvm.cds_java_options(17, "spark-k", str(scratch), env, os.getpid()))
    assert found[0][0].startswith("-XX:ArchiveClassesAtExit=") and found[1:] == [[], []]
    assert not (tmp_path / "scratch-1" / "cds-training.sh").exists()


@pytest.mark.parametrize("release, version", [('JAVA_VERSION="17.0.15"', 17), ('JAVA_VERSION="1.8.0_392"', 8), ('JAVA_VERSION="21"', 21),
                                              ('JAVA_VERSION="11.0.2"\nIMPLEMENTOR="x"', 11)])
def test_the_java_version_is_read_from_the_jdks_release_file(tmp_path, release, version):
    (tmp_path / "bin").mkdir()
    java = tmp_path / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 1\n")  # never run: the release file answers
    (tmp_path / "release").write_text(release + "\n")
    assert diagnostics.java_version(str(java)) == version


def test_without_a_release_file_java_is_asked(tmp_path):
    (tmp_path / "bin").mkdir()
    java = tmp_path / "bin" / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.25" 2024-10-15\' >&2\n')
    java.chmod(0o755)
    assert diagnostics.java_version(str(java)) == 11


def test_pysparks_numpy_converters_wait_for_numpy_then_convert_as_before():
    """In a Python of its own, whose modules are its start's: the first Py4J calls import neither
    numpy nor pandas, pyarrow or pyspark.testing; once numpy is imported, its values convert."""
    code = """
import sys
from py4j import protocol
import pyspark.sql  # registers PySpark's input converters
from pyspark_kernel.runtime import converters
class NumpyArrayConverter:  # someone else's, of the same name: left as it is
    def can_convert(self, value):
        return False
protocol.register_input_converter(NumpyArrayConverter())
converters.defer_numpy_converters()
converters.defer_numpy_converters()  # a second start: each converter is wrapped once
wrapped = [c for c in protocol.INPUT_CONVERTER if isinstance(c, converters.UntilNumpy)]
assert sorted(type(c.converter).__name__ for c in wrapped) == ["NumpyArrayConverter", "NumpyScalarConverter"], wrapped
assert not any(isinstance(c.converter, converters.UntilNumpy) for c in wrapped)
assert any(type(c) is NumpyArrayConverter for c in protocol.INPUT_CONVERTER)
assert not any(c.can_convert(value) for c in protocol.INPUT_CONVERTER[:] if isinstance(c, converters.UntilNumpy) for value in ([1, 2], 1.5, "x", None))
print(sorted({"numpy", "pandas", "pyarrow", "pyspark.testing"} & set(sys.modules)))
import numpy
print([type(c.converter).__name__ for c in wrapped if c.can_convert(numpy.array([1, 2]))],
      [type(c.converter).__name__ for c in wrapped if c.can_convert(numpy.int64(3))],
      [c.convert(numpy.int64(3), None) for c in wrapped if c.can_convert(numpy.int64(3))])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['NumpyArrayConverter'] ['NumpyScalarConverter'] [3]"], done.stdout


@pytest.mark.parametrize("option, text", [
    ("-Djava.io.tmpdir=/tmp/plain", "-Djava.io.tmpdir=/tmp/plain"),
    ("-Djava.io.tmpdir=/home/Jane Doe/tmp", '"-Djava.io.tmpdir=/home/Jane Doe/tmp"'),
    ('-Dx=say "hi"', '"-Dx=say \\"hi\\""'),
    ("-Dx=back\\slash it's", '"-Dx=back\\\\slash it\'s"'),
])
def test_jvm_options_are_quoted_as_sparks_launcher_splits_them(option, text):
    assert jvm.java_option_text(option) == text
    assert split_like_spark(text) == [option]


def split_like_spark(text):
    """Spark's CommandBuilderUtils.parseOptionString, for the cases above: whitespace splits,
    double and single quotes group, a backslash outside single quotes escapes."""
    options, current, quote, escaped, started = [], [], None, False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quote != "'":
            escaped, started = True, True
        elif char in "\"'" and quote in (None, char):
            quote = None if quote else char
            started = True
        elif char.isspace() and quote is None:
            if started:
                options.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        options.append("".join(current))
    return options


@pytest.mark.parametrize("path, uri", [
    ("/k/etl/environment.tar.gz", "file:///k/etl/environment.tar.gz#environment"),
    ("/home/Jane Doe/k#1/100%/ümlaut/environment.tar.gz", "file:///home/Jane%20Doe/k%231/100%25/%C3%BCmlaut/environment.tar.gz#environment"),
])
def test_the_shipped_archive_is_a_file_uri_whatever_its_path(path, uri):
    assert jvm.archive_uri(path, "environment") == uri


def dead_pid():
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_lock_left_by_a_crashed_writer_is_taken_over(tmp_path):
    lock = tmp_path / "spark-x.jsa.lock"
    lock.write_text(f"{socket.gethostname()} {dead_pid()}\n")
    assert jvm.claim_archive(str(lock), os.getpid())
    assert lock.read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert not jvm.claim_archive(str(lock), os.getpid())  # now held by a live process


def test_a_lock_just_created_and_not_yet_written_is_respected(tmp_path):
    lock = tmp_path / "spark-x.jsa.lock"
    lock.write_text("")
    assert not jvm.claim_archive(str(lock), os.getpid())
    os.utime(lock, (0, 0))  # empty for ages: its maker died between create and write
    assert jvm.claim_archive(str(lock), os.getpid())


def test_a_lock_from_another_host_is_trusted_for_a_day(tmp_path):
    lock = tmp_path / "spark-x.jsa.lock"
    lock.write_text(f"other-host-{socket.gethostname()} 1\n")
    assert not jvm.claim_archive(str(lock), os.getpid())
    os.utime(lock, (0, 0))
    assert jvm.claim_archive(str(lock), os.getpid())


@pytest.mark.parametrize("master, token, url", [
    ("sc://h:15002", None, "sc://h:15002"),
    ("sc://h:15002", "t0k", "sc://h:15002/;token=t0k"),
    ("sc://h:15002/;use_ssl=true", "t0k", "sc://h:15002/;use_ssl=true;token=t0k"),
])
def test_the_connect_token_comes_from_the_environment(master, token, url):
    assert masters.with_token(master, token) == url


def test_a_yarn_kernel_that_ships_its_environment_launches_spark_with_exactly_this():
    conf = {"spark.master": "yarn", "spark.submit.deployMode": "client", "spark.yarn.queue": "analytics", "spark.archives": "hdfs:///libs/geo.zip#geo"}
    settings = jvm.launch_settings(conf, "/tmp/scratch", ["-XX:SharedArchiveFile=/c/a.jsa", "-Xshare:auto"], "/k/etl/environment.tar.gz")
    assert settings == {
        "spark.master": "yarn",
        "spark.submit.deployMode": "client",
        "spark.yarn.queue": "analytics",
        "spark.archives": "hdfs:///libs/geo.zip#geo,file:///k/etl/environment.tar.gz#environment",
        "spark.driver.defaultJavaOptions": "-Djava.io.tmpdir=/tmp/scratch -XX:SharedArchiveFile=/c/a.jsa -Xshare:auto",
        "spark.local.dir": "/tmp/scratch",
    }


def test_the_users_java_options_and_local_dir_are_kept():
    conf = {"spark.master": "local[*]", "spark.driver.defaultJavaOptions": "-Dteam=a", "spark.local.dir": "/data/spark"}
    settings = jvm.launch_settings(conf, "/tmp/scratch", [])
    assert settings["spark.driver.defaultJavaOptions"] == "-Dteam=a -Djava.io.tmpdir=/tmp/scratch"
    assert settings["spark.local.dir"] == "/data/spark" and "spark.archives" not in settings


def test_secret_settings_are_resolved_from_the_kernels_environment():
    settings = {"spark.master": "yarn", "spark.hadoop.fs.s3a.secret.key": "${env:S3_SECRET}"}
    assert options.resolve_secrets(settings, {"S3_SECRET": "x"}) == {"spark.hadoop.fs.s3a.secret.key": "x"}
    with pytest.raises(diagnostics.SparkStartError, match=r"comes from \$S3_SECRET, which is not set"):
        options.resolve_secrets(settings, {})


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
    held = guard.HeldInterrupt()
    held.interrupt = Interrupted
    client = FakeClient(lambda: calls.append(held.hold()))
    calls = []
    guard.guard(client, held, lambda: None)
    with pytest.raises(Interrupted):
        client.send_command("collect")  # the answer is read whole; then the interrupt
    assert calls == [True] and not held.pending and held.depth == 0
    client.during = lambda: None  # no interrupt this time
    assert client.send_command("next") == "answer to next"  # nothing left pending


def test_a_second_interrupt_inside_the_call_is_not_held():
    held = guard.HeldInterrupt()
    client = FakeClient(lambda: calls.append((held.hold(), held.hold())))
    calls = []
    guard.guard(client, held, lambda: None)
    client.send_command("stuck")
    assert calls == [(True, False)] and not held.pending


def test_outside_a_py4j_call_an_interrupt_is_raised_at_once():
    assert guard.HeldInterrupt().hold() is False


def test_other_threads_calls_do_not_hold_the_main_threads_interrupt():
    import threading

    held = guard.HeldInterrupt()
    seen = []
    client = FakeClient(lambda: seen.append(held.depth))
    guard.guard(client, held, lambda: None)
    worker = threading.Thread(target=client.send_command, args=("progress",))
    worker.start()
    worker.join()
    assert seen == [0] and held.hold() is False


def test_an_interrupt_while_a_spark_connect_stream_is_awaited_is_raised_as_its_response_arrives():
    """gRPC's channel lock, taken in Python: a KeyboardInterrupt raised inside a call can leave it
    held, and every later query of the kernel hangs (connectguard). A real gRPC server here: the
    interrupt comes while the main thread waits for the stream's next response, and is raised once
    that response is in; the channel still serves another thread's call."""
    from concurrent import futures

    import grpc

    from pyspark_kernel.runtime.connectguard import HoldInterrupts

    held = guard.HeldInterrupt()
    held.interrupt = Interrupted
    interrupted = []

    class InterruptOnSecond(grpc.UnaryStreamClientInterceptor):
        """The SIGINT handler's part (Notebook.on_interrupt), run as the main thread waits for the
        stream's second response."""

        def intercept_unary_stream(self, continuation, details, request):
            stream = continuation(details, request)
            yield next(stream)
            interrupted.append(held.hold())
            yield next(stream)

    handler = grpc.method_handlers_generic_handler("test.Service", {
        "Stream": grpc.unary_stream_rpc_method_handler(lambda request, context: iter([b"first", b"second"])),
        "Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b"pong"),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{port}"), HoldInterrupts(held), InterruptOnSecond()) as channel:
            responses = channel.unary_stream("/test.Service/Stream")(b"")
            assert next(responses) == b"first" and held.depth == 0
            with pytest.raises(Interrupted):
                next(responses)
            assert interrupted == [True] and not held.pending and held.depth == 0
            pinged = []
            worker = threading.Thread(target=lambda: pinged.append(channel.unary_unary("/test.Service/Ping")(b"", timeout=30)))
            worker.start()
            worker.join()
            assert pinged == [b"pong"]
            assert channel.unary_unary("/test.Service/Ping")(b"", timeout=30) == b"pong"  # nothing left pending
    finally:
        server.stop(None)


def test_when_a_spark_connect_server_dies_its_calls_close_and_its_channel_stays_open():
    """Closing a gRPC channel as another thread starts a call on it can crash the kernel (SIGSEGV,
    grpc/grpc#43455; seen as a shared kernel's death after kill -9 of its server). So the kernel
    closes its interceptor's calls instead: a stream awaited ends at once, every later call fails
    at once with gRPC's own closed-channel error, and the channel itself is never closed from the
    thread that saw the death."""
    from concurrent import futures

    import grpc

    from pyspark_kernel.runtime.connect import ConnectDriver
    from pyspark_kernel.runtime.connectguard import CLOSED, HoldInterrupts

    release = threading.Event()

    def stream(request, context):
        yield b"first"
        release.wait(20)  # a query still running on the server
        yield b"second"

    handler = grpc.method_handlers_generic_handler("test.Service", {
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b"pong"),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    closed = []

    class Client:
        def close(self):
            closed.append("the client's channel, from the lease's thread")

    class Session:
        client = Client()

    try:
        plain = grpc.insecure_channel(f"127.0.0.1:{port}")
        driver = ConnectDriver.__new__(ConnectDriver)
        driver.calls = HoldInterrupts(guard.HeldInterrupt())
        channel = grpc.intercept_channel(plain, driver.calls)
        responses = channel.unary_stream("/test.Service/Stream")(b"")
        assert next(responses) == b"first"
        threading.Timer(0.5, driver.after_death, args=(Session(), None)).start()  # the lease's thread
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            next(responses)
        assert ended.value.code() == grpc.StatusCode.CANCELLED and time.monotonic() - started < 10
        assert closed == []
        with pytest.raises(ValueError, match=re.escape(CLOSED)):
            channel.unary_unary("/test.Service/Ping")(b"", timeout=30)
        assert plain.unary_unary("/test.Service/Ping")(b"", timeout=30) == b"pong"  # still open
        plain.close()  # the main thread's, once no call starts on it
    finally:
        release.set()
        server.stop(None)


def test_a_call_that_fails_because_the_jvm_has_exited_raises_the_runtimes_error():
    died = diagnostics.SparkDiedError("The Spark driver JVM has exited: killed by signal 9")

    def refuse():
        raise ConnectionRefusedError(111, "Connection refused")

    client = FakeClient(refuse)
    guard.guard(client, guard.HeldInterrupt(), lambda: died)
    with pytest.raises(diagnostics.SparkDiedError, match="killed by signal 9") as raised:
        client.send_command("count")
    assert raised.value.__suppress_context__  # one error, not Py4J's chain


def test_a_failed_call_of_a_live_jvm_keeps_its_own_error():
    def refuse():
        raise ConnectionResetError(104, "reset")

    client = FakeClient(refuse)
    guard.guard(client, guard.HeldInterrupt(), lambda: None)
    with pytest.raises(ConnectionResetError):
        client.send_command("count")


def test_an_error_the_jvm_answered_with_is_never_taken_for_a_death():
    class Py4JJavaError(Exception):
        pass

    def fail():
        raise Py4JJavaError("AnalysisException")

    asked = []
    client = FakeClient(fail)
    guard.guard(client, guard.HeldInterrupt(), lambda: asked.append(1))
    with pytest.raises(Py4JJavaError):
        client.send_command("sql")
    assert asked == []  # the JVM was not even checked


def test_a_builders_options_are_set_now_or_named_for_a_restart():
    current = {"spark.master": "local[*]", "spark.app.name": "pyspark-local", "spark.sql.shuffle.partitions": "8", "spark.driver.memory": None}
    options_ = {"spark.master": "local[1]", "spark.app.name": "etl", "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"}
    settable, fixed = notebook.split_options(options_, current, lambda key: key.startswith("spark.sql."))
    assert settable == {"spark.sql.shuffle.partitions": "4"}
    assert fixed == {"spark.master": "local[1]", "spark.app.name": "etl", "spark.driver.memory": "4g"}


def test_options_the_session_already_has_are_left_alone():
    assert notebook.split_options({"spark.master": "local[*]"}, {"spark.master": "local[*]"}, lambda key: True) == ({}, {})


def test_the_notice_for_options_that_need_a_new_driver_is_one_line_with_the_command():
    notice = notebook.fixed_options_notice({"spark.app.name": "my etl", "spark.hadoop.fs.s3a.secret.key": "s3cr3t"})
    assert "\n" not in notice and "s3cr3t" not in notice
    assert notice == ("Using the kernel's Spark session; not applied, as they need a new driver: spark.app.name=my etl "
                      "spark.hadoop.fs.s3a.secret.key=*********(redacted) (to apply them: %spark restart --conf 'spark.app.name=my etl' "
                      "--conf 'spark.hadoop.fs.s3a.secret.key=*********(redacted)')")


class FakeConf:
    def __init__(self, pairs):
        self.pairs = pairs

    def getAll(self):
        return list(self.pairs.items())


@pytest.mark.parametrize("args, kwargs, expected", [
    ((), {}, {"spark.master": None, "spark.app.name": None}),
    (("local[2]", "etl"), {}, {"spark.master": "local[2]", "spark.app.name": "etl"}),
    ((), {"conf": FakeConf({"spark.master": "local[3]", "spark.executor.memory": "2g"})},
     {"spark.master": "local[3]", "spark.app.name": None, "spark.executor.memory": "2g"}),
    (("local[1]",), {"conf": FakeConf({"spark.master": "local[3]"})}, {"spark.master": "local[1]", "spark.app.name": None}),
])
def test_a_spark_context_call_is_read_as_spark_settings(args, kwargs, expected):
    assert entrypoints.context_options(args, kwargs) == expected


def test_a_module_is_patched_as_it_is_imported(tmp_path, monkeypatch):
    import sys

    (tmp_path / "patched_here.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    finder = entrypoints.PatchOnImport({"patched_here": lambda module: seen.append(module.VALUE)})
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    import patched_here  # noqa: F401

    assert seen == [1]
    assert sys.modules["patched_here"].__loader__.get_source("patched_here") == "VALUE = 1\n"  # the real loader's, still there
    monkeypatch.delitem(sys.modules, "patched_here")


@pytest.mark.parametrize("words, overrides", [
    ([], {}),
    (["--conf", "spark.driver.memory=4g"], {"spark.driver.memory": "4g"}),
    (["--conf=spark.a=b=c", "--conf", "spark.x="], {"spark.a": "b=c", "spark.x": ""}),
])
def test_restart_takes_conf_overrides(words, overrides):
    assert magics.parse_restart(words) == overrides


@pytest.mark.parametrize("words, problem", [
    (["--conf"], "unexpected '--conf'"),
    (["--conf", "driver.memory=4g"], "is not KEY=VALUE with a spark.* key"),
    (["--conf", "spark.driver.memory"], "is not KEY=VALUE"),
    (["now"], "unexpected 'now'"),
])
def test_a_bad_restart_line_is_one_clear_error(words, problem):
    with pytest.raises(magics.MagicError, match=problem):
        magics.parse_restart(words)


def test_log_takes_a_line_count():
    assert (magics.parse_log([]), magics.parse_log(["-n", "5"])) == (magics.LOG_LINES, 5)
    with pytest.raises(magics.MagicError, match="usage: %spark log"):
        magics.parse_log(["-n", "many"])


class Job:
    def __init__(self, status, stage_ids):
        self.status, self.stageIds = status, stage_ids


class Stage:
    def __init__(self, tasks, completed, active, failed=0, stage_id=0, name="count at <cell>:1"):
        self.numTasks, self.numCompletedTasks, self.numActiveTasks, self.numFailedTasks = tasks, completed, active, failed
        self.stageId, self.name = stage_id, name


class Tracker:
    def __init__(self, jobs, stages):
        self.jobs, self.stages = jobs, stages

    def getJobIdsForGroup(self, group):
        return list(self.jobs)

    def getJobInfo(self, job):
        return self.jobs.get(job)

    def getStageInfo(self, stage):
        return self.stages.get(stage)


def test_a_progress_display_still_waiting_on_the_jvm_at_the_cells_end_shows_nothing_after_it(monkeypatch):
    """Any message after the cell's end counts as the kernel's activity for Jupyter's kernel culler."""
    import IPython.display

    answer, asked, shown = threading.Event(), threading.Event(), []

    class SlowTracker(Tracker):
        def getJobIdsForGroup(self, group):
            if shown:  # the last look, at the cell's end: the JVM is slow to answer
                asked.set()
                answer.wait(30)
            return list(self.jobs)

    class Handle:
        def update(self, data, raw):
            shown.append(data["text/plain"])

    monkeypatch.setattr(IPython.display, "display", lambda data, raw, display_id: shown.append(data["text/plain"]) or Handle())
    monkeypatch.setattr(progress, "END_WAIT", 0.2)
    tracker = SlowTracker({0: Job("RUNNING", [0])}, {0: Stage(4, 1, 2)})
    context = type("Context", (), {"statusTracker": lambda self: tracker})()
    watched = progress.Progress(context, "g")
    watched.begin()
    assert asked.wait(30)  # the display is up, and its next look waits on the JVM
    watched.end()  # the cell ends: it waits END_WAIT, no longer
    count = len(shown)
    answer.set()
    watched.thread.join(30)
    assert not watched.thread.is_alive() and len(shown) == count == 1, shown


def test_the_progress_line_counts_jobs_stages_and_tasks():
    tracker = Tracker({0: Job("SUCCEEDED", [0]), 1: Job("RUNNING", [1])}, {0: Stage(4, 4, 0), 1: Stage(4, 1, 2, stage_id=1)})
    seen = {}
    jobs = progress.read_jobs(tracker, "g", seen, now=10.0)
    assert progress.describe(jobs, 3.2, final=False) == "Spark: [############........] jobs 1/2, stages 1/2, tasks 5/8 (2 running), 3 s"
    tracker.jobs[1].status = "FAILED"
    jobs = progress.read_jobs(tracker, "g", seen, now=12.5)
    assert progress.describe(jobs, 3.25, final=True) == "Spark: 2 job(s) 1 failed or cancelled, 5/8 tasks, 3.2 s"
    assert [job.seconds for job in jobs] == [0.0, 2.5]  # from when each was first seen to its end
    assert progress.describe(progress.read_jobs(Tracker({}, {}), "g", {}, now=1), 1, final=False) is None


def test_the_progress_display_has_a_bar_and_a_ui_link_per_job_and_escapes_what_spark_names():
    tracker = Tracker({3: Job("RUNNING", [5, 6])}, {5: Stage(4, 4, 0, stage_id=5), 6: Stage(8, 2, 3, failed=1, stage_id=6, name="collect at <b>x</b>.py:2")})
    assert progress.read_jobs(Tracker({1: Job("RUNNING", [0])}, {0: Stage(1, 0, 1, name="count at /tmp/ipykernel_7/331.py:1")}), "g", {}, 0)[0].description == "count at 331.py:1"
    jobs = progress.read_jobs(tracker, "g", {}, now=0)
    shown = progress.render_html(jobs, 1.0, final=False, ui="/user/ann/sparkui/4040/")
    assert '<a href="/user/ann/sparkui/4040/jobs/job/?id=3" target="_blank" rel="noopener">3</a>' in shown
    assert "collect at &lt;b&gt;x&lt;/b&gt;.py:2" in shown and "<b>x</b>" not in shown  # the last stage's call site, as text
    assert "6/12 tasks, 3 running, 1 failed" in shown and "<td>1/2</td>" in shown and "<td>running</td>" in shown
    assert [f"width:{width}%" in shown for width in ("50.0", "25.0", "8.3")] == [True, True, True]  # done, running, failed
    tracker.jobs[3].status = "SUCCEEDED"
    final = progress.render_html(progress.read_jobs(tracker, "g", {}, now=0), 2.0, final=True, ui=None)
    assert "<td>succeeded</td>" in final and "<a " not in final  # no UI, no links
    assert final.startswith('<div class="pyspark-kernel-progress"><div>Spark: 1 job(s) done, 6/12 tasks, 2.0 s</div>')


class ConnectStage:
    def __init__(self, tasks, completed, done):
        self.num_tasks, self.num_completed_tasks, self.done = tasks, completed, done


def test_connect_progress_makes_a_row_per_operation_and_marks_a_failed_cell():
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    shown = []

    class Display:
        handle = None

        def show(self, jobs, elapsed, final, ui):
            self.handle = True
            shown.append((progress.describe(jobs, elapsed, final), [(job.id, job.status, job.done, job.tasks, job.running) for job in jobs], ui))

    watched = progress.ConnectProgress(session=None)
    watched.display = Display()
    original, progress.time.monotonic = progress.time.monotonic, lambda: next(clock)
    try:
        watched.started = -1.0  # past the delay: the first report shows
        watched([ConnectStage(4, 1, False)], 2, "op-1", False)
        watched([ConnectStage(4, 4, True)], 0, "op-1", True)
        watched([ConnectStage(2, 0, False)], 1, "op-2", False)
        watched.session = type("Session", (), {"removeProgressHandler": lambda self, handler: None})()
        watched.end(error=KeyboardInterrupt())
    finally:
        progress.time.monotonic = original
    assert shown[0][1] == [(1, "RUNNING", 1, 4, 2)] and shown[0][2] is None
    assert shown[-1][1] == [(1, "SUCCEEDED", 4, 4, 0), (2, "FAILED", 0, 2, 1)]
    assert shown[-1][0].startswith("Spark: 2 job(s) 1 failed or cancelled, 4/6 tasks")


def test_the_idle_watch_stops_a_session_only_after_the_whole_quiet_time():
    now, busy, stops = [0.0], [False], []
    watch = idle.IdleWatch(15, lambda: busy[0], lambda: stops.append(now[0]) or True, clock=lambda: now[0])
    for at, in_use in ((0, False), (10, False), (12, True), (20, False), (34, False), (35, False), (36, False)):
        now[0], busy[0] = at, in_use
        watch.check()
    assert stops == [35]  # quiet from 20 on (the look at 12 saw a job); once, not again at 36
    # A cell that began and ended between two looks counts as use too.
    now[0], stops[:], used = 100.0, [], [0.0]
    watch = idle.IdleWatch(15, lambda: False, lambda: stops.append(now[0]) or True, last_used=lambda: used[0], clock=lambda: now[0])
    for at, cell_ended in ((100, None), (110, 112), (120, None), (126, None), (128, None)):
        now[0] = at
        used[0] = cell_ended or used[0]
        watch.check()
    assert stops == [128]  # 15 s after the cell that ended at 112, not after the first quiet look at 100


def test_the_status_of_a_kernel_that_has_not_started_spark():
    class Runtime:
        state, master, log, scratch = "idle", "local[*]", "/tmp/x/driver.log", "/tmp/x"
        conf = kernel_conf = {"spark.master": "local[*]"}
        environ = {"PYSPARK_PYTHON": "/venv/bin/python"}
        profile = StartProfile()

    runtime = Runtime()
    runtime.driver = DedicatedDriver(runtime)
    assert magics.status_lines(runtime) == ["state: idle", "master: local[*]", "RPC authentication: on: the driver's RPC and block transfers need a secret Spark makes for each session",
                                            "limits: none declared (no CPU_LIMIT or MEM_LIMIT)", "executor Python: /venv/bin/python", "JVM log: /tmp/x/driver.log"]
    runtime.environ = {**runtime.environ, "CPU_LIMIT": "2.5", "MEM_LIMIT": str(3 * 1024**3)}  # the hub's, inherited from the server
    assert magics.status_lines(runtime)[3] == "limits: CPU_LIMIT 2.5 (master local[2]); MEM_LIMIT 3 GiB (driver heap 1024m)"


def test_a_start_profile_times_each_step_from_its_mark_to_the_next():
    now = [10.0]
    timed = StartProfile(clock=lambda: now[0])
    timed.add(BEFORE_RUNTIME, 1.25)
    for step, at in (("loading pyspark", 10.0), ("launching the driver JVM", 10.5), ("creating the SparkContext", 14.0)):
        now[0] = at
        timed.mark(step)
    now[0] = 16.25
    timed.end()
    timed.end()  # a second end adds nothing
    assert timed.steps == [(BEFORE_RUNTIME, 1.25), ("loading pyspark", 0.5), ("launching the driver JVM", 3.5), ("creating the SparkContext", 2.25)]
    assert timed.lines()[2] == "  3.50 s  launching the driver JVM"


def test_the_process_age_is_this_processs_time_since_it_started():
    import psutil

    age = process_age()
    expected = time.time() - psutil.Process().create_time()
    assert age is not None and abs(age - expected) < 2


def test_the_shim_takes_its_directory_off_sys_path_before_the_runtime_starts_its_thread(tmp_path):
    """IPython removes the file's directory from sys.path when the file ends; removed under the start
    thread's import, that makes the thread skip an entry. The shim takes it off itself, first."""
    import shutil
    import subprocess
    import sys

    kernel = tmp_path / "a kernel"
    (kernel / "pyspark_kernel_runtime").mkdir(parents=True)
    shutil.copy(os.path.join(os.path.dirname(os.path.dirname(__file__)), "{{cookiecutter.kernel_name}}", "pyspark_startup.py"), kernel)
    (kernel / "pyspark_kernel_runtime" / "__init__.py").write_text(
        "import sys\ndef install(namespace):\n    namespace['seen'] = list(sys.path)\n")
    script = ("import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance()\n"
              f"shell.user_ns['__file__'] = {str(kernel / 'pyspark_startup.py')!r}\n"  # as IPython's exec_files sets it
              f"shell.safe_execfile({str(kernel / 'pyspark_startup.py')!r}, shell.user_ns, raise_exceptions=True)\n"
              f"assert {str(kernel)!r} not in shell.user_ns['seen'], shell.user_ns['seen']\n"
              f"assert {str(kernel)!r} not in sys.path, sys.path\n"
              "print('ok', len(shell.user_ns['seen']) == len(sys.path))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["ok", "True"], done.stdout + done.stderr


@pytest.mark.parametrize("environ, base", [
    ({}, None),
    ({"JUPYTERHUB_SERVICE_PREFIX": "/user/ann/"}, "/user/ann/"),
    ({"JUPYTERHUB_SERVICE_PREFIX": "/user/ann"}, "/user/ann/"),
    ({"JUPYTERHUB_SERVICE_PREFIX": "/user/j%C3%BCrgen/"}, "/user/j%C3%BCrgen/"),
    ({"PYSPARK_KERNEL_SERVER_URL": "https://hub.example.org/user/ann/", "JUPYTERHUB_SERVICE_PREFIX": "/user/ann/"}, "https://hub.example.org/user/ann/"),
    ({"PYSPARK_KERNEL_SERVER_URL": "http://[::1]:8888/"}, "http://[::1]:8888/"),
])
def test_the_servers_base_url_comes_from_the_hub_or_the_kernels_variable(environ, base):
    assert ui.server_base(environ) == base


@pytest.mark.parametrize("value", ["user/ann/", "/user/a b/", '/user/"><script>/', "/user/x'/", "javascript:alert(1)", "ftp://h/x/",
                                   "/x/?next=/evil", "/x/#top", "https://h o/x/"])
def test_a_base_url_that_is_no_url_path_is_refused_with_what_to_set(value):
    with pytest.raises(diagnostics.SparkStartError, match=r"^PYSPARK_KERNEL_SERVER_URL is .* not the Jupyter server's base URL \(set it to a path"):
        ui.server_base({"PYSPARK_KERNEL_SERVER_URL": value})


def test_under_a_server_the_ui_gets_a_port_chosen_now_and_the_proxy_base_naming_it():
    assert ui.ui_settings({}, None) == {}
    assert ui.ui_settings({}, "/user/ann/", pick_port=lambda: 40401) == {"spark.ui.port": "40401", "spark.ui.proxyBase": "/user/ann/sparkui/40401"}
    assert ui.ui_settings({"spark.ui.port": "4050"}, "https://h/user/ann/") == {"spark.ui.port": "4050", "spark.ui.proxyBase": "/user/ann/sparkui/4050"}
    assert ui.ui_settings({"spark.ui.enabled": "False"}, "/user/ann/") == {}
    assert "proxy" not in ui.proxy_base("/user/ann/", 4040).split("/")  # the UI's JavaScript reads an app id after one


@pytest.mark.parametrize("web_url, base, link", [
    (None, "/user/ann/", None),
    ("http://127.0.0.1:4041", None, "http://127.0.0.1:4041"),
    ("http://127.0.0.1:4041", "/user/ann/", "/user/ann/sparkui/4041/jobs/"),
    ("http://10.0.0.5:4041", "https://hub.example.org/user/ann/", "https://hub.example.org/user/ann/sparkui/4041/jobs/"),
])
def test_the_ui_link_goes_through_the_server_when_there_is_one(web_url, base, link):
    assert ui.ui_link(web_url, base) == link
    # The root the progress display's job links hang from: the link without its jobs/ page.
    root = ui.ui_root(web_url, base)
    assert root == (None if link is None else link.removesuffix("/jobs/"))
    assert progress.job_link(root, 7) == (None if link is None else f"{link.removesuffix('/jobs/')}/jobs/job/?id=7")


@pytest.mark.parametrize("line, expected", [
    ("", {"rows": 20, "output": None, "pandas": False, "limit": None, "params": []}),
    ("-n 5 -o out", {"rows": 5, "output": "out", "pandas": False, "limit": None, "params": []}),
    ("-o few --pandas --limit 100", {"rows": 20, "output": "few", "pandas": True, "limit": 100, "params": []}),
    ("--param a --param b", {"rows": 20, "output": None, "pandas": False, "limit": None, "params": ["a", "b"]}),
])
def test_sql_magic_lines_are_read(line, expected):
    assert sql.parse(line) == expected


@pytest.mark.parametrize("line, problem", [
    ("-n 0", "-n takes a number of rows above 0, not '0'"),
    ("-n", "-n needs a value"),
    ("-o 'a b'", "-o takes a Python name, not 'a b'"),
    ("-o out --pandas", "--pandas needs -o NAME and --limit ROWS"),
    ("--limit 5", "--limit is for --pandas"),
    ("--param x;drop", "--param takes a Python name"),
    ("SELECT 1", "unexpected 'SELECT'"),
])
def test_a_bad_sql_magic_line_is_one_line_that_says_what_to_write(line, problem):
    with pytest.raises(sql.SQLUsageError, match=re.escape(problem)):
        sql.parse(line)


@pytest.mark.parametrize("message, line", [
    ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found. SQLSTATE: 42P01; line 1 pos 14;\n'Project [*]\n"
     "+- 'UnresolvedRelation [nope], [], false\n\n\nJVM stacktrace:\norg.apache.spark.sql.AnalysisException: ...\n\tat org.apache.spark.sql.Foo(Foo.scala:1)",
     "[TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found. SQLSTATE: 42P01; line 1 pos 14;"),
    ("\n[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601 (line 1, pos 0)\n\n== SQL ==\nSELEC 1\n^^^\n",
     "[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601 (line 1, pos 0)"),
])
def test_sparks_refusal_of_a_query_is_cut_to_its_first_line(message, line):
    assert sql.short_error(message) == line


def test_sql_tables_escape_their_values():
    assert sql.table_html(["a<b"], [("<script>",), (None,)]) == "<table><thead><tr><th>a&lt;b</th></tr></thead><tbody><tr><td>&lt;script&gt;</td></tr><tr><td>null</td></tr></tbody></table>"
    assert sql.table_text(["id", "name"], [(1, "ann"), (22, None)]) == "id | name\n---+-----\n1  | ann \n22 | null"


def test_pyspark_gone_with_its_spark_home_is_named_as_the_cause_with_the_install_command(tmp_path):
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    (kernel_dir / "kernel.json").write_text('{"metadata": {"pyspark_kernel": {"spark_layout": "pip", "spark_version": "4.3.0"}}}')
    home = tmp_path / "env" / "lib" / "python3.11" / "site-packages" / "pyspark"  # gone with the package
    error = diagnostics.pyspark_missing({"SPARK_HOME": str(home)}, str(kernel_dir), ImportError("No module named 'pyspark'"),
                                        python="/env dir/bin/python", prefix="/env dir")
    assert (error.problem, error.fix) == ("pyspark is not installed in the kernel's environment /env dir",
                                          "install it: '/env dir/bin/python' -m pip install pyspark==4.3.0, then restart the kernel")
    # Without the generator's record, SPARK_HOME's place tells pip's layout; a Spark distribution's broken SPARK_HOME is named.
    assert diagnostics.pyspark_missing({"SPARK_HOME": str(home)}, str(tmp_path), ImportError("x"), python="py", prefix="/e").fix == \
        "install it: py -m pip install pyspark, then restart the kernel"
    with pytest.raises(diagnostics.SparkStartError, match="has no bin/spark-submit"):
        diagnostics.pyspark_missing({"SPARK_HOME": str(tmp_path / "spark-4.3.0")}, str(tmp_path), ImportError("x"))


def test_the_working_directory_class_is_one_java_5_class_in_a_jar_of_the_same_bytes_each_time(tmp_path):
    data = workdir.class_file()
    assert data[:4] == b"\xca\xfe\xba\xbe" and int.from_bytes(data[6:8], "big") == 49  # no stack map tables to write
    assert workdir.jar_bytes() == workdir.jar_bytes()
    jar = workdir.write_jar(str(tmp_path))
    with zipfile.ZipFile(jar) as opened:
        assert opened.namelist() == ["pyspark_kernel/NotebookFileSystem.class"] and opened.read(opened.namelist()[0]) == data
    assert os.listdir(tmp_path) == [workdir.JAR_NAME]  # written whole, by a rename
    assert workdir.server_settings({"spark.driver.extraClassPath": "/opt/mine.jar"}, jar) == {"spark.driver.extraClassPath": f"/opt/mine.jar:{jar}"}
    assert workdir.session_settings("/home/me/nb") == {"fs.file.impl": "pyspark_kernel.NotebookFileSystem", "fs.file.impl.disable.cache": "true",
                                                        "pyspark_kernel.working_dir": "/home/me/nb"}


@pytest.mark.parametrize(("conf", "directory", "expected"), [
    ({}, "/home/me/notebooks", {}),  # Spark's default reads right
    ({}, "/home/me/My Notebooks", {"spark.sql.warehouse.dir": "file:/home/me/My Notebooks/spark-warehouse"}),
    ({}, "/home/me/100%", {"spark.sql.warehouse.dir": "file:/home/me/100%/spark-warehouse"}),
    ({"spark.sql.warehouse.dir": "hdfs:///warehouse"}, "/home/me/My Notebooks", {}),  # the kernel's own
    ({"spark.sql.catalogImplementation": "hive"}, "/home/me/My Notebooks", {}),  # hive-site.xml's may stand
], ids=["plain", "space", "percent", "set", "hive"])
def test_a_warehouse_is_given_where_sparks_default_would_be_misread(conf, directory, expected):
    assert workdir.warehouse(conf, directory) == expected
