"""The ways the kernel's Spark driver can run, behind one interface:

- dedicated: a driver JVM of the kernel's own, through Py4J (runtime.dedicated);
- connect: a client of a Spark Connect server at an sc:// master (runtime.connect);
- shared: a client of the user's local Spark Connect server, shared by notebooks (runtime.shared).

The runtime and the notebook call a driver for whatever depends on how it runs (starting a session,
a cell's job group or tag, interrupt, liveness, status, banner) and never ask which kind it is.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .diagnostics import KERNEL_DIR, pyspark_missing

if TYPE_CHECKING:
    from .attempt import StartAttempt
    from .session import SparkRuntime

log = logging.getLogger(__name__)


CANCEL_THREAD = "pyspark-kernel-cancel"  # the name of interrupt's thread


class Driver:
    """One way of running the kernel's Spark driver, from the start of a session to its end.

    A driver reads the runtime's settings (conf, options, environ) and its current session and
    context; the runtime owns the state and tells the driver what happened."""

    # Whether its sessions come with a SparkContext: `sc`, job groups and the jobs idle_timeout
    # looks at. A Spark Connect session has none.
    has_context = False
    # Whether idle_timeout may stop its sessions: the kernel looks at the context's jobs for that.
    stops_when_idle = False
    # Whether its sessions are Spark Connect clients: PySpark's remote mode from the first cell.
    remote = False
    # Whether the current session's first JVM job has run already (made ahead): the warm-up skips it.
    warm_session = False

    def __init__(self, runtime: SparkRuntime) -> None:
        self.runtime = runtime

    def import_pyspark(self) -> Any:
        """PySpark's SparkSession, imported first in a start: cells wait for this import
        (runtime.imported), not for the checks after it. A pyspark that is gone names its fix."""
        try:
            from pyspark.sql import SparkSession
        except ImportError as error:
            raise pyspark_missing(self.runtime.environ, KERNEL_DIR, error) from None
        finally:
            self.runtime.imported.set()
        return SparkSession

    @property
    def log_file(self) -> str:
        """The log %spark log shows and failure messages quote."""
        return os.path.join(self.runtime.scratch, "driver.log")

    # -- a session's life

    def start(self, attempt: StartAttempt) -> Any:
        """Start the driver if need be and make a session on it (in the start thread); raises
        what stopped it. ``attempt`` is told each step (attempt.mark via runtime.mark)."""
        raise NotImplementedError

    def context_of(self, session: Any) -> Any:
        """The session's SparkContext, or None when its sessions have none."""
        return None

    def abandon(self, attempt: StartAttempt) -> None:
        """A start that failed: let go of what it made."""

    def exit_code(self) -> int | None:
        """The driver's exit code once it is known to have exited, else None (alive, as far as
        the driver can tell without waiting)."""
        return None

    def after_death(self, session: Any, context: Any) -> None:
        """The driver died under ``session``: free what still points at it."""

    def end(self, session: Any, stop: bool) -> None:
        """The session has ended: stop it first when ``stop``, then let the driver go if it is
        the kernel's alone."""
        if stop and session is not None:
            try:
                session.stop()
            except Exception:  # a session whose driver is in trouble: it goes anyway
                log.debug("stopping the session", exc_info=True)

    def kill(self) -> None:
        """At kernel exit, when a graceful stop failed: end the driver at once."""

    def close(self) -> None:
        """At kernel exit, after the session: let go of the driver."""

    # -- cells

    def context_error(self) -> Exception | None:
        """The error `sc` raises on this driver before anything starts, or None."""
        return None

    def serves(self, options: dict) -> bool:
        """Whether a notebook's SparkSession.builder with these options gets the kernel's session."""
        return True

    def session_options(self, options: dict) -> dict:
        """The builder's options that apply to the kernel's session."""
        return options

    def begin_cell(self, group: str, cell: int) -> None:
        """Put the cell's jobs under ``group`` (a job group, or an operation tag), in this thread."""
        raise NotImplementedError

    def end_cell(self, group: str) -> None:
        """The cell whose jobs ran under ``group`` has ended."""

    def cancel(self, group: str) -> None:
        """Cancel the jobs under ``group`` now; raises when Spark cannot be asked."""
        raise NotImplementedError

    def interrupt(self, group: str) -> None:
        """Cancel a cell's jobs from a thread of its own: the interrupted thread may be inside a
        call on the connection the cancel would need. A failure is the cell's own call to show."""
        raise NotImplementedError

    def progress(self, group: str) -> Any:
        """A cell's progress display for the jobs under ``group`` (not begun yet)."""
        raise NotImplementedError

    def explain_death(self, shell: Any) -> None:
        """Once a notebook uses the session: make the errors of calls cut off by the driver's
        death say so (where the client's own errors would say something else)."""

    # -- the warm-up

    def group_warm_up(self, group: str) -> None:
        """Put the warm-up's jobs (this thread's) under ``group``, so that a cell can cancel them."""

    def warms_python_workers(self) -> bool:
        """Whether the warm-up may start Python workers for this driver's session."""
        return False

    def cache_in_use(self) -> list[str]:
        """Files of the per-user cache that this kernel's driver uses (kept by the pruning)."""
        return []

    def pip_notice(self, changes: Any) -> str | None:
        """A cell changed the kernel's environment (%pip) away from what the executors run
        (runtime.pipwatch.Changes): do what this driver can for them, and return the line that
        says what happens; None when there is nothing to say (executors that run the driver's
        own environment)."""
        return None

    # -- what the notebook shows

    def ui_link(self) -> str | None:
        """Where the notebook's browser finds the session's Spark UI (None when there is none)."""
        return None

    def banner(self) -> str:
        """The line a notebook shows once for each new session."""
        raise NotImplementedError

    def status_lines(self) -> list[str]:
        """`%spark status`: the lines about the driver, after the state's."""
        raise NotImplementedError
