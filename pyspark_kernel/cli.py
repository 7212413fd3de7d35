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
import logging
import os
import signal
import sys
from typing import Iterator

from .errors import InputError
from .kernelspec import TEMPLATE_ROOT
from .runtime.options import OPTIONS
from .validate import check_given, check_kernel_name

log = logging.getLogger(__name__)


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
    parser.add_argument("-f", "--force", action="store_true", help="replace an existing kernel of the same name")
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


def generate(args: argparse.Namespace, template: str, name: str, answers: dict, target: str) -> None:
    """Cookiecutter builds the kernel in a staging directory beside target; then it moves into place."""
    from cookiecutter.exceptions import CookiecutterException, FailedHookException
    from cookiecutter.main import cookiecutter

    from .install import make_private, make_shareable, move_into_place, staging_dir

    with staging_dir(os.path.dirname(target)) as staging:
        try:
            built = cookiecutter(template, no_input=True, output_dir=staging, extra_context={"kernel_name": name, "_answers": answers})
        except FailedHookException:
            raise SystemExit(1) from None  # the hook has said what is wrong
        except CookiecutterException as error:
            raise InputError("kernels_template_path", f"cookiecutter failed: {' '.join(str(error).split())}", "fix the template, or pass -t with a working one") from None
        # Shared places (--sys-prefix, --prefix, -d) are readable by all; a --user kernel is its owner's alone (0700/0600, or tighter).
        (make_shareable if shared_install(args) else make_private)(built)
        move_into_place(built, target, args.force)
        log.info("moved into place: %s", target)


def create(args, spark_conf):
    from .install import refuse_existing

    # A create stopped with SIGTERM cleans up as after an error (a SIGKILL's leftovers go next time).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    template = absolute(args.kernels_template_path)
    if not os.path.isfile(os.path.join(template, "cookiecutter.json")):
        raise InputError("kernels_template_path", f"no cookiecutter.json in {template}", "pass -t with the template's directory")
    name = check_kernel_name(args.kernel_name if args.kernel_name is not None else template_default(template, "kernel_name"))
    answers = {"kernel_name": name, **check_given(given_answers(args, spark_conf, template))}
    target = os.path.join(kernels_dir(args), name)
    if not args.force:
        refuse_existing(target)  # before building; checked again when moving into place
    if args.verbose:
        with verbose_steps():
            generate(args, template, name, answers, target)
    else:
        # The hooks print the one-line ERROR; cookiecutter's own report of the failed hook is noise.
        logging.getLogger("cookiecutter").addHandler(logging.NullHandler())
        logging.getLogger("cookiecutter").propagate = False
        generate(args, template, name, answers, target)
    print(f"Installed kernel {name} in {target}")
    return 0


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
