"""Property test: any conf or env answer gives either one clean ERROR or a kernel.json that
validates and gives back every value exactly, as jupyter_client hands it to the kernel."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyspark_kernel import kernelspec, layers
from pyspark_kernel.environment import PythonEnv
from pyspark_kernel.errors import InputError
from pyspark_kernel.sparkhome import SparkInstall
from pyspark_kernel.validate import check_answers

PYTHON_ENV = PythonEnv(python="/venv/bin/python", prefix="/venv", python_version="3.11.7", ipykernel="7.4.0",
                       pyspark="4.3.0", pyspark_dir="/venv/lib/pyspark", py4j="0.10.9.9")
SPARK = SparkInstall(home="/venv/lib/pyspark", layout="pip", spark_version="4.3.0", py4j_version="0.10.9.9")

key_part = st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=12)
conf_keys = st.one_of(st.builds(lambda parts: "spark." + ".".join(parts), st.lists(key_part, min_size=1, max_size=3)), st.text(max_size=20))
env_names = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True), st.text(max_size=10))
values = st.text(max_size=40)


def build(answers):
    answers = check_answers(answers)
    config = layers.merge([layers.answers_layer(answers)])
    return kernelspec.check_spec(kernelspec.make_spec(answers, PYTHON_ENV, SPARK, config)), answers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conf=st.dictionaries(conf_keys, values, max_size=4), env=st.dictionaries(env_names, values, max_size=4),
       display_name=st.text(min_size=1, max_size=30))
def test_any_answer_is_a_clean_error_or_round_trips_exactly(conf, env, display_name):
    answers = {"kernel_name": "fuzz", "display_name": display_name, "spark_master": "local[*]", "spark_conf": conf, "env": env}
    try:
        spec, checked = build(answers)
    except InputError as error:
        message = str(error)
        assert message.startswith("ERROR: ") and "\n" not in message and message.endswith(")")
        return
    spec = json.loads(kernelspec.dump_spec(spec))  # as written to and read from kernel.json
    assert kernelspec.schema_errors(spec) == []
    assert spec["display_name"] == display_name
    delivered = kernelspec.kernel_environment(spec["env"], {"HOME": "/home/someone", "PATH": "/usr/bin"})
    conf_delivered = json.loads(delivered[kernelspec.CONF_VARIABLE])
    for key, value in conf.items():
        assert conf_delivered[key] == value
    for name, value in env.items():
        assert delivered[name] == value
