"""From answers to a finished kernel spec: every check and every look-up, no file written."""

import glob
import logging
import os
import sys

from . import environment, kernelspec, layers, sparkhome
from .errors import InputError
from .pack import packer
from .runtime.frames import EAGER_EVAL
from .runtime.options import OPTIONS
from .validate import check_answers, check_env, check_platform, check_spark_conf, check_value, master_kind, merge_packages

DEFAULTS_PATH = os.path.join(kernelspec.TEMPLATE_ROOT, "defaults.conf")
PROFILES_DIR = os.path.join(kernelspec.TEMPLATE_ROOT, "profiles")
log = logging.getLogger(__name__)


def check_shared_driver(master, spark):
    """A shared driver is a Spark Connect server that the kernel starts: Spark 4's, from its jars."""
    if master_kind(master) == "connect":
        raise InputError("spark_driver", f"shared starts a Spark Connect server of its own, and the master {master} is one already",
                         "leave spark_driver empty for a Connect kernel, or give a local or cluster master")
    major = int(spark.spark_version.split(".")[0]) if spark.spark_version[:1].isdigit() else 0
    if major < 4:
        raise InputError("spark_driver", f"shared needs Spark 4.0 or later, whose jars include the Spark Connect server; this environment has Spark {spark.spark_version}",
                         "use --spark_driver dedicated, or an environment with pyspark 4")
    if not glob.glob(os.path.join(spark.home, "jars", "spark-connect_*.jar")):
        raise InputError("spark_driver", f"shared needs the Spark Connect server, and {spark.home}/jars has no spark-connect jar",
                         "use the pyspark package or a Spark distribution that includes Spark Connect, or --spark_driver dedicated")


def profile_names(profiles_dir):
    return sorted(name[: -len(".conf")] for name in os.listdir(profiles_dir) if name.endswith(".conf"))


def profile_path(profile, profiles_dir=PROFILES_DIR):
    path = profile if profile.endswith(".conf") else os.path.join(profiles_dir, f"{profile}.conf")
    if not os.path.isfile(path):
        raise InputError("profile", f"no profile {profile!r}", f"use one of {', '.join(profile_names(profiles_dir))}, or the path of a .conf file")
    return path


def profile_master(profile, profiles_dir=PROFILES_DIR):
    """The master a profile sets: the default of the spark_master prompt."""
    return layers.merge([layers.read_layer(profile_path(profile, profiles_dir))])["master"]


def config_layers(answers):
    """The configuration layers for ``answers``, lowest first."""
    found = [layers.read_layer(DEFAULTS_PATH), layers.read_layer(profile_path(answers["profile"]))]
    if answers["spark_defaults"]:
        found.append(layers.read_spark_defaults(answers["spark_defaults"]))
    return found + [layers.answers_layer(answers)]


def build_spec(answers: dict, environ: dict | None = None) -> dict:
    """The kernel.json dict for ``answers``; raises InputError naming the first problem."""
    check_platform(sys.platform)
    answers = check_answers(answers)
    log.info("answers checked")
    python_env = environment.find_environment(answers["venv_dir"])
    log.info("environment found: %s (Python %s)", python_env.prefix, python_env.python_version)
    config = layers.merge(config_layers(answers))
    log.info("layers merged: defaults.conf, profile %s%s, answers; master %s", answers["profile"],
             ", " + answers["spark_defaults"] if answers["spark_defaults"] else "", config["master"])
    if master_kind(config["master"]) == "connect":
        environment.check_connect_client(python_env)
        spark = sparkhome.client_only(python_env) if not answers["spark_home"] else sparkhome.resolve(answers["spark_home"], python_env, environ)
    else:
        spark = sparkhome.resolve(answers["spark_home"], python_env, environ)
    log.info("spark home resolved: %s (Spark %s, %s)", spark.home or "none: a Spark Connect client", spark.spark_version, spark.layout)
    # The template's own layers are checked like answers: a team's defaults.conf can have typos too.
    config["conf"] = check_spark_conf(config["conf"])
    config["env"] = check_env(config["env"])
    for option in OPTIONS:
        if option.in_profile:  # empty in every layer: the option's fallback
            value = check_value(option.name, config[option.name])
            config[option.name] = option.runtime_default if value is None else value
    # The display is Spark's own setting (runtime.frames reads it), unless the layers set it.
    config["conf"].setdefault(EAGER_EVAL, "true" if answers["dataframe_display"] == "table" else "false")
    config["conf"] = merge_packages(config["conf"], answers["packages"], master_kind(config["master"]), config["spark_driver"])
    if config["spark_driver"] == "shared":
        check_shared_driver(config["master"], spark)
        environment.check_connect_client(python_env)  # the notebooks are Spark Connect clients
    spec = kernelspec.check_spec(kernelspec.make_spec(answers, python_env, spark, config))
    log.info("spec validated against schema/kernel.schema.json")
    if kernelspec.ships_environment(spec):
        packer(python_env.prefix)  # fail now, before any file is written, if it cannot be packed
        log.info("the environment can be packed for the executors")
    return spec
