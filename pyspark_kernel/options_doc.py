"""What the options table (runtime.options.OPTIONS) says the documents hold: the README's table of
create's flags, and cookiecutter.json's variables and prompts (cookiecutter reads that file itself,
so it stays a file; the tests compare the two).

    python -m pyspark_kernel.options_doc                    # print the README's table
    python -m pyspark_kernel.options_doc --readme README.md  # rewrite it between the markers
"""

import argparse
import sys

from .runtime.options import OPTION, OPTIONS, Option

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"
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


def markdown_table() -> str:
    """The README's table: one row per option, then create's other flags."""
    actions = create_actions()
    by_option = {action.dest: action for action in actions if action.dest in OPTION}
    rows = ["| flag | cookiecutter variable | meaning |", "|---|---|---|"]
    for option in OPTIONS:
        flag = invocation(by_option[option.name]) if option.name in by_option else ", ".join(f"`{usage.strip()}`" for usage in option.usage.split(","))
        variable = f"`{option.name}`" if option.cookiecutter else "-"
        rows.append(f"| {flag} | {variable} | {cell(option.help)} |")
    for action in actions:
        if action.dest not in OPTION:
            rows.append(f"| {invocation(action)} | - | {cell(action.help)} |")
    return "\n".join(rows) + "\n"


def replace_region(text: str, table: str) -> str:
    """``text`` with what lies between the markers replaced by ``table``."""
    before, begin, rest = text.partition(BEGIN)
    _, end, after = rest.partition(END)
    if not (begin and end):
        raise ValueError(f"no {BEGIN} ... {END} region")
    return f"{before}{BEGIN}\n{table}{END}{after}"


def region(text: str) -> str:
    """What lies between the markers, as replace_region writes it."""
    return text.partition(BEGIN)[2].partition(END)[0].removeprefix("\n")


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyspark_kernel.options_doc", description="The README's table of create's flags, from the options table.")
    parser.add_argument("--readme", metavar="README.md", help="rewrite the table between the markers in this file instead of printing it")
    args = parser.parse_args(argv)
    table = markdown_table()
    if not args.readme:
        sys.stdout.write(table)
        return 0
    with open(args.readme, encoding="utf-8") as handle:
        text = handle.read()
    with open(args.readme, "w", encoding="utf-8") as handle:
        handle.write(replace_region(text, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
