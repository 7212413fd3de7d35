"""When the warm-up runs (runtime.warmup has its jobs): once a session is ready, around the
notebook's cells, which the notebook reports (cell_began, cell_ended, cell_waits)."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from . import warmup
from .state import State

if TYPE_CHECKING:
    from .session import SparkRuntime

log = logging.getLogger(__name__)

GROUP = "pyspark-kernel-warmup"  # the warm-up's job group, which a cell that begins cancels
PATIENCE = 60  # seconds the warm-up waits for running cells to end before it gives up
QUIET = 1.0  # seconds without a cell before a warm-up step starts
ATTEMPTS = 3  # warm-up steps cancelled for a cell, or failed, before the warm-up gives up


class WarmUp:
    """Pay the first-job costs before the user's first job: the JVM's (code loading, query
    planning), then the Python paths' (a Python UDF's worker daemon, an Arrow UDF's when the
    environment has pyarrow, and the RDD API's, which is another), so that a
    notebook's first Python function finds warm workers. One after the other: run together,
    the Python steps' tasks hold the cores while their workers start, and the JVM job waits
    behind them. The JVM job runs as soon as the session is ready; a cell that comes
    meanwhile waits for it, as it would pay the same cost itself. A Python step starts only
    once no cell has run for a second, and a cell that begins cancels it. A cell that is
    already waiting for Spark pays every cost itself, sooner: no warm-up. With dynamic allocation, the Python steps
    are left out: they would ask the cluster for executors only to warm workers it then
    releases, with the executors, once they are idle. The warm_up option chooses: python
    (all of it), jvm (the JVM job only: no Python workers until a cell needs them) or off."""

    def __init__(self, runtime: SparkRuntime) -> None:
        self.runtime = runtime
        self.cells_idle = threading.Event()  # no cell runs (the notebook's): the warm-up gives way to cells
        self.cells_idle.set()
        self.cells_ended_at = 0.0  # when the last cell ended (monotonic), for the quiet wait
        self.step = None  # the warm-up step under way that a cell which begins cancels (give_way)
        self.waiting = False  # a cell waits for the session: it pays the first-job cost itself

    # -- what the notebook tells

    def cell_began(self) -> None:
        self.cells_idle.clear()

    def cell_ended(self, at: float) -> None:
        """The last running cell ended, at ``at`` (monotonic)."""
        self.cells_ended_at = at
        self.cells_idle.set()

    def cell_waits(self) -> None:
        """A cell waits for the session (or restarts it): no warm-up."""
        self.waiting = True

    def give_way(self) -> None:
        """A cell begins: cancel the warm-up job under way, so that the cell's own jobs need not
        queue behind it (the warm-up runs that step again once the cells are done)."""
        if self.step is None or self.runtime.state != State.READY:
            return
        try:
            self.runtime.driver.cancel(GROUP)
        except Exception:  # the session is going away: nothing to give way to
            log.debug("cancelling the warm-up for a cell", exc_info=True)

    # -- the warm-up

    def run(self) -> None:
        """The warm-up of the runtime's session that is ready now, in the calling thread."""
        runtime = self.runtime
        mode = runtime.options["warm_up"]  # python, jvm (the JVM job only) or off
        steps = [("warm-up: a JVM job", warmup.jvm_job)] if mode != "off" and not runtime.driver.warm_session else []
        if mode == "python" and runtime.driver.warms_python_workers():
            # UDFs first: a notebook's first Python function is more often a UDF than an RDD map,
            # and a cold one costs twice as much (its workers import pandas and pyarrow): a first
            # Python cell that comes while the warm-up still runs at least finds warm UDF workers.
            steps.append(("warm-up: Python UDF workers", warmup.python_udf))
            if warmup.has_arrow():
                steps.append(("warm-up: an Arrow UDF", warmup.arrow_udf))
            steps.append(("warm-up: Python workers (RDD map)", warmup.rdd_map))
        session, attempts = runtime.session, 0
        try:
            runtime.driver.group_warm_up(GROUP)
        except Exception:  # a failed warm-up only costs time later
            log.debug("setting the warm-up's job group", exc_info=True)
            return
        while steps and attempts < ATTEMPTS:
            step, run = steps[0]
            # The JVM job runs at once, and a cell that comes meanwhile waits for it: the cell would
            # pay the same first-job cost itself. A Python step waits for the cells, and a cell that
            # begins cancels it (give_way): that cost is not the cell's.
            yields = run is not warmup.jvm_job
            if self.waiting or (yields and not self.wait_for_quiet()) or self.waiting or runtime.state != State.READY or session is not runtime.session:
                return
            runtime.mark(step)
            self.step = step if yields else None
            try:
                run(session)
                steps.pop(0)
            except Exception:  # cancelled for a cell: again once it is done; else a failed warm-up only costs time later
                log.debug("the warm-up step %r", step, exc_info=True)
                attempts += 1
                if self.cells_idle.is_set():
                    return
            finally:
                self.step = None

    def wait_for_quiet(self) -> bool:
        """Wait until no cell has run for QUIET seconds: while a notebook runs cell after cell
        (Run All), a warm-up step would only start to be cancelled. False after PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        while self.cells_idle.wait(max(0.0, deadline - time.monotonic())):
            quiet = time.monotonic() - self.cells_ended_at
            if quiet >= QUIET:
                return True
            time.sleep(QUIET - quiet)
        return False
