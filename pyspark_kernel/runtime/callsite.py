"""Spark jobs named after the notebook's code: `count at cell [2], line 1` (the cell's execution
count, IPython's `In [2]`, and the line in it), `count at /home/ann/helpers.py:12` for code in a
module the notebook imported, and a %%sql cell's jobs after the query's first line.

Spark names a job, and its stages, by the call site the driver JVM holds for the thread that
submits it (the local property `callSite.short`). PySpark sets it only around some actions
(traceback_utils.SCCallSiteSync: collect, toPandas, the RDD API's), from the frame that called
PySpark's first function (first_spark_call). Under IPython that names the cell's compiled file
(`count at /tmp/ipykernel_7/3408644409.py:1`), %%sql's jobs name the runtime's own file, and
DataFrame.count, show or a write get the JVM's own (`... at CompletableFuture.java:1768`). The
progress table reads that name from the status tracker; the Spark UI shows it on the jobs and SQL
pages wherever a job has no description.

- A dedicated driver: before each Py4J call of the notebook's main thread, its call site is worked
  out from the stack; when it is not the one the JVM holds, the JVM is told first (one extra call
  for each new site, none for a repeat). Calls the kernel makes itself (a cell's job group, the
  banner) change nothing. SCCallSiteSync then stays out of that thread's way; in other threads it
  names cells the same way.
- Spark Connect: the server sets each operation's description and call site itself, from the
  request (`Spark Connect - <the request, abbreviated>`), and a client cannot change either. The
  kernel's own progress table names each operation from the stack of the thread whose query it
  reports (runtime.progress.ConnectProgress).
- %%sql names its jobs after the query (`named`); a DataFrame shown as a cell's value names its
  job `show` at the cell's line (`acting`).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Iterator, Mapping

log = logging.getLogger(__name__)

LABEL_WIDTH = 100  # characters of a query's first line kept in its jobs' name
CALL_COMMAND = "c\n"  # Py4J's call of a JVM method: the only command that can run a job
RUNTIME = os.path.dirname(os.path.abspath(__file__)) + os.sep
# PySpark's modules that only build expressions (columns, functions, types, windows, and the
# wrapper that records where each was made, for error messages), by their path below
# site-packages (or python/). A call from them runs no job, and leaves the name the JVM holds: that
# spares a call to the JVM for each (a loop of withColumn would otherwise tell it three times an
# iteration).
EXPRESSIONS = tuple(os.sep.join(("pyspark", *parts)) for parts in (
    ("sql", "column.py"), ("sql", "classic", "column.py"), ("sql", "functions", ""), ("sql", "functions.py"), ("sql", "types.py"), ("sql", "window.py"),
    ("errors", "utils.py")))
DATAFRAMES = tuple(os.sep.join(("pyspark", *parts)) for parts in (("sql", "dataframe.py"), ("sql", "classic", "dataframe.py")))
COLUMN_ACCESS = ("__getattr__", "__getitem__")  # df.name, df["name"]: a column, or a DataFrame to come
WRAPPERS = ("wrapped", "wrapper")  # PySpark's decorators' inner functions (sql/utils.py, errors/utils.py)
RUNTIME_CALL = object()  # site(): the outermost frame is the runtime's

cells: Mapping[str, int] = {}  # IPython's compiled cell file names -> their execution counts (register)
explicit = threading.local()  # .label: a whole name (named); .action: an action's name (acting)
found_roots = None  # see roots()
expression_files: dict[str, tuple[bool, bool]] = {}  # builds_expressions(), by file name


def register(shell: Any) -> None:
    """Name cells as ``shell`` numbers them: its compiler keeps each cell's file name and
    execution count, for its own tracebacks."""
    global cells
    found = getattr(getattr(shell, "compile", None), "_filename_map", None)  # empty until the first cell: the same dict, filled
    cells = found if found is not None else {}


def label(action: str, filename: str, line: int, numbers: Mapping[str, int] | None = None) -> str:
    """The name of a job that ``action`` ran, called from ``filename`` at ``line``."""
    number = (cells if numbers is None else numbers).get(filename)
    if number is not None:
        return f"{action} at cell [{number}], line {line}"
    return f"{action} at {filename}:{line}"  # PySpark's own form, for a module's code


def first_line(query: str, width: int = LABEL_WIDTH) -> str | None:
    """A query's first line that says something, trimmed and cut to ``width`` characters."""
    line = next((text.strip() for text in query.splitlines() if text.strip()), "")
    if len(line) > width:
        line = line[:width - 1].rstrip() + "…"
    return line or None


@contextlib.contextmanager
def holding(attribute: str, value: str | None) -> Iterator[None]:
    """This thread's ``explicit.<attribute>`` is ``value`` meanwhile."""
    previous = getattr(explicit, attribute, None)
    setattr(explicit, attribute, value)
    try:
        yield
    finally:
        setattr(explicit, attribute, previous)


def named(text: str | None) -> contextlib.AbstractContextManager:
    """The jobs this thread runs meanwhile are named ``text`` (None: as their call site says)."""
    return holding("label", text)


def acting(action: str) -> contextlib.AbstractContextManager:
    """The runtime calls Spark meanwhile on behalf of the code further out (a cell's value shown):
    its jobs are named ``action`` at that code's line."""
    return holding("action", action)


def roots() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The directories of Spark's Python code (PySpark, Py4J), and of the machinery between a
    cell and the runtime (IPython, ipykernel), each ending with a separator; kept once all four
    are imported."""
    global found_roots
    if found_roots is not None:
        return found_roots
    spark, machinery = [], []
    for name, into in (("pyspark", spark), ("py4j", spark), ("IPython", machinery), ("ipykernel", machinery)):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            into.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    if len(spark) + len(machinery) < 4:
        return tuple(spark), tuple(machinery)
    found_roots = (tuple(spark), tuple(machinery))
    return found_roots


def site(frame: Any, spark: tuple[str, ...], machinery: tuple[str, ...], runtime: str | tuple[str, ...],
         numbers: Mapping[str, int] | None = None) -> tuple[str | None, str, int] | None:
    """(action, file, line) of the code that called Spark, seen from ``frame`` inside a call to it,
    as PySpark's first_spark_call sees it: the outermost frame of Spark's (or the runtime's) on the
    stack, and the frame outside it that is neither IPython's nor theirs. The action is that
    Spark function's name (a decorator's wrapper gives the name of what it wraps), or None when
    the runtime called Spark (for that code, or for itself: a cell's job group). The whole is None
    when no such frame is outside them, or the call builds an expression (that Spark function,
    or the decorator around it, is a column's or a function's), which runs no job.
    The outermost, not the innermost: PySpark calls back into other code too (a cached property
    through functools, a function given to DataFrame.transform). A cell's own code (its file in
    ``numbers``, outside any function) ends the walk: only IPython and ipykernel are further out."""
    action, building, user = None, False, None  # building: the action, or a decorator around it, builds expressions
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith(spark):
            if action is None or action is RUNTIME_CALL or code.co_name not in WRAPPERS:
                action, building = code, builds_expressions(code)
            else:
                building = building or builds_expressions(code)
            user = None
        elif code.co_filename.startswith(runtime):
            action, building, user = RUNTIME_CALL, False, None
        elif user is None and action is not None and not code.co_filename.startswith(machinery):
            user = frame
            if numbers and code.co_name == "<module>" and code.co_filename in numbers:
                break
        frame = frame.f_back
    if user is None or building:
        return None
    return None if action is RUNTIME_CALL else action.co_name, user.f_code.co_filename, user.f_lineno


def builds_expressions(code: Any) -> bool:
    """Whether ``code``, PySpark's, only builds expressions."""
    found = expression_files.get(code.co_filename)
    if found is None:
        found = expression_files[code.co_filename] = (any(part in code.co_filename for part in EXPRESSIONS),
                                                      any(code.co_filename.endswith(part) for part in DATAFRAMES))
    return found[0] or found[1] and code.co_name in COLUMN_ACCESS


def name_of(frame: Any) -> str | None:
    """The name for the jobs of the Spark call ``frame`` is inside, or None to leave it as it is."""
    text = getattr(explicit, "label", None)
    if text is not None:
        return text
    spark, machinery = roots()
    found = site(frame, spark, machinery, RUNTIME, cells)
    if found is None:
        return None
    action, filename, line = found
    action = action or getattr(explicit, "action", None)  # the runtime's call, for the code further out
    return label(action, filename, line) if action else None


class JvmCallSites:
    """Keeps the call site of the notebook's main thread in the driver JVM (callSite.short, a local
    property of the JVM thread that serves the main thread's Py4J connection)."""

    def __init__(self, java_context: Any) -> None:
        self.java_context = java_context
        self.held = None  # the name the JVM holds for the main thread, as far as this knows
        self.telling = False  # inside the call that tells it
        self.main = threading.main_thread()

    def install(self, client: Any) -> None:
        send = client.send_command

        def send_command(command, *args, **kwargs):
            if not self.telling and threading.current_thread() is self.main and isinstance(command, str) and command.startswith(CALL_COMMAND):
                self.tell(sys._getframe(1))
            return send(command, *args, **kwargs)

        client.send_command = send_command
        quiet_sync_on_main_thread()

    def tell(self, frame: Any) -> None:
        text = name_of(frame)
        if text is None or text == self.held:
            return
        self.telling = True
        try:
            self.java_context.setCallSite(text)
            self.held = text
        except Exception:  # a name is a courtesy: the call itself says what went wrong
            log.debug("telling the driver JVM the call site %r", text, exc_info=True)
        finally:
            self.telling = False

    def forget(self) -> None:
        """A cell begins: the JVM may serve the main thread from another thread now (a connection
        an interrupt broke is replaced), so the next call tells it again."""
        self.held = None


def quiet_sync_on_main_thread() -> None:
    """PySpark's SCCallSiteSync sets the call site around some actions and clears it after, from
    its own reading of the stack: on the main thread JvmCallSites has said it already, and
    elsewhere cells are named as the main thread's are."""
    from pyspark import traceback_utils

    sync = traceback_utils.SCCallSiteSync
    if "pyspark_kernel_patched" in sync.__dict__:
        return
    original_init, original_enter, original_exit = sync.__init__, sync.__enter__, sync.__exit__
    main = threading.main_thread()

    def __init__(self, sc):
        self._context = sc
        self.pyspark_kernel_quiet = threading.current_thread() is main
        if self.pyspark_kernel_quiet:
            return
        text = name_of(sys._getframe(1))
        if text is None:
            original_init(self, sc)
        else:
            self._call_site = text

    def __enter__(self):
        if not self.pyspark_kernel_quiet:
            original_enter(self)

    def __exit__(self, *exc):
        if not self.pyspark_kernel_quiet:
            original_exit(self, *exc)

    sync.__init__, sync.__enter__, sync.__exit__ = __init__, __enter__, __exit__
    sync.pyspark_kernel_patched = True
