"""A DataFrame as a cell's value: PySpark's own line, its schema (`DataFrame[id: bigint, ...]`),
then, while the session's spark.sql.repl.eagerEval.enabled is on (the kernel's dataframe_display
option: table), its first rows as PySpark shows them: HTML for notebooks, text for consoles, within
the session's spark.sql.repl.eagerEval.maxNumRows and .truncate. A result without columns (a DDL
statement's) shows the line alone.

PySpark alone shows either its table or its line, depending on the setting, and `DataFrame[]` as
an empty table. The setting is read at each display: `spark.conf.set` changes it for the session.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import html
from typing import Any

from . import callsite

EAGER_EVAL = "spark.sql.repl.eagerEval.enabled"
MAX_ROWS = "spark.sql.repl.eagerEval.maxNumRows"
TRUNCATE = "spark.sql.repl.eagerEval.truncate"
# Each class that defines its own __repr__ (IPython's pretty printer takes the first in the MRO):
# Spark 3.5's classic one, Spark 4's classic one, and Spark Connect's.
CLASSES = (("pyspark.sql.dataframe", "DataFrame"), ("pyspark.sql.classic.dataframe", "DataFrame"), ("pyspark.sql.connect.dataframe", "DataFrame"))


def schema_line(frame: Any) -> str:
    """PySpark's repr of a DataFrame when it shows no rows."""
    return "DataFrame[%s]" % ", ".join(f"{name}: {kind}" for name, kind in frame.dtypes)


def shows_rows(frame: Any) -> bool:
    return bool(frame.columns) and str(frame.sparkSession.conf.get(EAGER_EVAL, "false")).strip().lower() == "true"


def rows_text(frame: Any) -> str:
    """The first rows, as DataFrame.show prints them, within the session's eager-evaluation limits."""
    conf = frame.sparkSession.conf
    rows, truncate = int(conf.get(MAX_ROWS, "20")), int(conf.get(TRUNCATE, "20"))
    show = getattr(frame, "_show_string", None)  # Spark 4, classic and Connect
    if show is not None:
        return show(rows, truncate)
    return frame._jdf.showString(rows, truncate, False)  # classic Spark 3.5


def plain(frame: Any, printer: Any, cycle: bool) -> None:
    text = schema_line(frame)
    if shows_rows(frame):
        with callsite.acting("show"):  # the job reads `show at cell [N], line L`
            text += "\n" + rows_text(frame).rstrip("\n")
    printer.text(text)


def rich(frame: Any) -> str | None:
    if not shows_rows(frame):
        return None  # the plain line alone
    with callsite.acting("show"):
        table = frame._repr_html_()  # PySpark's table, by the same settings
    if table is None:
        return None
    return f"<pre>{html.escape(schema_line(frame))}</pre>\n{table}"


def register(shell: Any) -> None:
    """Show DataFrames this way in ``shell``, whether PySpark is imported yet or not."""
    formatters = shell.display_formatter.formatters
    for module, name in CLASSES:
        formatters["text/plain"].for_type_by_name(module, name, plain)
        formatters["text/html"].for_type_by_name(module, name, rich)
