"""The hub's limits (CPU_LIMIT, MEM_LIMIT in the single-user server's environment, inherited by
kernels): a kernel's own driver fits them, the user's explicit settings win with a one-line notice,
and %spark status, doctor and a killed driver's message name them."""

import pathlib
import shutil
import signal
import tempfile

import psutil
import pytest

from pyspark_kernel.runtime import diagnostics, limits

from .conftest import make_kernel, spark_jvms
from .kernels import Kernel, kernel_environment, wait_until
from .test_clusters import create
from .test_doctor import doctor
from .test_shared_driver import record_of, server_jvms, servers_of

MIB = 1024 * 1024
HUB = {"CPU_LIMIT": "1.0", "MEM_LIMIT": str(1536 * MIB)}  # what a spawner with cpu_limit=1, mem_limit="1.5G" sets


@pytest.mark.parametrize("cpu, master, fitted", [
    ("1.0", "local[*]", "local[1]"),
    ("1.5", "local[*]", "local[1]"),  # whole cores, rounded down
    ("0.5", "local[*]", "local[1]"),  # at least one
    ("3.9", "local[8]", "local[3]"),
    ("2", "local[2]", "local[2]"),
    ("2", "local[1]", "local[1]"),  # fewer than the limit: kept
    ("1", "local[*,3]", "local[1,3]"),  # task failures kept
    ("1", "local", "local"),
    ("1", "spark://127.0.0.1:7077", "spark://127.0.0.1:7077"),  # the cluster runs the tasks
    ("", "local[*]", "local[*]"),
    ("lots", "local[*]", "local[*]"),  # not a number: ignored, and %spark status says so
])
def test_cpu_limit_caps_the_task_threads_of_a_local_master(cpu, master, fitted):
    conf = {"spark.master": master}
    found = limits.fit(conf, conf, {"CPU_LIMIT": cpu})
    assert found.conf["spark.master"] == fitted
    assert found.notices == []


@pytest.mark.parametrize("memory_mib, heap", [
    (1536, "768m"),  # half
    (4096, "1024m"),  # never above Spark's default
    (1024, "512m"),
    (700, "512m"),  # never below what a driver starts with (with a notice)
])
def test_mem_limit_sets_the_default_driver_heap_to_half_of_it_at_most_spark_default(memory_mib, heap):
    found = limits.fit({}, {}, {"MEM_LIMIT": str(memory_mib * MIB)})
    assert found.conf["spark.driver.memory"] == heap
    assert bool(found.notices) == (memory_mib < 1024)


def test_without_limits_nothing_changes():
    conf = {"spark.master": "local[*]", "spark.app.name": "x"}
    assert limits.fit(conf, conf, {}) == (conf, [])
    assert limits.status_line(conf, conf, {}) == "limits: none declared (no CPU_LIMIT or MEM_LIMIT)"


def test_an_explicit_driver_memory_above_the_share_wins_with_one_line():
    conf = {"spark.master": "local[*]", "spark.driver.memory": "2g"}
    found = limits.fit(conf, conf, HUB)
    assert found.conf == {"spark.master": "local[1]", "spark.driver.memory": "2g"}
    assert found.notices == ["spark.driver.memory 2g is above half of this user's MEM_LIMIT of 1.5 GiB (768 MiB): "
                             "the setting is used, and the out-of-memory killer may stop the driver"]
    within = {"spark.driver.memory": "700m"}
    assert limits.fit(within, within, HUB) == ({**within, "spark.master": "local[1]"}, [])


def test_a_local_master_chosen_by_restart_wins_with_one_line_and_the_kernels_is_capped():
    kernel_conf = {"spark.master": "local[4]"}
    assert limits.fit(kernel_conf, kernel_conf, HUB).conf["spark.master"] == "local[1]"
    chosen = {"spark.master": "local[2]"}  # %spark restart --conf spark.master=local[2]
    found = limits.fit(chosen, kernel_conf, HUB)
    assert found.conf["spark.master"] == "local[2]"
    assert found.notices == ["spark.master local[2] runs 2 task threads, more than this user's CPU_LIMIT of 1 allows (1): the setting is used"]


@pytest.mark.parametrize("text, count", [("2g", 2048 * MIB), ("1536m", 1536 * MIB), ("1024", 1024 * MIB), ("512MB", 512 * MIB), ("1.5g", None), ("lots", None)])
def test_sizes_are_read_as_spark_reads_driver_memory(text, count):
    assert limits.size_bytes(text) == count


def test_status_names_the_limits_in_force():
    conf = {"spark.master": "local[*]"}
    assert limits.status_line(conf, conf, HUB) == "limits: CPU_LIMIT 1 (master local[1]); MEM_LIMIT 1.5 GiB (driver heap 768m)"
    yarn = {"spark.master": "yarn"}
    assert limits.status_line(yarn, yarn, HUB) == "limits: CPU_LIMIT 1 (the cluster runs the tasks); MEM_LIMIT 1.5 GiB (driver heap 768m)"
    assert limits.status_line(conf, conf, {"MEM_LIMIT": "1.5G"}) == "limits: MEM_LIMIT ignored: not a positive number"


def test_a_killed_driver_names_the_memory_limit():
    assert diagnostics.describe_exit(-signal.SIGKILL, HUB) == ("killed by signal 9 (SIGKILL: often the out-of-memory killer; "
                                                                "the user's memory limit is 1.5 GiB (MEM_LIMIT))")
    assert diagnostics.describe_exit(-signal.SIGKILL, {}) == "killed by signal 9 (SIGKILL: often the out-of-memory killer)"
    assert diagnostics.describe_exit(-signal.SIGTERM, HUB) == "killed by signal 15 (SIGTERM)"


def test_doctor_shows_the_limits_of_its_environment_and_a_share_too_small(kernels_dir):
    create(kernels_dir, "hubbed")
    done = doctor(kernels_dir, "hubbed", **HUB)
    assert done.returncode == 0, done.stdout
    assert "OK limits: CPU_LIMIT 1 (master local[1]); MEM_LIMIT 1.5 GiB (driver heap 768m)" in done.stdout.splitlines(), done.stdout
    done = doctor(kernels_dir, "hubbed", MEM_LIMIT=str(700 * MIB))
    assert done.returncode == 1
    assert "PROBLEM limits: MEM_LIMIT is 700 MiB, too little for a Spark driver" in done.stdout, done.stdout
    done = doctor(kernels_dir, "hubbed", CPU_LIMIT="", MEM_LIMIT="")
    assert "OK limits: no CPU_LIMIT or MEM_LIMIT here: local[*] runs a task thread per core, the driver heap is Spark's default" in done.stdout, done.stdout


def max_heap_and_threads(kernel):
    """(sc.defaultParallelism, the driver JVM's max heap in bytes), asked without a cell."""
    found = kernel.evaluate("(sc.defaultParallelism, sc._jvm.java.lang.Runtime.getRuntime().maxMemory())")
    threads, heap = found.strip("()").split(",")
    return int(threads), int(heap)


@pytest.mark.e2e
def test_a_kernel_under_the_hubs_limits_fits_them_an_explicit_setting_wins_and_a_kill_names_the_limit(start):
    kernel = start("limited", **HUB)
    first = kernel.run("spark.range(10).count()")
    assert first.result == "10", first.messages
    assert "MEM_LIMIT" not in first.text and "CPU_LIMIT" not in first.text, first.text  # fitted: nothing to say
    threads, heap = max_heap_and_threads(kernel)
    assert threads == 1
    # -Xmx768m: the JVM's maxMemory is the heap less at most a survivor space.
    assert 0.8 * 768 * MIB <= heap <= 768 * MIB, heap / MIB
    status = kernel.run("%spark status").text
    assert "limits: CPU_LIMIT 1 (master local[1]); MEM_LIMIT 1.5 GiB (driver heap 768m)" in status.splitlines(), status

    restarted = kernel.run("%spark restart --conf spark.driver.memory=1g --conf spark.master=local[2]")
    said = [line for line in restarted.text.splitlines() if "LIMIT" in line]
    assert said == ["spark.master local[2] runs 2 task threads, more than this user's CPU_LIMIT of 1 allows (1): the setting is used",
                    "spark.driver.memory 1g is above half of this user's MEM_LIMIT of 1.5 GiB (768 MiB): the setting is used, "
                    "and the out-of-memory killer may stop the driver"], restarted.text
    threads, heap = max_heap_and_threads(kernel)
    assert threads == 2
    assert heap > 900 * MIB, heap / MIB

    for jvm in spark_jvms("limited"):
        jvm.send_signal(signal.SIGKILL)  # as the out-of-memory killer does
    psutil.wait_procs(spark_jvms("limited"), timeout=60)
    killed = kernel.run("spark.range(10).count()")
    assert killed.error is not None and killed.error[0] == "SparkDiedError", killed.messages
    assert "killed by signal 9 (SIGKILL: often the out-of-memory killer; the user's memory limit is 1.5 GiB (MEM_LIMIT))" in killed.error[1], killed.error
    kernel.stop()

    # The kernel's own setting (its profile's, or create's --spark.*) wins the same way, from the first cell.
    kernel = start("limited-own", "--spark.driver.memory=1g", **HUB)
    first = kernel.run("spark.range(10).count()")
    said = [line for line in first.text.splitlines() if "LIMIT" in line]
    assert said == ["spark.driver.memory 1g is above half of this user's MEM_LIMIT of 1.5 GiB (768 MiB): the setting is used, "
                    "and the out-of-memory killer may stop the driver"], first.text
    assert max_heap_and_threads(kernel)[1] > 900 * MIB


@pytest.mark.e2e
def test_the_shared_driver_is_one_per_user_and_fits_its_users_limits(kernels_dir, tmp_path):
    # A short runtime directory (0700): the shared driver's Unix socket lives there, and pytest's own are too deep for one.
    run_dir, tmp_dir = pathlib.Path(tempfile.mkdtemp(prefix="psk-run-")), tmp_path / "tmp"
    tmp_dir.mkdir()
    make_kernel(kernels_dir, "sharedlim", "--spark_driver", "shared", "--driver_linger", "5", "--no-class_data_sharing")
    kernel = Kernel(kernels_dir, "sharedlim", kernel_environment(tmp_dir, XDG_RUNTIME_DIR=str(run_dir), **HUB))
    try:
        first = kernel.run("print(spark.conf.get('spark.master'), spark.range(5).count())")
        assert "local[1] 5" in first.stream.splitlines(), first.text
        assert "LIMIT" not in first.text, first.text
        record = record_of(run_dir)
        assert record["master"] == "local[1]"
        assert "-Xmx768m" in psutil.Process(record["jvm"]).cmdline()  # its heap counts against the same MEM_LIMIT
        status = kernel.run("%spark status").text
        assert "limits: CPU_LIMIT 1 (master local[1]); MEM_LIMIT 1.5 GiB (driver heap 768m)" in status.splitlines(), status
    finally:
        kernel.stop()
        try:
            wait_until(lambda: not server_jvms(run_dir) and not servers_of(run_dir), 65, "the shared driver did not leave after the last notebook")
        finally:
            for process in server_jvms(run_dir) + servers_of(run_dir):
                process.kill()
            shutil.rmtree(run_dir, ignore_errors=True)
