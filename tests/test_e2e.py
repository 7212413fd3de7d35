"""End to end: bake a kernel, start it from its kernel.json, run the smoke notebook on local Spark."""

import os
import re
import subprocess

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from .conftest import ROOT, VENV_DIR, assert_no_jvm_left, read_spec, run_cli, spark_conf_of
from .test_cli import nasty_values

pytestmark = pytest.mark.e2e

SMOKE_CHECKS = ["setup", "spark_count", "master", "conf_round_trip", "environment", "driver_python", "executor_python"]


def assert_smoke_passes(name, kernels_dir):
    done = run_cli("smoke", name, "-d", str(kernels_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"Spark \S+ \| master \S+ \| app \S+ \| UI http://127\.0\.0\.1:\d+", lines[0]), done.stdout
    assert [line.split(":")[0] for line in lines[1:-1]] == [f"PASS {check}" for check in SMOKE_CHECKS], done.stdout
    assert lines[-1] == f"{name}: {len(SMOKE_CHECKS)} passed, 0 failed"
    assert_no_jvm_left(name)
    return done.stdout


def test_default_bake_runs_the_smoke_notebook_on_local_spark(kernels_dir):
    done = subprocess.run([os.path.join(VENV_DIR, "bin", "cookiecutter"), ROOT, "--no-input", "-o", str(kernels_dir), "kernel_name=e2e-default"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert KernelSpecManager(kernel_dirs=[str(kernels_dir)]).get_kernel_spec("e2e-default").display_name == "PySpark (e2e-default)"
    report = assert_smoke_passes("e2e-default", kernels_dir)
    assert report.splitlines()[0].startswith("Spark 4") and "| master local[*] | app local-" in report


def test_nasty_values_arrive_in_spark_unchanged(kernels_dir, tmp_path):
    marker = tmp_path / "marker"
    values = nasty_values(marker)
    args = ["create", "-k", "e2e-nasty", "-d", str(kernels_dir), "--spark_master", "local[2]", "--spark.sql.shuffle.partitions=8"]
    for index, value in enumerate(values):
        args += [f"--spark.test.value{index}", value, "--env", f"NASTY_{index}={value}"]
    assert run_cli(*args).returncode == 0
    conf = spark_conf_of(read_spec(kernels_dir / "e2e-nasty"))
    assert [conf[f"spark.test.value{i}"] for i in range(len(values))] == values
    # conf_round_trip: spark.conf.get returns each value exactly; environment: os.environ has each
    assert_smoke_passes("e2e-nasty", kernels_dir)
    assert not marker.exists()


def test_spark_distribution_layout_with_a_venv_without_pyspark(kernels_dir, spark_distribution, venv_without_pyspark):
    # No class-data-sharing archive: this one-off Spark home's would be written and never mapped.
    done = run_cli("create", "-k", "e2e-dist", "-d", str(kernels_dir), "-e", str(venv_without_pyspark), "--spark_home", str(spark_distribution),
                   "--no-class_data_sharing")
    assert done.returncode == 0, done.stderr
    spec = read_spec(kernels_dir / "e2e-dist")
    assert spec["metadata"]["pyspark_kernel"]["spark_layout"] == "distribution"
    python_dir = spark_distribution / "python"
    py4j_zip = next((python_dir / "lib").glob("py4j-*-src.zip"))
    assert spec["env"]["PYTHONPATH"] == f"{python_dir}{os.pathsep}{py4j_zip}"
    assert spec["env"]["SPARK_HOME"] == str(spark_distribution)
    assert_smoke_passes("e2e-dist", kernels_dir)


def test_smoke_names_the_failing_check_when_spark_cannot_start(kernels_dir):
    assert run_cli("create", "-k", "e2e-nojava", "-d", str(kernels_dir), "--env", "JAVA_HOME=/nonexistent/jdk").returncode == 0
    done = run_cli("smoke", "e2e-nojava", "-d", str(kernels_dir))
    assert done.returncode == 1
    assert ("FAIL spark_count: spark.range(1000).count() == 1000: SparkStartError: Java not found: JAVA_HOME is /nonexistent/jdk, "
            "which has no bin/java (install a JDK 17+ there, or set JAVA_HOME in the kernel's env to a JDK)") in done.stdout
    assert done.stdout.splitlines()[-1].startswith("e2e-nojava: 3 passed, 4 failed (spark_count, master, conf_round_trip, ")
    assert_no_jvm_left("e2e-nojava")


def test_smoke_for_ci_writes_junit_and_the_executed_notebook_with_a_teams_checks(kernels_dir, tmp_path):
    import nbformat
    from junitparser import Failure, JUnitXml

    # The kernel takes TEAM_TOKEN from the server's environment, which lacks it here: a failed check.
    assert run_cli("create", "-k", "e2e-ci", "-d", str(kernels_dir), "--env-from", "TEAM_TOKEN").returncode == 0
    checks = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Team checks"),
        nbformat.v4.new_code_cell("assert spark.range(5).count() == 5", metadata={"tags": ["check:five-rows"]}),
        nbformat.v4.new_code_cell("assert spark.conf.get('spark.sql.shuffle.partitions') == '999', 'wrong partitions'"),
    ])
    nbformat.write(checks, tmp_path / "team.ipynb")
    report, executed = tmp_path / "report.xml", tmp_path / "out.ipynb"
    done = run_cli("smoke", "e2e-ci", "-d", str(kernels_dir), "--junit", str(report), "--save-notebook", str(executed), "--notebook", str(tmp_path / "team.ipynb"),
                   env={key: value for key, value in os.environ.items() if key != "TEAM_TOKEN"})
    assert done.returncode == 1
    assert "FAIL environment: the kernel process has kernel.json's env: AssertionError: TEAM_TOKEN: not set in the Jupyter server's environment" in done.stdout
    assert "PASS five-rows: assert spark.range(5).count() == 5" in done.stdout
    assert "FAIL notebook-2: assert spark.conf.get('spark.sql.shuffle.partitions') == '999', 'wrong partitions': AssertionError: wrong partitions" in done.stdout
    suite = next(iter(JUnitXml.fromfile(str(report))))
    cases = {case.name: case for case in suite}
    assert list(cases) == [*SMOKE_CHECKS, "five-rows", "notebook-2"]
    assert [name for name, case in cases.items() if any(isinstance(r, Failure) for r in case.result)] == ["environment", "notebook-2"]
    assert (suite.tests, suite.failures) == (len(SMOKE_CHECKS) + 2, 2)
    saved = nbformat.read(executed, as_version=4)
    assert any(output.get("ename") == "AssertionError" for cell in saved.cells for output in cell.get("outputs", []))
    assert_no_jvm_left("e2e-ci")
