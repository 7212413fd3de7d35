"""From answers to a finished kernel spec: every check and every look-up, no file written."""

import os
import sys

from . import environment, kernelspec, layers, sparkhome
from .errors import InputError
from .pack import packer
from .validate import check_answers, check_env, check_idle_timeout, check_platform, check_spark_conf, check_start_timeout, master_kind

DEFAULTS_PATH = os.path.join(kernelspec.TEMPLATE_ROOT, "defaults.conf")
PROFILES_DIR = os.path.join(kernelspec.TEMPLATE_ROOT, "profiles")
# A fork whose defaults.conf and profile set no start limit still gets one a busy machine can meet.
DEFAULT_START_TIMEOUT = 600


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


def build_spec(answers, environ=None):
    """The kernel.json dict for ``answers``; raises InputError naming the first problem."""
    check_platform(sys.platform)
    answers = check_answers(answers)
    python_env = environment.find_environment(answers["venv_dir"])
    config = layers.merge(config_layers(answers))
    if master_kind(config["master"]) == "connect":
        environment.check_connect_client(python_env)
        spark = sparkhome.client_only(python_env) if not answers["spark_home"] else sparkhome.resolve(answers["spark_home"], python_env, environ)
    else:
        spark = sparkhome.resolve(answers["spark_home"], python_env, environ)
    # The template's own layers are checked like answers: a team's defaults.conf can have typos too.
    config["conf"] = check_spark_conf(config["conf"])
    config["env"] = check_env(config["env"])
    config["start_timeout"] = check_start_timeout(config["start_timeout"]) or DEFAULT_START_TIMEOUT
    config["idle_timeout"] = check_idle_timeout(config["idle_timeout"]) or 0
    spec = kernelspec.check_spec(kernelspec.make_spec(answers, python_env, spark, config))
    if kernelspec.ships_environment(spec):
        packer(python_env.prefix)  # fail now, before any file is written, if it cannot be packed
    return spec
