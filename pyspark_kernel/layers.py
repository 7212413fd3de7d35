"""The kernel's Spark configuration, merged from HOCON layers with pyhocon.

Layers, lowest first: the template's ``defaults.conf``, then the user's answers. A layer has
``spark.master``, ``spark.conf`` (Spark settings) and ``env`` (environment variables). HOCON
``${?NAME}`` substitutions are resolved when the layer is read, from the generating user's
environment, as in the original bash+HOCON tool; a substitution of an unset variable drops the key.
Answers never pass through the HOCON parser: they are data, not configuration text.
"""

from pyhocon import ConfigFactory, ConfigTree
from pyhocon.exceptions import ConfigException
from pyparsing import ParseBaseException

from .errors import InputError
from .validate import conf_value_text


def read_layer(path):
    try:
        return normalize(ConfigFactory.parse_file(path, resolve=True))
    except (ConfigException, ParseBaseException, OSError) as err:
        raise InputError(str(path), f"cannot read HOCON: {' '.join(str(err).split())}", "fix the file's syntax") from err


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
    return result


def answers_layer(answers):
    layer = ConfigTree()
    layer.put("spark.master", answers["spark_master"])
    layer.put("spark.conf", quoted_tree(answers["spark_conf"]))
    layer.put("env", quoted_tree(answers["env"]))
    return layer


def merge(layers):
    """Merge layers (lowest first) into {"master", "conf", "env"}, dropping null values."""
    merged = ConfigTree()
    for layer in layers:
        merged = ConfigTree.merge_configs(merged, layer, copy_trees=True)
    plain = merged.as_plain_ordered_dict()
    spark = plain.get("spark", {})
    return {
        "master": spark.get("master"),
        "conf": {k: v for k, v in spark.get("conf", {}).items() if v is not None},
        "env": {k: v for k, v in plain.get("env", {}).items() if v is not None},
    }
