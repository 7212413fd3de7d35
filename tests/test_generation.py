"""Generation through cookiecutter (pytest-cookies): SUPPORTED and UNSUPPORTED answer tables."""

import json
import os
import re

import pytest

from pyspark_kernel.kernelspec import schema_errors

from .conftest import KERNEL_FILES, PYTHON, ROOT, VENV_DIR, read_spec, spark_conf_of, tree_snapshot, venv_with_project_packages

PIP_SPARK_HOME = os.path.dirname(__import__("pyspark").__file__)

SUPPORTED = [
    ("defaults", {}, {"master": "local[*]", "name": "pyspark-local", "display_name": "PySpark (pyspark-local)"}),
    ("explicit-venv", {"venv_dir": VENV_DIR, "kernel_name": "etl"}, {"name": "etl", "display_name": "PySpark (etl)"}),
    ("local-4-with-conf", {"spark_master": "local[4]", "spark_conf": {"spark.executor.memory": "4g", "spark.sql.shuffle.partitions": "8"}},
     {"master": "local[4]", "conf": {"spark.executor.memory": "4g", "spark.sql.shuffle.partitions": "8"}}),
    ("standalone", {"spark_master": "spark://127.0.0.1:7077"}, {"master": "spark://127.0.0.1:7077"}),
    ("yarn", {"spark_master": "yarn", "env": {"HADOOP_CONF_DIR": "/etc/hadoop/conf"}}, {"master": "yarn", "env": {"HADOOP_CONF_DIR": "/etc/hadoop/conf"}}),
    ("kubernetes", {"spark_master": "k8s://https://10.0.0.1:6443"}, {"master": "k8s://https://10.0.0.1:6443"}),
    ("spark-connect", {"spark_master": "sc://127.0.0.1:15002"}, {"master": "sc://127.0.0.1:15002"}),
    ("display-name", {"display_name": "Team ETL: Spark 4 (prod)"}, {"display_name": "Team ETL: Spark 4 (prod)"}),
    ("explicit-pip-spark-home", {"spark_home": PIP_SPARK_HOME}, {"spark_home": PIP_SPARK_HOME}),
    ("conf-as-json-text", {"spark_conf": '{"spark.sql.shuffle.partitions": "8"}', "env": '{"A_B": "c d"}'},
     {"conf": {"spark.sql.shuffle.partitions": "8"}, "env": {"A_B": "c d"}}),
    ("lazy-no-progress", {"spark_init": "lazy", "progress": "no", "log_level": "ERROR", "start_timeout": "45", "class_data_sharing": "no", "idle_timeout": "90"},
     {"options": {"init": "lazy", "progress": False, "log_level": "ERROR", "start_timeout": 45, "idle_timeout": 90, "class_data_sharing": False}}),
    ("idle-timeout-off", {"idle_timeout": "0"}, {}),
    ("warm-up-jvm-only", {"warm_up": "jvm"}, {"options": {"warm_up": "jvm"}}),
    ("warm-up-off", {"warm_up": "off"}, {"options": {"warm_up": "off"}}),
    ("shared-driver", {"spark_driver": "shared"}, {"options": {"spark_driver": "shared", "driver_linger": 30, "driver_prestart": False}}),
    ("shared-driver-linger", {"spark_driver": "shared", "driver_linger": "120"}, {"options": {"spark_driver": "shared", "driver_linger": 120, "driver_prestart": False}}),
    ("dedicated-driver", {"spark_driver": "dedicated"}, {}),
    ("sql-rows", {"sql_rows": "7"}, {"options": {"sql_rows": 7}}),
    ("dataframe-display-default", {}, {"conf": {"spark.sql.repl.eagerEval.enabled": "true"}}),
    ("dataframe-display-schema", {"dataframe_display": "schema"}, {"conf": {"spark.sql.repl.eagerEval.enabled": "false"}}),
    ("dataframe-display-own-setting", {"dataframe_display": "schema", "spark_conf": {"spark.sql.repl.eagerEval.enabled": "true"}},
     {"conf": {"spark.sql.repl.eagerEval.enabled": "true"}}),  # Spark's own setting, given, wins
]

UNSUPPORTED = [
    ("name-with-space", {"kernel_name": "my kernel"}, "kernel_name"),
    ("name-parent-dir", {"kernel_name": "x/.."}, "kernel_name"),
    ("name-grandparent-dir", {"kernel_name": "x/../.."}, "kernel_name"),
    ("name-nested", {"kernel_name": "a/b/c"}, "kernel_name"),
    ("conf-not-json", {"spark_conf": "spark.executor.memory=4g"}, "spark_conf"),
    ("name-uppercase", {"kernel_name": "ETL"}, "kernel_name"),
    ("name-unicode", {"kernel_name": "étl"}, "kernel_name"),
    ("name-hidden", {"kernel_name": ".etl"}, "kernel_name"),
    ("name-too-long", {"kernel_name": "k" * 100}, "kernel_name"),
    ("display-name-blank", {"display_name": "  "}, "display_name"),
    ("venv-missing", {"venv_dir": "/nonexistent/venv"}, "venv_dir"),
    ("spark-home-not-spark", {"spark_home": ROOT}, "spark_home"),
    ("master-typo", {"spark_master": "locl[*]"}, "spark_master"),
    ("master-unknown-scheme", {"spark_master": "mesos://m:5050"}, "spark_master"),
    ("conf-key-without-spark", {"spark_conf": {"executor.memory": "4g"}}, "spark_conf"),
    ("conf-empty-value", {"spark_conf": {"spark.app.name": ""}}, "spark_conf"),
    ("conf-memory-with-space", {"spark_conf": {"spark.executor.memory": "4 gb"}}, "spark_conf"),
    ("conf-memory-negative", {"spark_conf": {"spark.driver.memory": "-1g"}}, "spark_conf"),
    ("conf-sets-master", {"spark_conf": {"spark.master": "yarn"}}, "spark_conf"),
    ("env-name-with-equals", {"env": {"A=B": "x"}}, "env"),
    ("env-reserved", {"env": {"SPARK_HOME": "/opt/spark"}}, "env"),
    ("start-timeout-not-a-number", {"start_timeout": "soon"}, "start_timeout"),
    ("start-timeout-zero", {"start_timeout": "0"}, "start_timeout"),
    ("idle-timeout-negative", {"idle_timeout": "-5"}, "idle_timeout"),
    ("driver-typo", {"spark_driver": "shard"}, "spark_driver"),
    ("shared-driver-of-a-connect-master", {"spark_driver": "shared", "spark_master": "sc://127.0.0.1:15002"}, "spark_driver"),
    ("driver-linger-negative", {"spark_driver": "shared", "driver_linger": "-1"}, "driver_linger"),
    ("idle-timeout-not-a-number", {"idle_timeout": "later"}, "idle_timeout"),
]


@pytest.fixture
def bake(cookies, tmp_path):
    """Bake into a known, fresh output directory so a failed bake can be checked for leftovers."""
    count = iter(range(100))

    def run(context, output_dir=None):
        out = output_dir or tmp_path / f"out{next(count)}"
        out.mkdir(exist_ok=True)
        cookies._new_output_dir = lambda: out
        return cookies.bake(extra_context=context, template=ROOT), out

    return run


@pytest.mark.parametrize("context, expected", [row[1:] for row in SUPPORTED], ids=[row[0] for row in SUPPORTED])
def test_supported_answers_bake_a_valid_kernel(bake, context, expected):
    result, _ = bake(context)
    assert result.exit_code == 0, result.exception
    kernel_dir = result.project_path
    assert kernel_dir.name == expected.get("name", "pyspark-local")
    recorded = ["environment.json"] if expected.get("master", "").startswith("sc://") else []  # what each Connect session's artifacts are measured from
    assert sorted(os.listdir(kernel_dir)) == sorted(KERNEL_FILES + recorded)
    spec = read_spec(kernel_dir)
    assert schema_errors(spec) == []
    assert spec["argv"][0] == PYTHON
    assert "{connection_file}" in spec["argv"]
    assert spec["display_name"] == expected.get("display_name", spec["display_name"])
    conf = spark_conf_of(spec)
    assert conf["spark.master"] == spec["metadata"]["pyspark_kernel"]["master"] == expected.get("master", "local[*]")
    for key, value in expected.get("conf", {}).items():
        assert conf[key] == value
    for key, value in expected.get("env", {}).items():
        assert spec["env"][key] == value
    assert spec["env"]["SPARK_HOME"] == expected.get("spark_home", PIP_SPARK_HOME)
    assert spec["env"]["PYSPARK_PYTHON"] == PYTHON
    assert spec["metadata"]["supported_encryption"] == ["curve"]  # as the installed ipykernel declares
    options = json.loads(spec["env"]["PYSPARK_KERNEL_OPTIONS"])
    defaults = {"init": "background", "warm_up": "python", "progress": True, "log_level": "WARN", "start_timeout": 600, "idle_timeout": 0, "class_data_sharing": True,
                "ui_access": "owner", "sql_rows": 20}
    assert options == {**defaults, **expected.get("options", {})}


@pytest.mark.parametrize("context, field", [row[1:] for row in UNSUPPORTED], ids=[row[0] for row in UNSUPPORTED])
def test_unsupported_answers_fail_with_one_error_line_and_leave_nothing(bake, capfd, context, field):
    result, out = bake(context)
    assert result.exit_code != 0
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ") and "Stopping generation" not in line]
    assert len(errors) == 1, errors
    assert re.fullmatch(rf"ERROR: {re.escape(field)}: .+ \(.+\)", errors[0]), errors[0]
    assert os.listdir(out) == []


def test_no_rendered_file_keeps_a_cookiecutter_placeholder(bake):
    result, _ = bake({"kernel_name": "placeholders"})
    assert result.exit_code == 0, result.exception
    for relative, content in tree_snapshot(result.project_path).items():
        assert b"{{ cookiecutter." not in content and b"{{cookiecutter." not in content, relative


def test_the_runtime_is_byte_compiled_for_the_kernels_python_which_imports_it_from_there(bake):
    """A kernel that cannot write byte code (a shared kernel's directory, PYTHONDONTWRITEBYTECODE)
    reads the runtime's from its directory, written by create, and compiles nothing."""
    import subprocess
    import sys

    result, _ = bake({"kernel_name": "compiled"})
    assert result.exit_code == 0, result.exception
    package = result.project_path / "pyspark_kernel_runtime"
    tag = sys.implementation.cache_tag  # the tests' Python is the kernel's (PYTHON)
    written = sorted(os.listdir(package / "__pycache__"))
    assert written == sorted(f"{path.stem}.{tag}.pyc" for path in package.glob("*.py"))
    load = ("import importlib.util, os, sys\n"
            f"package = {str(package)!r}\n"
            "spec = importlib.util.spec_from_file_location('pyspark_kernel_runtime', os.path.join(package, '__init__.py'), submodule_search_locations=[package])\n"
            "runtime = importlib.util.module_from_spec(spec); sys.modules[spec.name] = runtime; spec.loader.exec_module(runtime)\n"
            "import pyspark_kernel_runtime.notebook, pyspark_kernel_runtime.shared\n")
    done = subprocess.run([PYTHON, "-v", "-c", load], capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    for module in ("__init__", "notebook", "shared"):
        assert f"code object from '{package / '__pycache__' / f'{module}.{tag}.pyc'}'" in done.stderr, module
    assert sorted(os.listdir(package / "__pycache__")) == written


def test_template_variables_are_the_public_interface():
    with open(os.path.join(ROOT, "cookiecutter.json"), encoding="utf-8") as handle:
        context = json.load(handle)
    public = [key for key in context if not key.startswith("_")]
    issue_2_names = ["kernel_name", "display_name", "venv_dir", "spark_home", "spark_master", "spark_conf", "env"]
    assert [name for name in public if name in issue_2_names] == issue_2_names
    assert context["kernel_name"] == "pyspark-local" and context["profile"][0] == "local"
    assert set(context["__prompts__"]) == set(public)


def test_bad_answer_leaves_an_existing_kernel_byte_identical(bake, capfd):
    first, out = bake({"kernel_name": "keep"})
    assert first.exit_code == 0, first.exception
    before = tree_snapshot(first.project_path)
    from cookiecutter.exceptions import FailedHookException
    from cookiecutter.main import cookiecutter

    with pytest.raises(FailedHookException):
        cookiecutter(ROOT, no_input=True, overwrite_if_exists=True, output_dir=str(out),
                     extra_context={"kernel_name": "keep", "spark_master": "locl[*]"})
    assert "ERROR: spark_master: " in capfd.readouterr().err
    assert tree_snapshot(first.project_path) == before


def test_overwrite_leaves_no_file_of_the_old_kernel(bake):
    first, out = bake({"kernel_name": "again", "spark_master": "local[2]"})
    assert first.exit_code == 0, first.exception
    (first.project_path / "old-environment.tar.gz").write_bytes(b"stale")
    from cookiecutter.main import cookiecutter

    cookiecutter(ROOT, no_input=True, overwrite_if_exists=True, output_dir=str(out), extra_context={"kernel_name": "again", "spark_master": "local[3]"})
    assert sorted(os.listdir(first.project_path)) == KERNEL_FILES
    assert spark_conf_of(read_spec(first.project_path))["spark.master"] == "local[3]"


def test_missing_pyhocon_in_the_cookiecutter_environment_names_the_install_command(tmp_path):
    """A cookiecutter installed with pipx lacks pyhocon: one ERROR line with the command to run."""
    import subprocess

    venv = venv_with_project_packages(tmp_path, ("pyhocon",))
    out = tmp_path / "out"
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "cookiecutter", ROOT, "--no-input", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: cookiecutter: ")]
    assert errors == [f"ERROR: cookiecutter: pyhocon is not installed for {venv / 'bin' / 'python'} "
                      f"({venv / 'bin' / 'python'} -m pip install pyhocon jsonschema packaging, or for a pipx install: pipx inject cookiecutter pyhocon jsonschema packaging)"]
    assert not out.exists() or os.listdir(out) == []


def test_a_kernel_name_that_climbs_out_deletes_nothing(tmp_path):
    """Cookiecutter deletes the directory it made when a hook fails: for "x/.." that would be the
    kernels directory. The name is refused before cookiecutter creates anything."""
    import subprocess

    kernels = tmp_path / "home" / "kernels"
    (kernels / "other").mkdir(parents=True)
    (kernels / "other" / "kernel.json").write_text("{}")
    for name in ("x/..", "x/../..", "a/b/c"):
        done = subprocess.run([os.path.join(VENV_DIR, "bin", "cookiecutter"), ROOT, "--no-input", "-o", str(kernels), f"kernel_name={name}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [f'ERROR: kernel_name: invalid kernel name "{name}" (kernel names can only contain ASCII letters and numbers and these separators: - . _)']
        assert sorted(os.listdir(kernels)) == ["other"] and (kernels / "other" / "kernel.json").read_text() == "{}"


def test_an_interrupted_replacement_is_recovered_by_the_next_one(bake):
    first, out = bake({"kernel_name": "again"})
    assert first.exit_code == 0, first.exception
    kernel = first.project_path
    # As a replacement killed in the middle leaves it: the old kernel aside, some new files beside.
    aside = kernel / ".pyspark-kernel-replaced"
    aside.mkdir()
    for entry in os.listdir(kernel):
        if entry != aside.name:
            os.rename(kernel / entry, aside / entry)
    (kernel / "pyspark_startup.py").write_text("# half-written")
    from cookiecutter.main import cookiecutter

    cookiecutter(ROOT, no_input=True, overwrite_if_exists=True, output_dir=str(out), extra_context={"kernel_name": "again", "spark_master": "local[3]"})
    assert sorted(os.listdir(kernel)) == KERNEL_FILES
    assert spark_conf_of(read_spec(kernel))["spark.master"] == "local[3]"
