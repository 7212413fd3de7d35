"""What the options table (runtime.options.OPTIONS) says the documents hold: the README's short
table of options, docs/making-kernels.md's table of every flag of create, and cookiecutter.json's
variables and prompts (cookiecutter reads that file itself, so it stays a file; the tests compare
the two).

    python -m pyspark_kernel.options_doc            # print both tables
    python -m pyspark_kernel.options_doc --write    # rewrite them between their markers
"""

import argparse
import os
import sys

from .runtime.options import OPTION, OPTIONS, Option

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"
FLAGS_BEGIN, FLAGS_END = "<!-- flags:begin -->", "<!-- flags:end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cookiecutter.json's defaults made from other answers. Not in the table: the runtime, which holds
# it, is copied into each kernel, where no "{{ cookiecutter." may be left.
JINJA_DEFAULTS = {"display_name": "PySpark ({{ cookiecutter.kernel_name }})", "spark_master": "{{ cookiecutter.profile | profile_master }}"}


def cookiecutter_value(option: Option) -> object:
    """A choice is a list, its default first; one that may stay empty (the profile's) is text."""
    if option.name in JINJA_DEFAULTS:
        return JINJA_DEFAULTS[option.name]
    if option.choices and option.default == option.choices[0]:
        return list(option.choices)
    return option.default


def cookiecutter_prompt(option: Option) -> object:
    if option.choice_prompts:
        return {"__prompt__": option.prompt, **dict(zip(option.choices, option.choice_prompts))}
    return option.prompt


def cookiecutter_variables() -> dict:
    """cookiecutter.json's public variables, in the order it asks for them."""
    return {option.name: cookiecutter_value(option) for option in OPTIONS if option.cookiecutter}


def cookiecutter_prompts() -> dict:
    """cookiecutter.json's ``__prompts__``."""
    return {option.name: cookiecutter_prompt(option) for option in OPTIONS if option.cookiecutter}


def invocation(action: argparse.Action) -> str:
    """An argparse flag as the README shows it: every spelling, the value after the last."""
    if action.nargs == 0:  # store_true, --x/--no-x
        return ", ".join(f"`{flag}`" for flag in action.option_strings)
    value = "\\|".join(action.choices) if action.choices else action.metavar or action.dest.upper()
    *others, last = action.option_strings
    return ", ".join([*(f"`{flag}`" for flag in others), f"`{last} {value}`"])


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def create_actions() -> list:
    from .cli import add_create_flags

    parser = argparse.ArgumentParser(add_help=False)
    add_create_flags(parser)
    return parser._actions  # argparse keeps no public list of them


def option_flag(option: Option, by_option: dict) -> str:
    if option.name in by_option:
        return invocation(by_option[option.name])
    return ", ".join(f"`{usage.strip()}`" for usage in option.usage.split(","))


def options_table() -> str:
    """The README's short table: one row per option."""
    by_option = {action.dest: action for action in create_actions() if action.dest in OPTION}
    rows = ["| option | flag of create | what it does |", "|---|---|---|"]
    rows += [f"| `{option.name}` | {option_flag(option, by_option)} | {cell(option.help)} |" for option in OPTIONS]
    return "\n".join(rows) + "\n"


def markdown_table() -> str:
    """docs/making-kernels.md's table: one row per option, then create's other flags."""
    actions = create_actions()
    by_option = {action.dest: action for action in actions if action.dest in OPTION}
    rows = ["| flag | cookiecutter variable | meaning |", "|---|---|---|"]
    for option in OPTIONS:
        flag = option_flag(option, by_option)
        variable = f"`{option.name}`" if option.cookiecutter else "-"
        rows.append(f"| {flag} | {variable} | {cell(option.help)} |")
    for action in actions:
        if action.dest not in OPTION:
            rows.append(f"| {invocation(action)} | - | {cell(action.help)} |")
    return "\n".join(rows) + "\n"


def replace_region(text: str, table: str, markers: tuple = (BEGIN, END)) -> str:
    """``text`` with what lies between the markers replaced by ``table``."""
    before, begin, rest = text.partition(markers[0])
    _, end, after = rest.partition(markers[1])
    if not (begin and end):
        raise ValueError(f"no {markers[0]} ... {markers[1]} region")
    return f"{before}{markers[0]}\n{table}{markers[1]}{after}"


def region(text: str, markers: tuple = (BEGIN, END)) -> str:
    """What lies between the markers, as replace_region writes it."""
    return text.partition(markers[0])[2].partition(markers[1])[0].removeprefix("\n")


def documents() -> list:
    """(file, markers, table) for each generated table."""
    return [(os.path.join(ROOT, "README.md"), (BEGIN, END), options_table()),
            (os.path.join(ROOT, "docs", "making-kernels.md"), (FLAGS_BEGIN, FLAGS_END), markdown_table())]


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyspark_kernel.options_doc", description="The documents' tables of options and flags, from the options table.")
    parser.add_argument("--write", action="store_true", help="rewrite the tables between their markers instead of printing them")
    args = parser.parse_args(argv)
    for path, markers, table in documents():
        if not args.write:
            sys.stdout.write(f"{os.path.relpath(path, ROOT)}:\n{table}\n")
            continue
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(replace_region(text, table, markers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
