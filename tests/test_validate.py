"""Answer checks that need nothing but the answers: each bad value gets its field and a fix."""

import pytest

from pyspark_kernel.errors import InputError
from pyspark_kernel.validate import check_env, check_flag, check_kernel_name, check_master, check_platform, check_spark_conf, check_start_timeout, master_kind

SUPPORTED_MASTERS = [
    ("local", "local"),
    ("local[1]", "local"),
    ("local[*]", "local"),
    ("local[4,2]", "local"),
    ("local[*,3]", "local"),
    ("spark://127.0.0.1:7077", "standalone"),
    ("spark://m1.example.org:7077,m2.example.org:7077", "standalone"),
    ("yarn", "yarn"),
    ("k8s://https://10.0.0.1:6443", "kubernetes"),
    ("k8s://https://api.cluster.local", "kubernetes"),
    ("sc://localhost", "connect"),
    ("sc://localhost:15002", "connect"),
    ("sc://connect.example.org:443/;use_ssl=true;user_id=ana", "connect"),
]
UNSUPPORTED_MASTERS = [
    "", "locl[*]", "local[]", "local[0]", "local[-1]", "local[x]", "local[*", "spark://", "spark://host",
    "spark://host:port", "spark:/host:7077", "spark://host:7077,", "yarn-client", "YARN", "k8s://", "k8s://ftp://h:1",
    "sc://", "sc://host:abc", "mesos://host:5050", " local[*]", "local[*] ", "local[*]\n", "spark://h:7077; rm -rf /",
]


@pytest.mark.parametrize("master, kind", SUPPORTED_MASTERS, ids=[m for m, _ in SUPPORTED_MASTERS])
def test_supported_master_is_accepted(master, kind):
    assert check_master(master) == master
    assert master_kind(master) == kind


@pytest.mark.parametrize("master", UNSUPPORTED_MASTERS, ids=repr)
def test_unsupported_master_is_refused_with_the_accepted_forms(master):
    with pytest.raises(InputError) as caught:
        check_master(master)
    assert caught.value.field == "spark_master"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["pyspark-local", "etl", "team.etl_2", "a", "x" * 64])
def test_jupyter_kernel_name_is_accepted(name):
    assert check_kernel_name(name) == name


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "empty"), ("a/b", "invalid kernel name"), ("..", "starts with a dot"), (".hidden", "starts with a dot"),
        ("my kernel", "invalid kernel name"), ("Etl", "uppercase"), ("étl", "invalid kernel name"), ("x" * 300, "300 characters"),
        ("a\nb", "invalid kernel name"), ("{{x}}", "invalid kernel name"),
    ],
    ids=repr,
)
def test_bad_kernel_name_is_refused(name, words):
    with pytest.raises(InputError) as caught:
        check_kernel_name(name)
    assert caught.value.field == "kernel_name"
    assert words in str(caught.value)
    assert str(caught.value).startswith("ERROR: kernel_name: ") and "\n" not in str(caught.value)


def test_conf_values_are_normalised_to_spark_text():
    assert check_spark_conf({"spark.a": True, "spark.b": 8, "spark.c": 1.5, "spark.d": "x y"}) == {
        "spark.a": "true", "spark.b": "8", "spark.c": "1.5", "spark.d": "x y"}


@pytest.mark.parametrize("key, value", [
    ("spark.executor.memory", "512m"), ("spark.driver.memory", "4g"), ("spark.executor.memoryOverhead", "1024"),
    ("spark.driver.maxResultSize", "0"), ("spark.memory.offHeap.size", "2G"),
    ("spark.kubernetes.driver.label.app.kubernetes.io/name", "etl"),
])
def test_supported_conf_setting_is_accepted(key, value):
    assert check_spark_conf({key: value}) == {key: value}


@pytest.mark.parametrize("conf, words", [
    ({"executor.memory": "1g"}, "is not a Spark setting"),
    ({"spark": "1"}, "is not a Spark setting"),
    ({"spark..x": "1"}, "is not a Spark setting"),
    ({"spark.a b": "1"}, "is not a Spark setting"),
    ({"spark.a=b": "1"}, "is not a Spark setting"),
    ({"spark.master": "local"}, "set spark_master instead"),
    ({"spark.x": ""}, "is empty"),
    ({"spark.x": "a\x00b"}, "NUL"),
    ({"spark.executor.memory": "4 gb"}, "is not a size"),
    ({"spark.executor.memory": "-1g"}, "is not a size"),
    ({"spark.driver.memory": "lots"}, "is not a size"),
    ({"spark.x": ["a"]}, "type list"),
    ("spark.x=1", "must be a mapping"),
], ids=repr)
def test_bad_conf_is_refused(conf, words):
    with pytest.raises(InputError) as caught:
        check_spark_conf(conf)
    assert caught.value.field == "spark_conf"
    assert words in str(caught.value)


@pytest.mark.parametrize("env, words", [
    ({"A=B": "x"}, "is not an environment variable name"),
    ({"1X": "x"}, "is not an environment variable name"),
    ({"": "x"}, "is not an environment variable name"),
    ({"SPARK_HOME": "/opt/spark"}, "set spark_home instead"),
    ({"PYSPARK_PYTHON": "/usr/bin/python3"}, "set venv_dir instead"),
    ({"X": "a\x00"}, "NUL"),
], ids=repr)
def test_bad_env_is_refused(env, words):
    with pytest.raises(InputError) as caught:
        check_env(env)
    assert caught.value.field == "env"
    assert words in str(caught.value)


def test_env_values_are_kept_exactly():
    value = "a b \"c\" $(d) ${?E} {{ f }} \\ \n ü"
    assert check_env({"MY_VAR": value}) == {"MY_VAR": value}


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("yes", True), ("No", False), ("on", True), ("0", False)])
def test_yes_no_answers_are_read_as_cookiecutter_gives_them(value, expected):
    assert check_flag("progress", value) is expected


@pytest.mark.parametrize("value", ["maybe", "", None, 2])
def test_anything_else_is_not_a_yes_or_no(value):
    with pytest.raises(InputError, match="^ERROR: progress: .* is not yes or no"):
        check_flag("progress", value)


@pytest.mark.parametrize("value, expected", [("30", 30), (45, 45), ("2.5", 2.5), ("", None), (None, None)])
def test_start_timeout_is_a_number_of_seconds(value, expected):
    assert check_start_timeout(value) == expected


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "99999", [30]])
def test_start_timeout_out_of_range_is_refused(value):
    with pytest.raises(InputError, match="^ERROR: start_timeout: "):
        check_start_timeout(value)


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_linux_and_macos_are_supported(platform):
    assert check_platform(platform) == platform


@pytest.mark.parametrize("platform", ["win32", "cygwin", "freebsd14"])
def test_other_platforms_are_refused_with_one_line(platform):
    with pytest.raises(InputError, match=f"^ERROR: platform: {platform} is not supported \\(pyspark-kernel runs on Linux and macOS; on Windows, use WSL\\)$"):
        check_platform(platform)
