"""The %%sql cell magic: the cell is Spark SQL, its first rows a table, its result a variable.

    %%sql [-n ROWS] [-o NAME [--pandas --limit ROWS]] [--param NAME ...]

- ``-n`` rows are shown (the kernel option ``sql_rows``, 20 by default), as HTML with a text
  fallback, and the cell says how many of how many it showed;
- ``-o NAME`` binds the whole result, as a Spark DataFrame; with ``--pandas``, as pandas, which
  needs ``--limit``: the rows kept are always said, and a larger result is never cut silently;
- ``--param NAME`` binds the notebook variable NAME to ``:NAME`` in the query, as a parameter of
  spark.sql(query, args): a value is never pasted into the SQL text.
A query Spark refuses is one line with its error class and position; `%spark log` has the rest.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import html
import shlex
from typing import Any, Callable

from . import callsite
from .diagnostics import ShortTraceback

USAGE = "%%sql [-n ROWS] [-o NAME [--pandas --limit ROWS]] [--param NAME ...]"
DEFAULT_ROWS = 20


class SQLUsageError(ValueError):
    """A %%sql line that cannot be run; shown as one line."""


class SparkSQLError(ShortTraceback, Exception):
    """Spark refused the query: one line, no Java or PySpark frames."""


def positive(flag: str, text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise SQLUsageError(f"%%sql: {flag} takes a number of rows above 0, not {text!r} (usage: {USAGE})")
    return int(text)


def parse(line: str, default_rows: int = DEFAULT_ROWS) -> dict:
    """The options of a %%sql line, as a dict."""
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise SQLUsageError(f"%%sql: cannot read {line.strip()!r}: {error} (usage: {USAGE})") from None
    found = {"rows": default_rows, "output": None, "pandas": False, "limit": None, "params": []}
    while words:
        word = words.pop(0)
        if word in ("-n", "-o", "--limit", "--param") and not words:
            raise SQLUsageError(f"%%sql: {word} needs a value (usage: {USAGE})")
        if word == "-n":
            found["rows"] = positive("-n", words.pop(0))
        elif word == "-o":
            found["output"] = identifier("-o", words.pop(0))
        elif word == "--limit":
            found["limit"] = positive("--limit", words.pop(0))
        elif word == "--param":
            found["params"].append(identifier("--param", words.pop(0)))
        elif word == "--pandas":
            found["pandas"] = True
        else:
            raise SQLUsageError(f"%%sql: unexpected {word!r} (usage: {USAGE})")
    if found["pandas"] and (found["output"] is None or found["limit"] is None):
        raise SQLUsageError("%%sql: --pandas needs -o NAME and --limit ROWS: pandas holds the rows in this process, so say how many "
                            "(for example -o out --pandas --limit 100000)")
    if found["limit"] is not None and not found["pandas"]:
        raise SQLUsageError("%%sql: --limit is for --pandas; a Spark DataFrame from -o holds the whole result")
    return found


def identifier(flag: str, name: str) -> str:
    if not name.isidentifier():
        raise SQLUsageError(f"%%sql: {flag} takes a Python name, not {name!r}")
    return name


def short_error(error: BaseException) -> str:
    """Spark's message in one line: its first, which names the error class, the SQL state and the
    position; the plan or SQL excerpt after it, and the JVM stack trace, are left out."""
    return str(error).strip().split("\n")[0].strip()


def table_html(columns, rows) -> str:
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(shown(value))}</td>" for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_text(columns, rows) -> str:
    cells = [[str(name) for name in columns]] + [[shown(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
    lines = [" | ".join(value.ljust(width) for value, width in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def shown(value) -> str:
    return "null" if value is None else str(value)


def count_line(shown_rows: int, more: bool) -> str:
    return f"{shown_rows} row{'s' if shown_rows != 1 else ''}" + (" shown, the first of more (raise -n to see more)" if more else "")


def run(session: Any, query: str, options: dict, namespace: dict, display: Callable) -> None:
    """Run ``query``; show its first rows; bind -o. Spark's refusal becomes SparkSQLError. Its jobs
    are named after the query's first line (runtime.callsite)."""
    with callsite.named(callsite.first_line(query)):
        return run_named(session, query, options, namespace, display)


def run_named(session: Any, query: str, options: dict, namespace: dict, display: Callable) -> None:
    args = {}
    for name in options["params"]:
        if name not in namespace:
            raise SQLUsageError(f"%%sql: --param {name}: the notebook has no variable {name}")
        args[name] = namespace[name]
    try:
        frame = session.sql(query, args=args) if args else session.sql(query)
        first = frame.limit(options["rows"] + 1).collect()
    except Exception as error:
        if not is_sql_error(error):
            raise
        raise SparkSQLError(short_error(error)) from None
    more = len(first) > options["rows"]
    first = first[:options["rows"]]
    columns = frame.columns
    text = table_text(columns, first) + "\n" + count_line(len(first), more)
    display({"text/plain": text, "text/html": table_html(columns, first) + f"<p>{html.escape(count_line(len(first), more))}</p>"}, raw=True)
    if options["output"]:
        bind(frame, options, namespace)
    return frame


def bind(frame, options: dict, namespace: dict) -> None:
    name = options["output"]
    if not options["pandas"]:
        namespace[name] = frame
        print(f"{name}: a Spark DataFrame of the whole result", flush=True)
        return
    limit = options["limit"]
    kept = frame.limit(limit + 1).toPandas()
    cut = len(kept) > limit
    namespace[name] = kept.iloc[:limit]
    print(f"{name}: a pandas DataFrame of {min(len(kept), limit)} rows (--limit {limit})"
          + ("; the result has more rows, which were not kept (raise --limit, or drop --pandas for a Spark DataFrame)" if cut else ""), flush=True)


def is_sql_error(error: BaseException) -> bool:
    """Whether Spark refused the query (parse or analysis), rather than failed running it."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ParseException", "AnalysisException", "SparkConnectGrpcException", "IllegalArgumentException"})
