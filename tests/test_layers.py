"""HOCON layers: defaults < answers, ${?ENV} substitution, key styles, and answers kept as data."""

import pytest

from pyspark_kernel import layers
from pyspark_kernel.build import DEFAULTS_PATH
from pyspark_kernel.errors import InputError

ANSWERS = {"spark_master": "local[2]", "spark_conf": {}, "env": {}}


def write(tmp_path, text):
    path = tmp_path / "layer.conf"
    path.write_text(text)
    return path


def test_answers_override_defaults_key_by_key(tmp_path):
    base = layers.read_layer(write(tmp_path, '''
        spark { master = "local[*]", conf { "spark.a" = "1", "spark.b" = "2" } }
        env { KEEP = "k", OVER = "default" }
    '''))
    answers = layers.answers_layer({"spark_master": "local[2]", "spark_conf": {"spark.b": "answer"}, "env": {"OVER": "answer"}})
    merged = layers.merge([base, answers])
    assert merged == {"master": "local[2]", "conf": {"spark.a": "1", "spark.b": "answer"}, "env": {"KEEP": "k", "OVER": "answer"}, "executor_python": None,
                      "start_timeout": None, "idle_timeout": None, "spark_driver": None, "driver_linger": None}


def test_a_profile_can_share_the_driver_and_an_answer_overrides_it(tmp_path):
    profile = layers.read_layer(write(tmp_path, 'spark { master = "local[*]" }\nkernel { spark_driver = shared, driver_linger = 10 }'))
    merged = layers.merge([profile, layers.answers_layer(ANSWERS)])
    assert (merged["spark_driver"], merged["driver_linger"]) == ("shared", 10)
    merged = layers.merge([profile, layers.answers_layer({**ANSWERS, "spark_driver": "dedicated"})])
    assert merged["spark_driver"] == "dedicated"


def test_env_substitution_is_resolved_from_the_generating_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PK_TEST_CONF_DIR", "/etc/hadoop/conf")
    monkeypatch.delenv("PK_TEST_UNSET", raising=False)
    layer = layers.read_layer(write(tmp_path, 'env { HADOOP_CONF_DIR = ${?PK_TEST_CONF_DIR}, GONE = ${?PK_TEST_UNSET} }'))
    assert layers.merge([layer])["env"] == {"HADOOP_CONF_DIR": "/etc/hadoop/conf"}


def test_nested_and_quoted_keys_are_the_same_spark_setting(tmp_path):
    base = layers.read_layer(write(tmp_path, 'spark.conf { spark { executor.memory = 1g } }'))
    answers = layers.answers_layer({**ANSWERS, "spark_conf": {"spark.executor.memory": "4g"}})
    assert layers.merge([base, answers])["conf"] == {"spark.executor.memory": "4g"}


def test_hocon_types_become_spark_text_and_null_drops_a_default(tmp_path):
    base = layers.read_layer(write(tmp_path, 'spark.conf { "spark.a" = true, "spark.b" = 8, "spark.jars" = [a.jar, b.jar], "spark.gone" = x }'))
    top = layers.read_layer(write(tmp_path, 'spark.conf { "spark.gone" = null }'))
    assert layers.merge([base, top])["conf"] == {"spark.a": "true", "spark.b": "8", "spark.jars": "a.jar,b.jar"}


def test_answers_are_data_not_hocon(monkeypatch):
    monkeypatch.setenv("HOME", "/should/not/appear")
    value = '${?HOME} ${HOME} "quoted" { x = 1 } # not a comment'
    merged = layers.merge([layers.answers_layer({**ANSWERS, "spark_conf": {"spark.v": value}, "env": {"V": value}})])
    assert merged["conf"] == {"spark.v": value}
    assert merged["env"] == {"V": value}


def test_broken_hocon_names_the_file(tmp_path):
    path = write(tmp_path, "spark { conf { ")
    with pytest.raises(InputError) as caught:
        layers.read_layer(path)
    assert caught.value.field == str(path)
    assert "\n" not in str(caught.value)


def test_template_defaults_parse_and_keep_the_generating_java_home(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/opt/jdk-17")
    merged = layers.merge([layers.read_layer(DEFAULTS_PATH)])
    assert merged["master"] is None  # the master's default is spark_master in cookiecutter.json
    assert merged["env"] == {"JAVA_HOME": "/opt/jdk-17"}
    assert merged["conf"]["spark.ui.showConsoleProgress"] == "false"
