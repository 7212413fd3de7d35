"""Maven packages and local jars (runtime.dependencies): coordinates checked and merged, the Ivy
directory in the per-user cache, and live kernels that resolve real packages: on the standalone
cluster (create --packages) and, offline, from the cache and a profile's file:// repository
(%spark packages, %spark jars)."""

import json
import os
import re
import subprocess
import time
import types

import pytest

from pyspark_kernel import validate
from pyspark_kernel.errors import InputError
from pyspark_kernel.runtime import cache, dependencies
from pyspark_kernel.runtime.dependencies import DependencyError

from .conftest import ONE_EXECUTOR, PYTHON, assert_left_nothing, read_spec, run_cli, spark_conf_of
from .kernels import Kernel, kernel_environment

# spark-avro at PySpark 4.3.0's own version is not on Maven Central; 4.2.0 runs on it.
AVRO = "org.apache.spark:spark-avro_2.13:4.2.0"
MISSING = "org.nope:nothing_2.13:1.0"
TINY = "org.example:pkgtiny:1.0"


# -- checks and merges (fast)

@pytest.mark.parametrize("text", ["a:b", "a:b:c:d", "org.x:y:[1.0,2.0)", "$(touch x):b:1", "a b:c:1", "a:b:1;rm", "a:b:1\nc:d:2", ":b:1", "a:b:-1"])
def test_a_coordinate_that_is_not_group_artifact_version_is_refused(text):
    with pytest.raises(DependencyError, match="is not a Maven coordinate") as caught:
        dependencies.coordinates(text)
    assert caught.value.fix == dependencies.COORDINATE_FIX


def test_coordinates_come_from_words_and_comma_separated_text():
    assert dependencies.coordinates(["a.b:c_2.13:1.0,d:e:2.0-SNAPSHOT", " f:g:3+build "]) == ["a.b:c_2.13:1.0", "d:e:2.0-SNAPSHOT", "f:g:3+build"]


def test_packages_merge_each_module_once_the_later_version_in_its_place():
    assert dependencies.merge_packages("a:b:1,c:d:1", ["e:f:1", "a:b:2", "c:d:1"]) == "a:b:2,c:d:1,e:f:1"
    assert dependencies.merge_packages(None, ["a:b:1"]) == "a:b:1"


def test_jars_merge_each_path_once(tmp_path):
    assert dependencies.merge_jars("/x.jar, /y.jar", ["/y.jar", "/z.jar"]) == "/x.jar,/y.jar,/z.jar"


def test_a_jar_must_exist_and_be_a_zip_without_a_comma(tmp_path):
    (tmp_path / "plain.jar").write_text("not a zip")
    (tmp_path / "a,b.jar").write_bytes(b"")
    for name, message in [("gone.jar", "does not exist"), ("plain.jar", "is not a jar"), ("a,b.jar", "has a comma")]:
        with pytest.raises(DependencyError, match=message):
            dependencies.check_jar(name, str(tmp_path))


IVY_REPORT = """:: resolving dependencies :: org.apache.spark#spark-submit-parent-23be1949;1.0
\tconfs: [default]
:: problems summary ::
\t\t::          UNRESOLVED DEPENDENCIES         ::
\t\t:: org.nope#nothing_2.13;1.0: not found
\t\t:: org.other#thing;2.0: not found
Exception in thread "main" java.lang.RuntimeException: [unresolved dependency: org.nope#nothing_2.13;1.0: not found]
"""


def test_ivys_report_names_each_unresolved_coordinate():
    error = dependencies.resolution_error(IVY_REPORT, {"spark.jars.repositories": "file:///repo"}, 1)
    assert error.unresolved == (("org.nope:nothing_2.13:1.0", "not found"), ("org.other:thing:2.0", "not found"))
    assert str(error).startswith("org.nope:nothing_2.13:1.0 (not found), org.other:thing:2.0 (not found): not resolved from Maven Central and file:///repo (")
    assert "\n" not in str(error)


OFFLINE_REPORT = """\tHost repos.spark-packages.org not found. url=https://repos.spark-packages.org/x.pom
\tHost repo1.maven.org not found. url=https://repo1.maven.org/maven2/org/apache/spark/spark-protobuf_2.13/4.2.0/spark-protobuf_2.13-4.2.0.pom
\t==== central: tried
\t  https://bob:hunter2@repo.example/maven/org/apache/spark/spark-protobuf_2.13/4.2.0/spark-protobuf_2.13-4.2.0.pom
\t\t:: org.apache.spark#spark-protobuf_2.13;4.2.0: not found
"""


def test_an_unreachable_repository_is_named_in_the_fix_and_a_repositorys_password_never_shown(tmp_path):
    conf = {"spark.jars.repositories": "https://bob:hunter2@repo.example/maven"}
    error = dependencies.resolution_error(OFFLINE_REPORT, conf, 1)
    assert "hunter2" not in str(error) and "Maven Central and https://***@repo.example/maven" in str(error)
    assert dependencies.unreachable(OFFLINE_REPORT.splitlines()[0]) is None  # Spark's spark-packages.org alone: no network problem
    assert error.fix.startswith("check that Maven Central and https://***@repo.example/maven can be reached, where Ivy found no host repo1.maven.org; or check")
    # No module named: the fix says where the resolver's output is, when the kernel kept it.
    log = tmp_path / "driver.log"
    dependencies.keep_output(str(log), OFFLINE_REPORT.replace(":: org.apache", "org.apache") + "Exception: boom\n")
    error = dependencies.resolution_error("Exception: boom https://bob:hunter2@x/", conf, 1, str(log))
    assert "hunter2" not in str(error) and "hunter2" not in log.read_text() and "above" not in error.fix
    assert error.fix.endswith("%spark log shows the resolver's output") and "Exception: boom" in log.read_text()


def test_a_restart_that_changes_the_packages_resolves_them_first_and_keeps_the_session_when_they_do_not(monkeypatch):
    from pyspark_kernel.runtime import magics
    from pyspark_kernel.runtime.state import State

    resolved, restarted = [], []

    def resolve(conf, environ, spark_home, java, log_path=None):
        resolved.append(conf[dependencies.PACKAGES])
        raise DependencyError("org.nope:nothing_2.13:1.0 (not found): not resolved from Maven Central", dependencies.UNRESOLVED_FIX)

    monkeypatch.setattr(dependencies, "resolve", resolve)
    monkeypatch.setattr(magics, "check_spark_home", lambda environ: "/spark")
    monkeypatch.setattr(magics, "find_java", lambda environ: "/java")
    runtime = types.SimpleNamespace(state=State.READY, driver=types.SimpleNamespace(has_context=True), kernel_conf={"spark.master": "local[2]"},
                                    conf={"spark.master": "local[2]"}, environ={}, log="/nonexistent/driver.log", check_alive=lambda: None)
    notebook = types.SimpleNamespace(runtime=runtime, restart=restarted.append)
    with pytest.raises(magics.MagicError, match=r"^%spark restart: org.nope:nothing_2.13:1.0 \(not found\)"):
        magics.run(notebook, f"restart --conf {dependencies.PACKAGES}={MISSING}")
    assert resolved == [MISSING] and restarted == []
    magics.run(notebook, "restart --conf spark.driver.memory=2g")  # nothing to resolve
    runtime.state = State.FAILED  # no session to keep: the restart's own start says what is wrong
    magics.run(notebook, f"restart --conf {dependencies.PACKAGES}={MISSING}")
    assert resolved == [MISSING] and restarted == [{"spark.driver.memory": "2g"}, {dependencies.PACKAGES: MISSING}]


def test_a_shared_driver_kernel_is_refused_packages_with_a_fix_that_works():
    with pytest.raises(InputError, match=r"^ERROR: packages: the notebooks of a shared-driver kernel share one Spark Connect server.*\(use --spark_driver dedicated\)$"):
        validate.merge_packages({}, "a:b:1", "local", "shared")
    from pyspark_kernel.runtime import magics

    for options, fix in [({"spark_driver": "shared"}, "(use a kernel created with --spark_driver dedicated)"), ({}, "where the server starts, or use")]:
        runtime = types.SimpleNamespace(driver=types.SimpleNamespace(has_context=False), options=options)
        with pytest.raises(DependencyError, match=re.escape(fix)):
            magics.refuse_without_own_driver(runtime, "jars")


def test_the_packages_answer_merges_into_the_layers_spark_jars_packages():
    assert validate.check_packages(" a:b:1 , c:d:2,a:b:1") == "a:b:1,c:d:2"
    conf = validate.merge_packages({"spark.jars.packages": "a:b:0,x:y:1"}, "a:b:1,c:d:2", "local", "dedicated")
    assert conf["spark.jars.packages"] == "a:b:1,x:y:1,c:d:2"
    assert validate.merge_packages({"spark.x": "1"}, "", "local", "dedicated") == {"spark.x": "1"}
    with pytest.raises(InputError, match="ERROR: packages: spark.jars.packages: 'nope' is not a Maven coordinate"):
        validate.merge_packages({"spark.jars.packages": "nope"}, "", "local", "dedicated")
    with pytest.raises(InputError, match="ERROR: packages: a Spark Connect server loads its own packages"):
        validate.merge_packages({}, "a:b:1", "connect", None)


def test_create_refuses_a_bad_coordinate_in_one_line_and_leaves_nothing(kernels_dir):
    done = run_cli("create", "-k", "pkg-bad", "-d", str(kernels_dir), "--packages", f"{AVRO},$(touch /tmp/pkg-injected)")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("ERROR: packages: '$(touch /tmp/pkg-injected)' is not a Maven coordinate (write GROUP:ARTIFACT:VERSION"), done.stderr
    assert os.listdir(kernels_dir) == [] and not os.path.exists("/tmp/pkg-injected")


def test_create_merges_its_packages_with_the_spark_settings_and_records_the_answer(kernels_dir):
    done = run_cli("create", "-k", "pkg-merged", "-d", str(kernels_dir), "--packages", AVRO, "--spark.jars.packages=org.x:y_2.13:1.0,org.apache.spark:spark-avro_2.13:4.0.0")
    assert done.returncode == 0, done.stderr
    spec = read_spec(kernels_dir / "pkg-merged")
    assert spark_conf_of(spec)["spark.jars.packages"] == f"org.x:y_2.13:1.0,{AVRO}"
    assert spec["metadata"]["pyspark_kernel"]["answers"]["packages"] == AVRO


def test_the_ivy_directory_is_one_cache_entry_kept_while_a_kernel_uses_it(tmp_path):
    environ = {"XDG_CACHE_HOME": str(tmp_path), cache.LIMIT_VARIABLE: "1K"}
    ivy = tmp_path / "pyspark-kernel" / "ivy"
    (ivy / "jars").mkdir(parents=True)
    (ivy / "jars" / "a.jar").write_bytes(b"x" * 3000)
    cache.mark_used(str(ivy), ())
    [entry] = cache.read_entries(environ)
    assert (entry.kind, entry.size, entry.path) == (cache.IVY_KIND, 3000, str(ivy))
    cache.claim_ivy(environ)  # this process stands for a kernel whose driver loads its jars
    assert cache.prune(environ) == [] and ivy.is_dir()
    users = tmp_path / "pyspark-kernel" / cache.IVY_USERS
    for record in users.iterdir():
        record.write_text(f"{os.uname().nodename} 999999999\n")  # a kernel that has gone
    [(removed, reason)] = cache.prune(environ)
    assert removed.path == str(ivy) and "least recently used" in reason
    assert not ivy.exists() and not (tmp_path / "pyspark-kernel" / "ivy.json").exists() and list(users.iterdir()) == []


# -- real resolutions

def build_jars(work):
    """Two tiny jars: pkgtest.FromRepo, in a Maven repository's layout (jar and pom) under
    work/repo, and pkgtest.FromJar, a plain jar; (repository URL, the plain jar)."""
    source = work / "src" / "pkgtest"
    source.mkdir(parents=True)
    for name in ("FromRepo", "FromJar"):
        (source / f"{name}.java").write_text(f'package pkgtest;\npublic class {name} {{ public static String greet() {{ return "{name} says hi"; }} }}\n')
    classes = work / "classes"
    subprocess.run(["javac", "--release", "17", "-d", str(classes), *map(str, source.glob("*.java"))], check=True, capture_output=True)
    module = work / "repo" / "org" / "example" / "pkgtiny" / "1.0"
    module.mkdir(parents=True)
    subprocess.run(["jar", "cf", str(module / "pkgtiny-1.0.jar"), "-C", str(classes), "pkgtest/FromRepo.class"], check=True)
    (module / "pkgtiny-1.0.pom").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion><groupId>org.example</groupId>'
        "<artifactId>pkgtiny</artifactId><version>1.0</version><packaging>jar</packaging></project>\n")
    plain = work / "pkg-plain.jar"
    subprocess.run(["jar", "cf", str(plain), "-C", str(classes), "pkgtest/FromJar.class"], check=True)
    return (work / "repo").as_uri(), plain


def team_profile(path, repository, master="local[2]"):
    """A team's profile naming its own repository (spark.jars.repositories), as HOCON."""
    path.write_text(f'spark {{\n  master = "{master}"\n  conf {{ "spark.jars.repositories" = "{repository}" }}\n}}\n')
    return path


def fresh_cache(tmp_path):
    """A per-user cache of the test's own (so the first resolution downloads), sharing the test run's
    class-data-sharing archives (a new one would cost a slow start and 150 MB)."""
    root = tmp_path / "cache"
    (root / "pyspark-kernel").mkdir(parents=True)
    shared = os.path.join(os.environ["XDG_CACHE_HOME"], "pyspark-kernel", "cds")
    os.makedirs(shared, exist_ok=True)
    os.symlink(shared, root / "pyspark-kernel" / "cds")
    return root


@pytest.mark.e2e
def test_doctor_resolves_a_packages_from_a_profiles_file_repository_and_names_one_that_does_not(kernels_dir, tmp_path):
    repository, _ = build_jars(tmp_path)
    profile = team_profile(tmp_path / "team.conf", repository)
    environ = {**os.environ, "XDG_CACHE_HOME": str(fresh_cache(tmp_path))}
    for name, package in [("pkg-doctor", TINY), ("pkg-doctor-bad", f"{TINY},{MISSING}")]:
        done = run_cli("create", "-k", name, "-d", str(kernels_dir), "--profile", str(profile), "--packages", package, env=environ)
        assert done.returncode == 0, done.stderr
    good = run_cli("doctor", "pkg-doctor", "-d", str(kernels_dir), env=environ)
    assert f"OK packages: {TINY} resolve (" in good.stdout, good.stdout
    bad = run_cli("doctor", "pkg-doctor-bad", "-d", str(kernels_dir), env=environ)
    lines = [line for line in bad.stdout.splitlines() if line.startswith(("OK packages", "PROBLEM packages"))]
    assert lines == [f"PROBLEM packages: {MISSING}: not found in Maven Central and {repository} ({dependencies.UNRESOLVED_FIX})"], bad.stdout
    assert bad.returncode == 1


def offline(kernel_json):
    """Start the kernel in a network namespace of its own with nothing but a loopback: any download fails."""
    spec = json.loads(kernel_json.read_text())
    spec["argv"] = ["unshare", "-n", "/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sh", *spec["argv"]]
    kernel_json.write_text(json.dumps(spec))


def timed(kernel, code, timeout=300):
    started = time.monotonic()
    cell = kernel.run(code, timeout=timeout)
    return cell, time.monotonic() - started


@pytest.mark.e2e
def test_packages_reach_a_clusters_executors_and_a_second_kernel_resolves_them_offline_from_the_cache(kernels_dir, tmp_path, standalone_cluster):
    """One kernel on the standalone cluster, made with create --packages, downloads spark-avro into
    the per-user cache and writes and reads Avro on the executors. A second kernel, in a network
    namespace without a network, adds spark-avro (from that cache) and a package of its profile's
    file:// repository with %spark packages, is refused a coordinate that does not resolve while its
    session goes on, and adds a local jar with %spark jars."""
    repository, plain_jar = build_jars(tmp_path)
    cache_home = fresh_cache(tmp_path)
    avro_dir = tmp_path / "avro"
    started = []
    try:
        flags = ("--profile", "standalone", "--spark_master", standalone_cluster, "--executor_python", PYTHON, "--spark.executor.memory=512m", ONE_EXECUTOR)
        done = run_cli("create", "-k", "pkg-cluster", "-d", str(kernels_dir), *flags, "--packages", AVRO)
        assert done.returncode == 0, done.stderr
        tmp_dir = tmp_path / "tmp-pkg-cluster"
        tmp_dir.mkdir()
        begun = time.monotonic()
        kernel = Kernel(kernels_dir, "pkg-cluster", kernel_environment(tmp_dir, XDG_CACHE_HOME=str(cache_home)))
        started.append((kernel, "pkg-cluster", tmp_dir))
        cell = kernel.run(f"spark.range(40).selectExpr('id', 'id * 2 AS twice').repartition(2).write.format('avro').save({str(avro_dir)!r})\n"
                          f"print('AVRO', spark.read.format('avro').load({str(avro_dir)!r}).selectExpr('sum(twice)').first()[0], sc.master)")
        first_start = time.monotonic() - begun
        assert f"AVRO 1560 {standalone_cluster}" in cell.text, cell.messages
        assert list(avro_dir.glob("part-*.avro")), "no Avro files written"
        status = kernel.run("%spark status").text
        assert f"packages: {AVRO} (resolved into {cache_home}/pyspark-kernel/ivy)" in status, status
        ivy = cache_home / "pyspark-kernel" / "ivy"
        assert (ivy / "jars" / "org.apache.spark_spark-avro_2.13-4.2.0.jar").is_file()
        assert any(entry.kind == cache.IVY_KIND for entry in cache.read_entries({"XDG_CACHE_HOME": str(cache_home)}))
        print(f"first start with {AVRO} resolved (downloaded): {first_start:.1f} s to the first Avro result")

        if os.geteuid() != 0:
            pytest.skip("a kernel without a network (unshare -n) needs root (CI runs as root)")
        profile = team_profile(tmp_path / "team.conf", repository)
        done = run_cli("create", "-k", "pkg-offline", "-d", str(kernels_dir), "--profile", str(profile))
        assert done.returncode == 0, done.stderr
        offline(kernels_dir / "pkg-offline" / "kernel.json")
        tmp_dir = tmp_path / "tmp-pkg-offline"
        tmp_dir.mkdir()
        kernel = Kernel(kernels_dir, "pkg-offline", kernel_environment(tmp_dir, XDG_CACHE_HOME=str(cache_home), SPARK_LOCAL_IP="127.0.0.1"), transport="ipc")
        started.append((kernel, "pkg-offline", tmp_dir))
        app = kernel.run("kept = 41\nprint('APP', spark.sparkContext.applicationId)").stream.split()[-1]

        refused, seconds = timed(kernel, f"%spark packages {MISSING}")
        # IPython prints a UsageError as one line on stderr.
        assert refused.stream.splitlines()[0].startswith(f"resolving {MISSING} "), refused.stream
        [line] = [line for line in refused.stream.splitlines() if line.startswith("UsageError: ")]
        assert line.startswith(f"UsageError: %spark packages: {MISSING} (") and f"not resolved from Maven Central and {repository}" in line, refused.stream
        assert len(refused.stream.strip().splitlines()) == 2, refused.stream
        print(f"an unresolvable coordinate refused, offline, in {seconds:.1f} s")
        assert kernel.run("print('SAME', spark.sparkContext.applicationId, spark.range(5).count(), kept)").stream.split() == ["SAME", app, "5", "41"]

        added, seconds = timed(kernel, f"%spark packages {AVRO} {TINY}")
        assert added.reply["status"] == "ok", added.messages
        resolved = next(line for line in added.stream.splitlines() if line.startswith("resolved in "))
        print(f"%spark packages offline from the cache and the file:// repository: {resolved.split(';')[0]}, {seconds:.1f} s with the restart")
        cell = kernel.run(f"print('READ', spark.read.format('avro').load({str(avro_dir)!r}).count(), kept, spark._jvm.pkgtest.FromRepo.greet(), "
                          "spark.sparkContext.applicationId != " + repr(app) + ")")
        assert "READ 40 41 FromRepo says hi True" in cell.text, cell.messages

        missing = kernel.run("%spark jars /nonexistent/x.jar")
        assert missing.stream.strip() == "UsageError: %spark jars: /nonexistent/x.jar does not exist (give the path of a .jar file)", missing.stream
        assert kernel.run(f"%spark jars {plain_jar}").reply["status"] == "ok"
        cell = kernel.run("print('JARS', spark._jvm.pkgtest.FromJar.greet(), spark._jvm.pkgtest.FromRepo.greet())")
        assert "JARS FromJar says hi FromRepo says hi" in cell.text, cell.messages  # the packages stay in force
        status = kernel.run("%spark status").text
        assert f"packages: {AVRO}, {TINY} (resolved into" in status and f"jars: {plain_jar}" in status, status
    finally:
        for kernel, _name, _tmp in started:
            kernel.stop()
        for _kernel, name, tmp_dir in started:
            assert_left_nothing(name, tmp_dir)
