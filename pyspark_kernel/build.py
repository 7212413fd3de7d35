"""From answers to a finished kernel spec: every check and every look-up, no file written."""

import os

from . import environment, kernelspec, layers, sparkhome
from .validate import check_answers, check_env, check_spark_conf

DEFAULTS_PATH = os.path.join(kernelspec.TEMPLATE_ROOT, "defaults.conf")


def build_spec(answers, environ=None):
    """The kernel.json dict for ``answers``; raises InputError naming the first problem."""
    answers = check_answers(answers)
    python_env = environment.inspect(answers["venv_dir"])
    spark = sparkhome.resolve(answers["spark_home"], python_env, environ)
    config = layers.merge([layers.read_layer(DEFAULTS_PATH), layers.answers_layer(answers)])
    # The template's own layers are checked like answers: a team's defaults.conf can have typos too.
    config["conf"] = check_spark_conf(config["conf"])
    config["env"] = check_env(config["env"])
    return kernelspec.check_spec(kernelspec.build_spec(answers, python_env, spark, config))
