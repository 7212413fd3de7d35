"""schema/kernel.schema.json: accepts what Jupyter writes and what we write, rejects broken specs."""

import copy
import json
import os
import subprocess
import sys

import pytest
from jsonschema import Draft202012Validator

from pyspark_kernel.kernelspec import load_schema, schema_errors

from .conftest import ROOT, read_spec

GOOD = {
    "argv": ["/venv/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "PySpark",
    "language": "python",
    "interrupt_mode": "signal",
    "env": {"SPARK_HOME": "/opt/spark"},
    "metadata": {
        "debugger": True,
        "pyspark_kernel": {
            "generator_version": "0.1.0", "master": "local[*]", "spark_version": "4.3.0", "py4j_version": "0.10.9.9",
            "python_version": "3.11.7", "python": "/venv/bin/python", "spark_home": "/opt/spark", "spark_layout": "pip",
            "runtime_version": "5c21cca2d908",
            "answers": {"kernel_name": "etl", "display_name": "ETL", "venv_dir": "/venv", "spark_master": "local[2]", "spark_conf": {"spark.x": "${env:X}"},
                        "env": {"A": "b"}, "env_from": ["TOKEN"], "spark_init": "lazy", "start_timeout": None, "idle_timeout": 60, "spark_driver": None, "sql_rows": 5},
        },
    },
}


def broken(change):
    spec = copy.deepcopy(GOOD)
    change(spec)
    return spec


MALFORMED = {
    "no-argv": lambda s: s.pop("argv"),
    "argv-a-string": lambda s: s.update(argv="python -m ipykernel_launcher -f {connection_file}"),
    "argv-empty": lambda s: s.update(argv=[]),
    "argv-without-connection-file": lambda s: s.update(argv=["python", "-m", "ipykernel_launcher"]),
    "argv-with-a-number": lambda s: s["argv"].append(3),
    "no-display-name": lambda s: s.pop("display_name"),
    "empty-display-name": lambda s: s.update(display_name=""),
    "no-language": lambda s: s.pop("language"),
    "interrupt-mode-typo": lambda s: s.update(interrupt_mode="signals"),
    "env-number-value": lambda s: s["env"].update(SPARK_WORKER_CORES=2),
    "env-bad-name": lambda s: s["env"].update({"A=B": "x"}),
    "env-a-list": lambda s: s.update(env=["A=B"]),
    "metadata-a-string": lambda s: s.update(metadata="x"),
    "our-block-missing-spark-version": lambda s: s["metadata"]["pyspark_kernel"].pop("spark_version"),
    "our-block-unknown-layout": lambda s: s["metadata"]["pyspark_kernel"].update(spark_layout="rpm"),
    "our-block-extra-field": lambda s: s["metadata"]["pyspark_kernel"].update(password="x"),
    "runtime-version-not-a-hash": lambda s: s["metadata"]["pyspark_kernel"].update(runtime_version="0.1.0"),
    "answers-unknown-answer": lambda s: s["metadata"]["pyspark_kernel"]["answers"].update(password="x"),
    "answers-number-setting": lambda s: s["metadata"]["pyspark_kernel"]["answers"]["spark_conf"].update({"spark.y": 1}),
    "answers-unknown-init": lambda s: s["metadata"]["pyspark_kernel"]["answers"].update(spark_init="later"),
    "protocol-version-not-dotted": lambda s: s.update(kernel_protocol_version="5"),
}


def test_schema_is_valid_draft_2020_12():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_hand_written_good_spec_is_accepted():
    assert schema_errors(GOOD) == []


def test_what_ipykernel_install_writes_today_is_accepted(tmp_path):
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp_path), "--name", "plain"], check=True, capture_output=True,
                   env={**os.environ, "TMPDIR": str(tmp_path)})  # ipykernel leaves its staging directory behind
    spec = read_spec(tmp_path / "share" / "jupyter" / "kernels" / "plain")
    assert schema_errors(spec) == []


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_spec_is_rejected(name):
    assert schema_errors(broken(MALFORMED[name])) != []


def test_schema_file_is_where_the_brief_says():
    with open(f"{ROOT}/schema/kernel.schema.json", encoding="utf-8") as handle:
        assert json.load(handle) == load_schema()


def test_the_recorded_answers_are_the_options_table():
    from pyspark_kernel.runtime.options import OPTIONS

    answers = load_schema()["$defs"]["answers"]["properties"]
    assert list(answers) == [option.name for option in OPTIONS]
    for option in OPTIONS:
        if option.choices and option.kind == "choice":
            assert set(answers[option.name]["enum"]) - {None} == set(option.choices), option.name
