"""The kernel's Spark configuration, merged from HOCON layers with pyhocon.

Layers, lowest first: the template's ``defaults.conf``, the cluster profile (``profiles/*.conf``),
an imported ``spark-defaults.conf``, then the user's answers. A layer has ``spark.master``,
``spark.conf`` (Spark settings), ``env`` (environment variables), ``executor.python`` ("pack",
or the path of the executors' Python) and ``kernel.start_timeout`` (the longest a start may take,
in seconds: a local JVM on a busy machine needs minutes, a YARN queue can need more) and
``kernel.idle_timeout`` (seconds without a Spark job before the session is stopped; 0: never),
``kernel.spark_driver`` (dedicated or shared) and ``kernel.driver_linger`` (seconds a shared driver
stays after its last notebook). HOCON
``${?NAME}`` substitutions are resolved when the layer is read, from the generating user's
environment, as in the original bash+HOCON tool; a substitution of an unset variable drops the key.
Answers never pass through the HOCON parser: they are data, not configuration text.
"""

import re

from pyhocon import ConfigFactory, ConfigTree
from pyhocon.exceptions import ConfigException
from pyparsing import ParseBaseException

from .errors import InputError, quote
from .runtime.options import OPTIONS
from .validate import conf_value_text


KERNEL_KEYS = tuple(option.name for option in OPTIONS if option.in_profile)  # a layer's kernel.* settings


def read_layer(path):
    try:
        return normalize(ConfigFactory.parse_file(path, resolve=True))
    except (ConfigException, ParseBaseException, OSError) as err:
        raise InputError(str(path), f"cannot read HOCON: {' '.join(str(err).split())}", "fix the file's syntax") from err


# Java properties, as Spark reads them: the key ends at the first space, = or :.
PROPERTY = re.compile(r"([^\s=:]+)\s*[\s=:]\s*(.*?)")


def read_spark_defaults(path):
    """A spark-defaults.conf (``key value`` or ``key=value`` lines, ``#`` comments) as a layer."""
    conf = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                found = PROPERTY.fullmatch(line)
                if not found or not found.group(2):
                    raise InputError("spark_defaults", f"{path}:{number}: {quote(line)} is not a setting", "write one setting per line: key value")
                conf[found.group(1)] = found.group(2)
    except OSError as error:
        raise InputError("spark_defaults", f"cannot read {path}: {error.strerror}", "give the path of a spark-defaults.conf") from None
    layer = ConfigTree()
    layer.put("spark.conf", quoted_tree(conf))
    return layer


def flatten(tree, prefix=""):
    """Spark settings as a flat {key: text} mapping. Both ``"spark.a.b" = 1`` and
    ``spark { a.b = 1 }`` give ``spark.a.b``; lists become Spark's comma-separated form; null removes
    the key, so a higher layer can drop a default."""
    flat = {}
    for raw_key, value in tree.items():
        key = prefix + raw_key.strip('"')
        if isinstance(value, ConfigTree):
            flat.update(flatten(value, key + "."))
        elif isinstance(value, list):
            flat[key] = ",".join(conf_value_text(item) for item in value)
        else:
            flat[key] = None if value is None else conf_value_text(value)
    return flat


# pyhocon stores a key quoted exactly when it holds one of these; a key stored otherwise is not found.
HOCON_SPECIAL = set('$}[]:=+#`^?!@*&.')


def quoted_tree(flat):
    """A ConfigTree whose keys are single HOCON keys, even with dots in them."""
    tree = ConfigTree()
    for key, value in flat.items():
        tree[f'"{key}"' if HOCON_SPECIAL & set(key) else key] = value
    return tree


def normalize(layer):
    """Rewrite a layer's spark.conf and env as flat quoted keys, so layers merge key by key."""
    result = ConfigTree()
    spark = layer.get_config("spark", ConfigTree())
    if "master" in spark:
        result.put("spark.master", spark.get("master"))
    if "conf" in spark:
        result.put("spark.conf", quoted_tree(flatten(spark.get_config("conf"))))
    if "env" in layer:
        result.put("env", quoted_tree(flatten(layer.get_config("env"))))
    if "python" in layer.get_config("executor", ConfigTree()):
        result.put("executor.python", layer.get_config("executor").get("python"))
    for key in KERNEL_KEYS:
        if key in layer.get_config("kernel", ConfigTree()):
            result.put(f"kernel.{key}", layer.get_config("kernel").get(key))
    return result


def answers_layer(answers):
    layer = ConfigTree()
    layer.put("spark.master", answers["spark_master"])
    if answers.get("executor_python"):
        layer.put("executor.python", answers["executor_python"])
    for key in KERNEL_KEYS:
        if answers.get(key) is not None:
            layer.put(f"kernel.{key}", answers[key])
    layer.put("spark.conf", quoted_tree(answers["spark_conf"]))
    layer.put("env", quoted_tree(answers["env"]))
    return layer


def merge(layers):
    """Merge layers (lowest first) into {"master", "conf", "env", "executor_python", "start_timeout",
    "idle_timeout", "spark_driver", "driver_linger"}, dropping nulls."""
    merged = ConfigTree()
    for layer in layers:
        merged = ConfigTree.merge_configs(merged, layer, copy_trees=True)
    plain = merged.as_plain_ordered_dict()
    spark = plain.get("spark", {})
    return {
        "master": spark.get("master"),
        "conf": {k: v for k, v in spark.get("conf", {}).items() if v is not None},
        "env": {k: v for k, v in plain.get("env", {}).items() if v is not None},
        "executor_python": plain.get("executor", {}).get("python"),
        **{key: plain.get("kernel", {}).get(key) for key in KERNEL_KEYS},
    }
