"""Errors carry what is wrong and how to fix it as fields, and read as they always did; the few
parsers shared by the generator and the runtime (master URLs, a JDK's release file) read each
form once."""

import os
import subprocess
import sys

import pytest

from pyspark_kernel import doctor
from pyspark_kernel.runtime import cache, diagnostics, jvm, masters, sql
from pyspark_kernel.runtime.driver_server import can_trim_native_heap

from .conftest import ROOT

SHIM = os.path.join(os.path.dirname(os.path.dirname(__file__)), "{{cookiecutter.kernel_name}}", "pyspark_startup.py")


def test_a_problem_and_its_fix_make_the_message_and_stay_fields():
    error = diagnostics.SparkStartError("Java not found", "install a JDK")
    assert (error.problem, error.fix, str(error)) == ("Java not found", "install a JDK", "Java not found (install a JDK)")
    assert error._render_traceback_() == ["SparkStartError: Java not found (install a JDK)"]


def test_one_message_is_the_problem_and_there_is_no_fix():
    error = diagnostics.SparkStartError("Spark is stopping: the kernel is shutting down")
    assert (error.problem, error.fix, str(error)) == ("Spark is stopping: the kernel is shutting down", None, "Spark is stopping: the kernel is shutting down")
    assert error.args == ("Spark is stopping: the kernel is shutting down",)


def test_the_raisers_give_fields(tmp_path):
    with pytest.raises(diagnostics.SparkStartError) as raised:
        diagnostics.find_java({"JAVA_HOME": str(tmp_path), "PATH": ""})
    assert raised.value.problem == f"Java not found: JAVA_HOME is {tmp_path}, which has no bin/java"
    assert raised.value.fix == "install a JDK 17+ there, or set JAVA_HOME in the kernel's env to a JDK"
    with pytest.raises(diagnostics.SetupError) as raised:
        jvm.make_scratch({"TMPDIR": str(tmp_path / "missing")})
    assert raised.value.problem.endswith("missing: No such file or directory")
    assert raised.value.fix == "set TMPDIR to a writable directory for the Jupyter server, or in the kernel's env"


def test_a_died_error_has_the_jvm_output_after_its_fix(tmp_path):
    log = tmp_path / "driver.log"
    log.write_text("java.lang.OutOfMemoryError\n")
    error = diagnostics.died_error(-9, str(log))
    assert error.problem.startswith("The Spark driver JVM has exited: killed by signal 9") and error.fix == diagnostics.RESTART_HINT
    assert error.detail.endswith("---\njava.lang.OutOfMemoryError")
    assert str(error) == diagnostics.died_message(-9, str(log)) == f"{error.problem} ({error.fix}){error.detail}"


def test_the_shared_driver_error_reads_as_before():
    error = diagnostics.SharedDriverError(diagnostics.SHARED_SC_PROBLEM, diagnostics.SHARED_SC_FIX)
    assert str(error) == str(diagnostics.SharedDriverError(diagnostics.SHARED_SC)) == diagnostics.SHARED_SC


def test_setup_errors_are_marked_for_the_shim_and_stay_runtime_errors():
    assert issubclass(diagnostics.KernelJsonError, diagnostics.SetupError) and diagnostics.KernelJsonError("x", "y").setup_error is True
    assert str(diagnostics.KernelJsonError("x is wrong", diagnostics.REGENERATE)) == f"x is wrong; regenerate the kernel, keeping its settings: pyspark-kernel upgrade pyspark_kernel -d {ROOT}"
    assert diagnostics.SetupError("x").setup_error is True and isinstance(diagnostics.SetupError("x"), RuntimeError)
    assert not hasattr(diagnostics.SetupError("x"), "_render_traceback_")
    assert not getattr(diagnostics.SparkStartError("x"), "setup_error", False)


def test_spark_sql_errors_render_as_short_errors_and_keep_their_base():
    error = sql.SparkSQLError("[TABLE_OR_VIEW_NOT_FOUND] nope")
    assert error._render_traceback_() == ["SparkSQLError: [TABLE_OR_VIEW_NOT_FOUND] nope"]
    assert not isinstance(error, RuntimeError)


def test_a_bad_cache_limit_is_a_value_error_with_fields():
    with pytest.raises(cache.LimitError) as raised:
        cache.parse_limit("lots")
    assert isinstance(raised.value, ValueError)
    assert (raised.value.problem, raised.value.fix) == ("'lots' is not a size", "write it in bytes or with K, M, G or T, for example 4G")


def test_doctor_checks_are_named_tuples_that_print_their_line():
    assert doctor.ok("java", "/jdk/bin/java (Java 17)").line() == "OK java: /jdk/bin/java (Java 17)"
    found = doctor.problem("cache", "PYSPARK_KERNEL_CACHE_LIMIT: 'x' is not a size", "write it in bytes")
    assert found.line() == "PROBLEM cache: PYSPARK_KERNEL_CACHE_LIMIT: 'x' is not a size (write it in bytes)"
    assert (found.status, found.name, found.problem, found.fix) == ("PROBLEM", "cache", "PYSPARK_KERNEL_CACHE_LIMIT: 'x' is not a size", "write it in bytes")
    assert doctor.ok("java", "fine").problem is None
    assert doctor.cache_check({"PYSPARK_KERNEL_CACHE_LIMIT": "lots"}).fix.endswith("; until then kernels do not prune the cache")


def test_doctor_loads_the_kernels_diagnostics_with_the_modules_it_imports(tmp_path):
    import shutil

    shutil.copytree(os.path.dirname(diagnostics.__file__), tmp_path / "pyspark_kernel_runtime")
    (tmp_path / "pyspark_kernel_runtime" / "__init__.py").write_text("raise AssertionError('the kernel starts')\n")
    loaded = doctor.load_runtime(str(tmp_path))
    assert loaded.__file__ == str(tmp_path / "pyspark_kernel_runtime" / "diagnostics.py")
    assert loaded.master_addresses("sc://h") == [("h", 15002)]
    assert doctor.load_runtime(str(tmp_path)) is not loaded  # afresh each time


@pytest.mark.parametrize("marked, expected", [
    (True, "ERROR: The kernel's Spark runtime could not start: TMPDIR is no directory (set it)"),
    (False, "ERROR: The kernel's Spark runtime could not start: SetupError: TMPDIR is no directory (set it)"),
])
def test_the_shim_knows_the_runtimes_setup_errors_by_their_marker_not_their_name(tmp_path, marked, expected):
    import shutil

    kernel = tmp_path / "kernel"
    (kernel / "pyspark_kernel_runtime").mkdir(parents=True)
    shutil.copy(SHIM, kernel)
    (kernel / "pyspark_kernel_runtime" / "__init__.py").write_text(
        f"class SetupError(RuntimeError):\n    setup_error = {marked}\n"
        "def install(namespace):\n    raise SetupError('TMPDIR is no directory (set it)')\n")
    startup = str(kernel / "pyspark_startup.py")
    script = ("from IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance()\n"
              f"shell.user_ns['__file__'] = {startup!r}\n"
              f"shell.safe_execfile({startup!r}, shell.user_ns, raise_exceptions=True)\n"
              "shell.run_cell('1')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == expected


@pytest.mark.parametrize("master, parts", [
    ("sc://h:15002/;use_ssl=true", ("sc", "h:15002", "/;use_ssl=true")),
    ("sc://h", ("sc", "h", "")),
    ("spark://a:7077,b:7077", ("spark", "a:7077,b:7077", "")),
    ("local[*]", ("local[*]", "", "")),
])
def test_a_master_url_is_split_in_one_place(master, parts):
    assert masters.split_master(master) == parts


def test_the_generator_and_the_kernel_read_master_urls_alike():
    from pyspark_kernel import validate

    assert validate.MASTERS is masters.MASTERS
    assert masters.is_connect("sc://h:15002") and not masters.is_connect("spark://h:7077")
    assert diagnostics.master_addresses is masters.master_addresses


@pytest.mark.parametrize("release, version", [
    ('JAVA_VERSION="17.0.9"', (17, 9)), ('JAVA_VERSION="21"', (21, 0)), ('JAVA_VERSION="1.8.0_392"', (8, 0)),
    ('IMPLEMENTOR="x"\nJAVA_VERSION="21.0.1"', (21, 1)), ("", None), (None, None),
])
def test_a_jdks_release_file_is_read_in_one_place(release, version):
    assert diagnostics.release_version(release) == version


@pytest.mark.parametrize("release, trims", [
    ('JAVA_VERSION="17.0.9"', True), ('JAVA_VERSION="17.0.8"', False), ('JAVA_VERSION="21"', False), ('JAVA_VERSION="21.0.1"', True),
    ('JAVA_VERSION="22"', True), ('JAVA_VERSION="1.8.0_392"', False), ('JAVA_VERSION="11.0.25"', False), ("", False),
])
def test_native_heap_trimming_follows_the_release_file(release, trims):
    assert can_trim_native_heap(release) is trims
