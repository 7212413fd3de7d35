"""The per-user cache (runtime.cache and `pyspark-kernel cache`): what a deleted Java, Spark
installation or environment left goes, then the least recently used beyond the limit; an archive
being written and the one a kernel uses stay."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pyspark_kernel.runtime import cache, jvm

MIB = 1024 ** 2

SUPPORTED_LIMITS = [("2G", 2 * 1024 ** 3), ("500M", 500 * MIB), ("1.5g", int(1.5 * 1024 ** 3)), ("4GiB", 4 * 1024 ** 3),
                    ("123", 123), (" 10 K ", 10 * 1024), ("0", 0)]
UNSUPPORTED_LIMITS = ["two gigabytes", "-1G", "2X", "G", "1e9", "2G;rm -rf /"]


@pytest.mark.parametrize("text, size", SUPPORTED_LIMITS)
def test_supported_limits(text, size):
    assert cache.parse_limit(text) == size
    assert cache.limit({cache.LIMIT_VARIABLE: text}) == size


@pytest.mark.parametrize("text", UNSUPPORTED_LIMITS)
def test_unsupported_limits(text):
    with pytest.raises(ValueError, match=r"is not a size \(write it in bytes or with K, M, G or T"):
        cache.parse_limit(text)


def test_without_a_setting_the_limit_is_the_documented_one():
    assert cache.limit({}) == cache.DEFAULT_LIMIT == 2 * 1024 ** 3


def put(environ, part, name, size, needs, used):
    """An entry as a kernel leaves it: the file, and its record naming what it was made from."""
    directory = os.path.join(cache.cache_root(environ), part)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.truncate(size)
    cache.write_record(path, needs)
    if part == "cds":  # the watchdog records the size of an archive written whole
        with open(path + ".size", "w", encoding="utf-8") as handle:
            handle.write(f"{size}\n")
    os.utime(path, (used, used))
    os.utime(cache.record_path(path), (used, used))
    return path


@pytest.fixture
def environ(tmp_path):
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_what_a_deleted_environment_java_or_spark_left_is_removed_and_the_rest_kept(tmp_path, environ):
    now = time.time()
    alive = tmp_path / "alive-env"
    alive.mkdir()
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("")
    spark = tmp_path / "spark"
    spark.mkdir()
    kept = [put(environ, "environments", "a-2.tar.gz", MIB, [str(alive)], now - 60),
            put(environ, "cds", "spark-kept.jsa", MIB, [str(java), str(spark)], now - 60)]
    gone = [put(environ, "environments", "b-2.tar.gz", MIB, [str(tmp_path / "deleted-env")], now),
            put(environ, "cds", "spark-nojava.jsa", MIB, [str(tmp_path / "old-jdk" / "bin" / "java"), str(spark)], now),
            put(environ, "cds", "spark-nospark.jsa", MIB, [str(java), str(tmp_path / "deleted-env" / "pyspark")], now)]
    removed = cache.prune(environ)
    assert sorted(entry.path for entry, _ in removed) == sorted(gone)
    assert {reason for _, reason in removed} == {f"{tmp_path / 'deleted-env'} no longer exists", f"{tmp_path / 'old-jdk' / 'bin' / 'java'} no longer exists",
                                                 f"{tmp_path / 'deleted-env' / 'pyspark'} no longer exists"}
    assert all(os.path.exists(path) and os.path.exists(cache.record_path(path)) for path in kept)
    assert not any(os.path.exists(path) or os.path.exists(cache.record_path(path)) for path in gone)


def test_over_the_limit_the_least_recently_used_go_first_but_never_the_one_in_use(tmp_path, environ):
    now = time.time()
    paths = [put(environ, "cds", f"spark-{age}.jsa", 10 * MIB, [str(tmp_path)], now - age * 60) for age in (4, 3, 2, 1)]
    oldest, older, newer, newest = paths
    environ[cache.LIMIT_VARIABLE] = "25M"
    removed = cache.prune(environ, keep=[oldest])  # the oldest is this kernel's: it stays
    assert [entry.path for entry, _ in removed] == [older, newer]
    assert {reason for _, reason in removed} == {"least recently used, over the limit of 25.0 MiB"}
    assert sorted(entry.path for entry in cache.read_entries(environ)) == sorted([oldest, newest])
    assert cache.total(cache.read_entries(environ)) <= 25 * MIB


def test_a_use_makes_an_entry_the_most_recent(tmp_path, environ):
    now = time.time()
    first = put(environ, "cds", "spark-first.jsa", 10 * MIB, [str(tmp_path)], now - 120)
    second = put(environ, "cds", "spark-second.jsa", 10 * MIB, [str(tmp_path)], now - 60)
    cache.mark_used(first, [str(tmp_path)])
    environ[cache.LIMIT_VARIABLE] = "15M"
    assert [entry.path for entry, _ in cache.prune(environ)] == [second]


def test_an_archive_being_written_is_never_removed(tmp_path, environ):
    writing = put(environ, "cds", "spark-writing.jsa", 10 * MIB, [str(tmp_path / "gone")], time.time() - 3600)
    with open(writing + ".lock", "w", encoding="utf-8") as lock:
        lock.write(f"{socket.gethostname()} {os.getpid()}\n")  # a live holder: this process
    environ[cache.LIMIT_VARIABLE] = "1M"
    assert cache.prune(environ) == [] and cache.clear(environ) == []
    assert os.path.exists(writing)


def test_records_for_archives_not_yet_written_stay_and_old_leftovers_go(tmp_path, environ):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    java, spark = tmp_path / "java", tmp_path / "spark"
    java.write_text("")
    spark.mkdir()
    # A kernel claims the archive: its record is there before the JVM has written the archive.
    options = jvm.cds_java_options(17, "spark-k", str(scratch), environ, os.getpid(), needs=[str(java), str(spark)])
    assert options[0].startswith("-XX:ArchiveClassesAtExit=")
    directory = jvm.cds_dir(environ)
    record = os.path.join(directory, "spark-k.jsa.json")
    with open(record, encoding="utf-8") as handle:
        assert json.load(handle) == {"needs": [str(java), str(spark)]}
    day_old = time.time() - cache.LEFTOVER_AGE - 60
    crashed = os.path.join(directory, "spark-x.jsa.4242.partial")
    fresh = os.path.join(directory, "spark-y.jsa.4243.partial")
    orphan = os.path.join(directory, "spark-z.jsa.json")
    for path in (crashed, fresh, orphan):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("{}")
    os.utime(crashed, (day_old, day_old))
    cache.prune(environ)
    assert os.path.exists(record) and os.path.exists(fresh)
    assert not os.path.exists(crashed) and not os.path.exists(orphan)


def test_an_archive_goes_with_its_size_record_and_a_set_aside_one_goes_at_the_next_prune(tmp_path, environ):
    gone = put(environ, "cds", "spark-gone.jsa", MIB, [str(tmp_path / "gone")], time.time())
    kept = put(environ, "cds", "spark-kept.jsa", MIB, [str(tmp_path)], time.time())
    aside = kept + ".set-aside.4242"
    with open(aside, "wb") as handle:
        handle.truncate(MIB)
    orphan = os.path.join(os.path.dirname(kept), "spark-orphan.jsa.size")
    with open(orphan, "w", encoding="utf-8") as handle:
        handle.write("1\n")
    assert [entry.path for entry, _ in cache.prune(environ)] == [gone]
    assert sorted(os.listdir(os.path.dirname(kept))) == ["spark-kept.jsa", "spark-kept.jsa.json", "spark-kept.jsa.size"]


def test_mapping_an_archive_marks_it_used(tmp_path, environ):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    archive = put(environ, "cds", "spark-k.jsa", MIB, [str(tmp_path)], time.time() - 3600)
    assert jvm.cds_java_options(17, "spark-k", str(scratch), environ, os.getpid(), needs=[str(tmp_path)])[0] == f"-XX:SharedArchiveFile={archive}"
    assert time.time() - cache.Entry(archive, "archive").used < 60


def run_cli(*args, environ):
    return subprocess.run([sys.executable, "-m", "pyspark_kernel", "cache", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **environ})


def test_the_cache_command_shows_prunes_and_clears_with_sizes(tmp_path, environ):
    now = time.time()
    alive = tmp_path / "env"
    alive.mkdir()
    kept = put(environ, "environments", "a-2.tar.gz", 3 * MIB, [str(alive)], now)
    gone = put(environ, "cds", "spark-old.jsa", 5 * MIB, [str(tmp_path / "deleted")], now - 60)
    shown = run_cli(environ=environ)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{cache.cache_root(environ)}: 8.0 MiB in 2 entries, limit 2.0 GiB ({cache.LIMIT_VARIABLE})"
    assert lines[1].split() == ["KIND", "SIZE", "LAST", "USED", "STATE", "FILE", "MADE", "FROM"]
    assert "environment" in lines[2] and "3.0 MiB" in lines[2] and " ok " in lines[2] and str(alive) in lines[2]
    assert "archive" in lines[3] and "5.0 MiB" in lines[3] and f"gone: {tmp_path / 'deleted'}" in lines[3]

    pruned = run_cli("prune", environ=environ)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines() == [f"Removed {gone} (5.0 MiB): {tmp_path / 'deleted'} no longer exists",
                                          "Freed 5.0 MiB; the cache holds 3.0 MiB in 1 entry"]
    cleared = run_cli("clear", environ=environ)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.splitlines() == [f"Removed {kept} (3.0 MiB)", "Freed 3.0 MiB"]
    assert cache.read_entries(environ) == [] and os.listdir(os.path.join(cache.cache_root(environ), "environments")) == []


def test_a_bad_limit_is_one_error_line_and_removes_nothing(tmp_path, environ):
    entry = put(environ, "cds", "spark-old.jsa", MIB, [str(tmp_path / "deleted")], time.time())
    for action in ("show", "prune"):
        done = run_cli(action, environ={**environ, cache.LIMIT_VARIABLE: "2X"})
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr == (f"ERROR: {cache.LIMIT_VARIABLE}: '2X' is not a size (write it in bytes or with K, M, G or T, for example 4G)\n")
    assert os.path.exists(entry)


def environment_with_its_own_pyspark(root):
    """A virtual environment whose pyspark directory is its own (its entries link to the installed
    pyspark's), so that its Spark installation is another one, gone when the environment is."""
    import pyspark

    from .conftest import venv_with_project_packages

    venv = venv_with_project_packages(root, ("pyspark",))
    site = next((venv / "lib").glob("python3*/site-packages"))
    installed = os.path.dirname(pyspark.__file__)
    (site / "pyspark").mkdir()
    for entry in os.listdir(installed):
        if entry != "__pycache__":
            os.symlink(os.path.join(installed, entry), site / "pyspark" / entry)
    for entry in os.listdir(os.path.dirname(installed)):
        if entry.startswith("pyspark-") and entry.endswith(".dist-info"):
            os.symlink(os.path.join(os.path.dirname(installed), entry), site / entry)
    return venv, os.path.realpath(site / "pyspark")


def cds_files(environ):
    return sorted(os.listdir(os.path.join(cache.cache_root(environ), "cds")))


def record_needs(environ, name):
    """What the record ``name`` in the archive cache says its archive needs: read here, as the
    record of an archive that was never written is no cache entry."""
    with open(os.path.join(cache.cache_root(environ), "cds", name), encoding="utf-8") as handle:
        return json.load(handle)["needs"]


DELETED = 1  # environments whose kernels ran, then were deleted: one stands for any number


@pytest.mark.e2e
def test_after_kernels_of_deleted_environments_one_more_start_leaves_the_cache_within_its_limit(tmp_path, kernels_dir):
    """An afternoon with a few environments: each kernel leaves its class-data-sharing archive and
    its record; the environments are deleted; the next kernel start removes what they left. The
    kernels only start Spark (no job, no warm-up): that is what leaves the archive, and it keeps
    the archives cheap to write. One deleted environment stands for any number (each costs a JVM
    that writes its archive, 20 s of CPU). A JVM that exits before its archive is
    written leaves its record alone (the next start writes the archive): such a record must go too."""
    import shutil

    from .conftest import assert_no_jvm_left, make_kernel
    from .kernels import Kernel, kernel_environment, wait_until

    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    env = kernel_environment(tmp_dir, **environ)
    made = [environment_with_its_own_pyspark(tmp_path / f"env{n}") for n in range(DELETED + 1)]
    homes = [home for _, home in made]
    for n, (venv, _) in enumerate(made):
        make_kernel(kernels_dir, f"cache{n}", "-e", str(venv), "--warm_up", "off")
    kernels = []
    try:
        kernels = [Kernel(kernels_dir, f"cache{n}", env, wait=False) for n in range(DELETED)]
        for kernel in kernels:
            kernel.wait_for_ready()
        for kernel in kernels:
            cell = kernel.run("print(spark.version)", timeout=600)
            assert cell.error is None and cell.stream.strip(), cell.text
    finally:
        for kernel in kernels:
            kernel.stop()
    for n in range(DELETED):
        assert_no_jvm_left(f"cache{n}")
    # The watchdogs are done (each removes its kernel's scratch directory last): no lock is held.
    wait_until(lambda: os.listdir(tmp_dir) == [], 180, f"kernels left files in their TMPDIR: {os.listdir(tmp_dir)}")
    records = {name[:-len(".json")]: record_needs(environ, name) for name in cds_files(environ) if name.endswith(".jsa.json")}
    assert sorted(home for needs in records.values() for home in needs if home in homes) == sorted(homes[:DELETED]), records
    archives = [entry for entry in cache.read_entries(environ) if entry.kind == "archive"]
    assert archives and all(os.path.basename(entry.path) in records for entry in archives), cds_files(environ)
    for venv, _ in made[:DELETED]:
        shutil.rmtree(venv.parent)

    kernel = Kernel(kernels_dir, f"cache{DELETED}", env)
    try:
        cell = kernel.run("print(spark.version)", timeout=600)
        assert cell.error is None, cell.text
        # The start prunes the cache once Spark is up, before any warm-up would run.
        assert kernel.evaluate("__import__('pyspark_kernel_runtime').RUNTIME.pruned.wait(120)") == "True"
        left = cds_files(environ)
    finally:
        kernel.stop()
    assert_no_jvm_left(f"cache{DELETED}")
    wait_until(lambda: os.listdir(tmp_dir) == [], 180, f"kernel cache{DELETED} left files in its TMPDIR: {os.listdir(tmp_dir)}")
    # Only the new kernel's archive (if its JVM wrote it), its record and, while it ran, its lock.
    kept = [name for name in left if name.endswith(".jsa.json")]
    assert len(kept) == 1 and all(name.startswith(kept[0][:-len(".json")]) for name in left), left
    assert homes[DELETED] in record_needs(environ, kept[0])
    entries = cache.read_entries(environ)
    assert all(entry.needs[1:] == [homes[DELETED]] for entry in entries), [(entry.path, entry.needs) for entry in entries]
    assert cache.total(entries) <= cache.limit(environ)
