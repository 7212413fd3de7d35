"""The options table (runtime.options.OPTIONS): declared once, everything else derived from it or
checked against it (cookiecutter.json, the README's table, defaults.conf)."""

import argparse
import json
import os

import pytest
from pyhocon import ConfigFactory

from pyspark_kernel import cli, hooks, layers, options_doc, validate
from pyspark_kernel.kernelspec import runtime_options
from pyspark_kernel.runtime import diagnostics, options
from pyspark_kernel.runtime.options import OPTION, OPTIONS, RUNTIME_OPTIONS

from .conftest import ROOT


def read_json(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        return json.load(handle)


def test_cookiecutter_json_has_the_tables_variables_defaults_and_choices_in_order():
    context = read_json("cookiecutter.json")
    public = {key: value for key, value in context.items() if not key.startswith("_")}
    expected = options_doc.cookiecutter_variables()
    assert list(public) == list(expected)  # cookiecutter asks in this order
    assert public == expected  # a list compares its choices in order too


def test_cookiecutter_json_has_the_tables_prompts():
    assert read_json("cookiecutter.json")["__prompts__"] == options_doc.cookiecutter_prompts()


def test_cookiecutter_offers_every_log_level_the_runtime_knows():
    assert read_json("cookiecutter.json")["log_level"] == list(options.LOG_LEVELS)


@pytest.mark.parametrize("path, markers, table", options_doc.documents(), ids=lambda value: os.path.basename(value) if isinstance(value, str) and value.endswith(".md") else "")
def test_the_documents_tables_are_the_generated_ones(path, markers, table):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert text.count(markers[0]) == 1 and text.count(markers[1]) == 1
    assert options_doc.region(text, markers) == table, "run: python -m pyspark_kernel.options_doc --write"


def test_the_readme_has_a_row_for_every_option():
    table = options_doc.options_table()
    for option in OPTIONS:
        assert f"| `{option.name}` |" in table and option.help.replace("|", "\\|") in table


def test_the_variables_table_names_every_cookiecutter_variable():
    with open(os.path.join(ROOT, "docs", "making-kernels.md"), encoding="utf-8") as handle:
        variables = handle.read().partition("## Variables")[2].partition("\n\n#")[0]
    named = [line.split("`")[1] for line in variables.splitlines() if line.startswith("| `")]
    assert named == [option.name for option in OPTIONS if option.cookiecutter]


def test_the_flags_table_has_a_row_for_every_option_and_every_create_flag():
    table = options_doc.markdown_table()
    for option in OPTIONS:
        assert option.help.replace("|", "\\|") in table
    for flag in ("--kernels_template_path", "--kernels_dir_path", "--sys-prefix", "--force", "--verbose", "--spark.KEY VALUE"):
        assert f"{flag}" in table


def test_replace_region_keeps_the_text_around_the_markers():
    text = f"before\n{options_doc.BEGIN}\nold\n{options_doc.END}\nafter\n"
    replaced = options_doc.replace_region(text, "| new |\n")
    assert replaced == f"before\n{options_doc.BEGIN}\n| new |\n{options_doc.END}\nafter\n"
    assert options_doc.region(replaced) == "| new |\n"
    with pytest.raises(ValueError):
        options_doc.replace_region("no markers", "| new |\n")


def test_every_option_has_one_check_and_create_parses_its_flag():
    assert list(validate.CHECKS) == [option.name for option in OPTIONS]
    parser = argparse.ArgumentParser()
    cli.add_option_flags(parser)
    declared = {action.dest for action in parser._actions}
    assert declared == {option.name for option in OPTIONS if option.create_flags} | {"help"}
    assert not OPTION["spark_conf"].create_flags  # --spark.KEY: split off before argparse


@pytest.mark.parametrize("option", [option for option in OPTIONS if option.kind in ("choice", "flag")], ids=lambda option: option.name)
def test_each_choice_and_flag_is_checked_by_its_kind(option):
    good = option.choices[-1] if option.choices else False
    assert validate.check_value(option.name, good) == good
    with pytest.raises(Exception, match=f"ERROR: {option.name}: "):
        validate.check_value(option.name, "not-an-answer")


def test_derived_lists_follow_the_table():
    assert hooks.PUBLIC_ANSWERS == tuple(option.name for option in OPTIONS if option.cookiecutter)
    assert layers.KERNEL_KEYS == ("start_timeout", "idle_timeout", "spark_driver", "driver_linger")
    assert set(hooks.PATH_ANSWERS) == {"venv_dir", "spark_home", "spark_defaults", "profile"}
    assert set(hooks.JSON_ANSWERS) == {"spark_conf", "env", "env_from"}
    assert set(options.DEFAULT_OPTIONS) == {option.runtime for option in RUNTIME_OPTIONS}
    fix = validate.RESERVED_ENV[options.OPTIONS_VARIABLE]
    assert all(option.name in fix for option in RUNTIME_OPTIONS)


def test_runtime_options_come_from_answers_or_from_the_merged_layers():
    answers = {option.name: option.runtime_default for option in OPTIONS} | {"env_from": []}
    config = {"start_timeout": 120, "idle_timeout": 5, "spark_driver": "dedicated", "driver_linger": 30}
    written = runtime_options(answers, config, ships_environment=False)
    assert (written["init"], written["start_timeout"], written["idle_timeout"]) == ("background", 120, 5)
    assert set(written) == {option.runtime for option in RUNTIME_OPTIONS} - {"spark_driver", "driver_linger", "driver_prestart"}  # a dedicated driver's names none
    shared = runtime_options(answers, {**config, "spark_driver": "shared", "driver_linger": 45}, ships_environment=False)
    assert (shared["spark_driver"], shared["driver_linger"]) == ("shared", 45)


def test_the_templates_defaults_conf_agrees_with_the_tables_fallbacks():
    kernel = ConfigFactory.parse_file(os.path.join(ROOT, "defaults.conf")).get_config("kernel")
    for key in kernel:
        assert kernel[key] == OPTION[key].fallback, key


def test_the_runtime_refuses_or_replaces_a_choice_as_the_table_says():
    assert options.read_value(OPTION["warm_up"], "sometimes") == "python"
    assert options.read_value(OPTION["log_level"], "LOUD") == "LOUD"  # Spark says what it makes of it
    with pytest.raises(diagnostics.SetupError, match="spark_driver in PYSPARK_KERNEL_OPTIONS is \"both\", not one of dedicated, shared; regenerate"):
        options.read_value(OPTION["spark_driver"], "both")


def test_the_runtime_keeps_a_row_count_above_zero_and_else_takes_the_default():
    assert options.read_value(OPTION["sql_rows"], 5) == 5
    for bad in (0, -1, "5", True, 2.5):
        assert options.read_value(OPTION["sql_rows"], bad) == 20
    assert options.read_options({})["sql_rows"] == 20
