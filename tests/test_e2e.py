"""End to end: bake a kernel, start it from its kernel.json, run the smoke notebook on local Spark."""

import os
import re

import pytest

from .conftest import SCRATCH, assert_no_jvm_left, read_spec, run_cli, spark_conf_of, tree_snapshot
from .test_cli import nasty_values

pytestmark = pytest.mark.e2e

SMOKE_CHECKS = ["setup", "spark_count", "master", "conf_round_trip", "environment", "driver_python", "executor_python"]


def assert_smoke_passes(name, kernels_dir, *args, env=None):
    done = run_cli("smoke", name, "-d", str(kernels_dir), *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"Spark \S+ \| master \S+ \| app \S+ \| UI http://127\.0\.0\.1:\d+", lines[0]), done.stdout
    assert [line.split(":")[0] for line in lines[1:-1]] == [f"PASS {check}" for check in SMOKE_CHECKS], done.stdout
    assert lines[-1] == f"{name}: {len(SMOKE_CHECKS)} passed, 0 failed"
    assert_no_jvm_left(name)
    return done


def test_nasty_values_arrive_in_spark_unchanged_and_smokes_artifacts_hold_no_secret(kernels_dir, tmp_path):
    """One kernel and one smoke for two things: values full of quotes and markers reach Spark's
    conf and the kernel's environment unchanged; the secrets it takes from the server's environment
    (a variable and a ${env:...} setting) reach it and are in none of smoke's artifacts."""
    marker = tmp_path / "marker"
    values = nasty_values(marker)
    tmp_dir, reports = tmp_path / "tmp", tmp_path / "reports"
    for path in (tmp_dir, reports):
        path.mkdir()
    token, s3 = "tok-9f3a1c-never-print", "s3-7b2e4d-never-print"
    env = {**os.environ, "TEAM_TOKEN": token, "S3_SECRET": s3, "TMPDIR": str(tmp_dir)}
    args = ["create", "-k", "e2e-nasty", "-d", str(kernels_dir), "--spark_master", "local[2]", "--spark.sql.shuffle.partitions=8",
            "--env-from", "TEAM_TOKEN", "--spark.hadoop.fs.s3a.secret.key", "${env:S3_SECRET}"]
    for index, value in enumerate(values):
        args += [f"--spark.test.value{index}", value, "--env", f"NASTY_{index}={value}"]
    created = run_cli(*args, env=env)
    assert created.returncode == 0, created.stderr
    conf = spark_conf_of(read_spec(kernels_dir / "e2e-nasty"))
    assert [conf[f"spark.test.value{i}"] for i in range(len(values))] == values
    junit, notebook = reports / "smoke.xml", reports / "smoke.ipynb"
    # conf_round_trip: spark.conf.get returns each value exactly; environment: os.environ has each
    done = assert_smoke_passes("e2e-nasty", kernels_dir, "--junit", str(junit), "--save-notebook", str(notebook), env=env)
    assert not marker.exists(), "a nasty value ran as a command"
    assert_no_secret_in_smokes_artifacts(created, done, [token, s3], [reports, kernels_dir, tmp_dir, os.path.join(SCRATCH, "replay")], junit, notebook)


def assert_no_secret_in_smokes_artifacts(created, done, secrets, places, junit, notebook):
    """Neither create's nor smoke's output, nor any file under ``places`` (the reports, the kernel,
    its TMPDIR, cookiecutter's replay) holds a secret's value."""
    artifacts = {"stdout": done.stdout.encode(), "stderr": done.stderr.encode(), **{f"created {k}": v.encode() for k, v in (("stdout", created.stdout), ("stderr", created.stderr))}}
    for where in places:
        if os.path.isdir(where):
            artifacts.update({f"{where}/{name}": content for name, content in tree_snapshot(where).items()})
    assert str(junit) in artifacts and str(notebook) in artifacts and any("kernel.json" in name for name in artifacts), sorted(artifacts)
    leaked = [name for name, content in artifacts.items() if any(secret.encode() in content for secret in secrets)]
    assert leaked == [], f"a secret's value is in {leaked}"  # a variable the server lacks fails the check: test_smoke_for_ci


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
