"""`pyspark-kernel`: drive the template without prompts, with the original script's flags.

    pyspark-kernel create -k etl -e /opt/venvs/etl --spark_master 'local[4]' \\
        --spark.executor.memory 4g --spark.sql.shuffle.partitions=8 --env HADOOP_CONF_DIR=/etc/hadoop/conf
    pyspark-kernel smoke etl

Answers reach the template's hooks through cookiecutter's API in a private context variable, so
cookiecutter renders none of them as Jinja and dict answers keep their shape.
"""

import argparse
import contextlib
import json
import os
import signal
import sys
from typing import Iterator

from .errors import InputError
from .generate import generate_kernel, quiet_cookiecutter
from .kernelspec import TEMPLATE_ROOT
from .runtime.options import OPTION, OPTIONS
from .validate import check_given, check_kernel_name


def kernels_dir(args):
    """Where create installs, as `python -m ipykernel install` would: --user (default), --sys-prefix,
    --prefix or an explicit kernels directory."""
    if args.kernels_dir_path:
        return absolute(args.kernels_dir_path)
    if args.sys_prefix or args.prefix:
        return os.path.join(absolute(args.prefix) if args.prefix else sys.prefix, "share", "jupyter", "kernels")
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "kernels")


def shared_install(args):
    return bool(args.kernels_dir_path or args.sys_prefix or args.prefix)


def split_spark_flags(argv):
    """Take ``--spark.<key> <value>`` and ``--spark.<key>=<value>`` out of argv (argparse cannot
    declare options whose names are data). The value is the next word, whatever it looks like."""
    conf, rest, words = {}, [], iter(argv)
    for word in words:
        if not word.startswith("--spark."):
            rest.append(word)
            continue
        key, equals, value = word[2:].partition("=")
        if not equals:
            value = next(words, None)
            if value is None:
                raise InputError("spark_conf", f"--{key} has no value", f"write --{key} VALUE or --{key}=VALUE")
        conf[key] = value
    return conf, rest


def parse_env(pairs):
    env = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise InputError("env", f"--env {pair} has no =", "write --env NAME=VALUE")
        env[name] = value
    return env


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """create's flag for each option that argparse can declare (the --spark.* ones it cannot)."""
    for option in OPTIONS:
        if not option.create_flags:
            continue
        declared = {"dest": option.name, "help": option.help.replace("%", "%%")}  # argparse formats help with %
        if option.kind == "flag":
            declared["action"] = argparse.BooleanOptionalAction
        elif option.repeat:
            declared["action"] = "append"
        if option.kind == "choice":
            declared["choices"] = option.choices
        if option.metavar:
            declared["metavar"] = option.metavar
        parser.add_argument(*option.create_flags, **declared)


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in the one-line ERROR form."""

    def error(self, message):
        raise InputError("arguments", message, f"see {self.prog} --help")


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    """create's flags: where the kernel goes, then one for each option."""
    parser.add_argument("-t", "--kernels_template_path", default=TEMPLATE_ROOT, help="the template (default: the one this pyspark-kernel carries; a team points it at its fork)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-d", "--kernels_dir_path", help="Jupyter kernels directory (default: the user's, $JUPYTER_DATA_DIR/kernels)")
    where.add_argument("--user", action="store_true", help="install for this user (the default)")
    where.add_argument("--sys-prefix", dest="sys_prefix", action="store_true", help="install into this Python environment's share/jupyter/kernels")
    where.add_argument("--prefix", help="install into PREFIX/share/jupyter/kernels")
    add_option_flags(parser)
    parser.add_argument("-f", "--force", action="store_true", help="replace an existing kernel of the same name, keeping the answers it was made with that these flags do not give")
    parser.add_argument("--verbose", action="store_true", help="show cookiecutter's steps and ours on stderr")


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pyspark-kernel", description="Generate and check PySpark Jupyter kernels.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    create = commands.add_parser(
        "create",
        help="generate a kernel without prompts",
        epilog="Any Spark setting: --spark.KEY VALUE or --spark.KEY=VALUE (repeatable).",
    )
    add_create_flags(create)

    smoke = commands.add_parser("smoke", help="run the smoke notebook on an installed kernel")
    smoke.add_argument("kernel_name")
    smoke.add_argument("-d", "--kernels_dir_path", help="look only in this kernels directory")
    smoke.add_argument("--junit", metavar="REPORT.xml", help="write a JUnit report, one test case per check")
    smoke.add_argument("--save-notebook", dest="save_notebook", metavar="OUT.ipynb", help="write the executed notebook")
    smoke.add_argument("--notebook", metavar="CHECKS.ipynb", help="a notebook of your own checks, run after the built-in ones")

    listing = commands.add_parser("list", help="the kernels pyspark-kernel made, wherever Jupyter finds kernels")
    listing.add_argument("-d", "--kernels_dir_path", help="look only in this kernels directory")

    remove = commands.add_parser("remove", help="remove a kernel pyspark-kernel made")
    remove.add_argument("kernel_name")
    remove.add_argument("-d", "--kernels_dir_path", help="look only in this kernels directory")

    upgrade = commands.add_parser("upgrade", help="regenerate kernels with this pyspark-kernel's template and runtime, keeping every setting",
                                  epilog="Each kernel is rebuilt from the answers it recorded, in its place, with its file modes; then what changed is printed.")
    upgrade.add_argument("kernel_names", nargs="*", metavar="NAME")
    upgrade.add_argument("--all", dest="every", action="store_true", help="every kernel pyspark-kernel made (in -d, else wherever Jupyter finds kernels)")
    upgrade.add_argument("-d", "--kernels_dir_path", help="look only in this kernels directory")
    upgrade.add_argument("-t", "--kernels_template_path", default=TEMPLATE_ROOT, help="the template (default: the one this pyspark-kernel carries)")

    doctor = commands.add_parser("doctor", help="check that an installed kernel can start on this machine")
    doctor.add_argument("kernel_name")
    doctor.add_argument("-d", "--kernels_dir_path", help="look only in this kernels directory")

    cached = commands.add_parser("cache", help="show the per-user cache (class-data-sharing archives, packed environments), prune or clear it",
                                 epilog="Kernels prune it at each start: what a deleted Java, Spark or environment left, then the least recently used "
                                        "beyond the limit (2 GiB; set PYSPARK_KERNEL_CACHE_LIMIT, for example 4G).")
    cached.add_argument("action", nargs="?", default="show", choices=("show", "prune", "clear"))
    return parser


def absolute(path):
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def template_default(template, key):
    """A plain default of the template's cookiecutter.json (a team's fork may change it)."""
    with open(os.path.join(template, "cookiecutter.json"), encoding="utf-8") as handle:
        value = json.load(handle).get(key)
    return value if isinstance(value, str) and "{" not in value else None


def given_answers(args: argparse.Namespace, spark_conf: dict, template: str) -> dict:
    """The answers the user gave; the template's defaults fill the rest."""
    answers = {"spark_conf": spark_conf, "env": parse_env(args.env or []), "env_from": args.env_from or []}
    for option in OPTIONS:
        value = getattr(args, option.name, None)
        if option.name in answers or option.name == "kernel_name" or value is None:
            continue  # kernel_name: checked first, by create
        if option.kind == "path" or (option.kind == "profile" and value.endswith(".conf")):
            value = absolute(value)  # relative to where create runs
        answers[option.name] = value
    if args.profile is not None:
        if args.spark_master is None:  # the profile's master, as the prompt's default would be
            from .build import profile_master

            profile = check_given({"profile": answers["profile"]})["profile"]
            answers["spark_master"] = profile_master(profile, os.path.join(template, "profiles"))
    return answers


@contextlib.contextmanager
def verbose_steps() -> Iterator[None]:
    """Cookiecutter's log and ours on stderr, here and (by the environment) in the hooks."""
    from .verbose import VARIABLE, hide_steps, show_steps

    handler, before = show_steps(), os.environ.get(VARIABLE)
    os.environ[VARIABLE] = "1"
    try:
        yield
    finally:
        hide_steps(handler)
        if before is None:
            del os.environ[VARIABLE]
        else:
            os.environ[VARIABLE] = before


def create(args, spark_conf):
    from .install import refuse_existing

    # A create stopped with SIGTERM cleans up as after an error (a SIGKILL's leftovers go next time).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    template = checked_template(args.kernels_template_path)
    name = check_kernel_name(args.kernel_name if args.kernel_name is not None else template_default(template, "kernel_name"))
    answers = {"kernel_name": name, **check_given(given_answers(args, spark_conf, template))}
    target = os.path.join(kernels_dir(args), name)
    if not args.force:
        refuse_existing(target)  # before building; checked again when moving into place
    replaced = our_spec(target) if args.force else None
    kept = kept_answers(name, target, replaced, answers) if replaced else {}
    with contextlib.ExitStack() as steps:
        if replaced:
            from .upgrade import generating_environment

            # The profile's ${?HADOOP_CONF_DIR} and the like take the replaced kernel's values when this shell lacks them, as upgrade does.
            steps.enter_context(generating_environment(replaced))
        if args.verbose:
            steps.enter_context(verbose_steps())
        else:
            quiet_cookiecutter()
        # Shared places (--sys-prefix, --prefix, -d) are readable by all; a --user kernel is its owner's alone (0700/0600, or tighter).
        generate_kernel(template, name, {**answers, **kept}, target, shared_install(args), args.force)
    print(f"Installed kernel {name} in {target}")
    for note in cluster_notes(name, target):
        print(note, file=sys.stderr)
    shown = [key for key, value in kept.items() if value not in (None, "", {}, []) and value != OPTION[key].default]
    if shown:
        print(f"Kept from the kernel it replaced: {', '.join(shown)} (to start from the template's defaults instead: pyspark-kernel remove {name}, then create)")
    return 0


def cluster_notes(name: str, target: str) -> list:
    """What the kernel will not be able to work out when it starts on its cluster (runtime.address),
    from here, with the environment it gets (the server's, taken to be this one, and kernel.json's)."""
    from .cluster import create_notes
    from .drift import create_command
    from .kernelspec import CONF_VARIABLE, kernel_environment
    from .upgrade import read_spec

    spec = read_spec(target)
    env = {**os.environ, **kernel_environment(spec.get("env") or {}, os.environ)}
    conf = json.loads(env.get(CONF_VARIABLE) or "{}")
    return create_notes(conf.get("spark.master", ""), conf, env, create_command(name, target))


def checked_template(path: str) -> str:
    template = absolute(path)
    if not os.path.isfile(os.path.join(template, "cookiecutter.json")):
        raise InputError("kernels_template_path", f"no cookiecutter.json in {template}", "pass -t with the template's directory")
    return template


def our_spec(target: str) -> dict | None:
    """The kernel.json of the kernel pyspark-kernel made at ``target``; None when there is none."""
    from .upgrade import read_spec

    try:
        spec = read_spec(target)
    except (OSError, ValueError):
        return None  # nothing there, or not a kernel
    return spec if "pyspark_kernel" in (spec.get("metadata") or {}) else None


def kept_answers(name: str, target: str, spec: dict, given: dict) -> dict:
    """create --force over a kernel pyspark-kernel made keeps that kernel's answers the flags do
    not give: no setting is reset to a default behind the user's back. Spark settings and
    variables merge key by key (a flag's value wins)."""
    from .upgrade import recover_answers

    try:
        recorded = recover_answers(name, target, spec).answers
    except InputError:
        return {}  # an earlier kernel whose kernel.json cannot be read back: the flags say it all
    kept = {key: value for key, value in recorded.items() if key not in given and key != "kernel_name"}
    for key in ("spark_conf", "env"):
        if recorded.get(key) and given.get(key) != {**recorded[key], **given[key]}:
            kept[key] = {**recorded[key], **given[key]}
    if recorded.get("env_from") and not set(recorded["env_from"]) <= set(given.get("env_from") or []):
        kept["env_from"] = list(dict.fromkeys([*recorded["env_from"], *(given.get("env_from") or [])]))
    return kept


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        spark_conf, rest = split_spark_flags(argv)
        args = make_parser().parse_args(rest)
        if args.command == "create":
            return create(args, spark_conf)
        if spark_conf:
            raise InputError("spark_conf", "--spark.* flags only go with create", f"drop them from {args.command}")
        if args.command == "list":
            from .manage import list_kernels

            return list_kernels(absolute(args.kernels_dir_path) or None)
        if args.command == "remove":
            from .manage import remove_kernel

            return remove_kernel(args.kernel_name, absolute(args.kernels_dir_path) or None)
        if args.command == "upgrade":
            from .upgrade import upgrade

            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # as create: a stopped upgrade cleans up
            return upgrade(args.kernel_names, args.every, absolute(args.kernels_dir_path) or None, checked_template(args.kernels_template_path))
        if args.command == "cache":
            from . import cache

            return getattr(cache, args.action)()
        if args.command == "doctor":
            from .doctor import doctor

            return doctor(args.kernel_name, absolute(args.kernels_dir_path) or None)
        from .smoke import smoke

        return smoke(args.kernel_name, absolute(args.kernels_dir_path) or None, junit=args.junit,
                     save_notebook=args.save_notebook, notebook=args.notebook)
    except InputError as error:
        print(error, file=sys.stderr)
        return 1
    except SystemExit as done:
        return done.code
