"""Live progress of a cell's Spark jobs: one display per cell, updated in place, as HTML (a bar per
job and a link to the job's page in the Spark UI) with a text/plain line for consoles. When the
cell ends, the display becomes a static summary, which stays in the saved notebook.

Polled from Spark's status tracker on the classic driver: no listener jar, no front-end extension,
so it shows in JupyterLab, classic Notebook and nbclient alike. Spark Connect kernels get theirs
from the client's progress handler (see ConnectProgress)."""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import contextvars
import html
import logging
import re
import sys
import threading
import time
from typing import Any

from . import callsite

log = logging.getLogger(__name__)

PROGRESS_DELAY = 0.5  # a cell shows progress once it has run this long with Spark jobs
PROGRESS_INTERVAL = 0.5
END_WAIT = 5  # seconds the cell's end waits for the display's last update (a busy JVM can be slow to answer)
FINAL_SETTLE = 3  # of those, seconds the summary waits for the tracker to hear that the cell's jobs ended
SETTLE_INTERVAL = 0.05
WIDTH = 20
ROWS = 20  # jobs shown, the latest; a cell looping over hundreds of jobs says how many more
COLOURS = {"done": "#4caf50", "running": "#2196f3", "failed": "#e53935"}
DIRECTORIES = re.compile(r"(?<=at )/\S*/")  # "count at /tmp/ipykernel_7/331.py:1": the file's name is enough


class Job:
    """What the display shows of one Spark job (or, on Spark Connect, one operation)."""

    def __init__(self, id, description, status, stages_done, stages, tasks, done, running, failed, seconds):
        self.id, self.description, self.status = id, description, status
        self.stages_done, self.stages = stages_done, stages
        self.tasks, self.done, self.running, self.failed = tasks, done, running, failed
        self.seconds = seconds


def read_jobs(tracker, group: str, first_seen: dict, now: float) -> list[Job]:
    """The jobs of ``group`` from Spark's status tracker, oldest first. ``first_seen`` remembers
    when each job was first seen, for its elapsed time (the tracker has no job times)."""
    jobs = []
    for job_id in sorted(tracker.getJobIdsForGroup(group)):
        info = tracker.getJobInfo(job_id)
        if info is None:
            continue
        stages = [tracker.getStageInfo(stage) for stage in info.stageIds]
        stages = [stage for stage in stages if stage is not None]
        started, ended = first_seen.setdefault(job_id, [now, None])
        if info.status != "RUNNING" and ended is None:
            first_seen[job_id][1] = ended = now
        # The UI's description of a job without one: the name (call site) of its last stage.
        last = max(stages, key=lambda stage: stage.stageId, default=None)
        jobs.append(Job(
            job_id, DIRECTORIES.sub("", getattr(last, "name", "") or f"job {job_id}"), info.status,
            sum(stage.numTasks == stage.numCompletedTasks for stage in stages), len(stages),
            sum(stage.numTasks for stage in stages), sum(stage.numCompletedTasks for stage in stages),
            sum(stage.numActiveTasks for stage in stages), sum(getattr(stage, "numFailedTasks", 0) for stage in stages),
            (ended or now) - started,
        ))
    return jobs


def describe(jobs: list[Job], elapsed: float, final: bool) -> str | None:
    """The text/plain line for ``jobs``, or None when there are none."""
    if not jobs:
        return None
    tasks = sum(job.tasks for job in jobs)
    finished = sum(job.done for job in jobs)
    if final:
        failed = [job for job in jobs if job.status == "FAILED"]
        state = f"{len(failed)} failed or cancelled" if failed else "done"
        return f"Spark: {len(jobs)} job(s) {state}, {finished}/{tasks} tasks, {elapsed:.1f} s"
    filled = int(WIDTH * finished / tasks) if tasks else 0
    bar = "#" * filled + "." * (WIDTH - filled)
    done_jobs = sum(job.status == "SUCCEEDED" for job in jobs)
    running = sum(job.running for job in jobs)
    stages = sum(job.stages for job in jobs)
    done_stages = sum(job.stages_done for job in jobs)
    return f"Spark: [{bar}] jobs {done_jobs}/{len(jobs)}, stages {done_stages}/{stages}, tasks {finished}/{tasks} ({running} running), {elapsed:.0f} s"


def job_link(ui: str | None, job_id: int) -> str | None:
    """The job's page in the Spark UI, or None without a UI (or on Spark Connect)."""
    return f"{ui.rstrip('/')}/jobs/job/?id={job_id}" if ui else None


def bar(job: Job) -> str:
    """Tasks done, running and failed as one bar of coloured segments; the counts say it in words."""
    if not job.tasks:
        return ""
    segments = "".join(
        f'<span style="display:inline-block;height:100%;width:{100 * count / job.tasks:.1f}%;background:{COLOURS[kind]}"></span>'
        for kind, count in (("done", job.done), ("running", job.running), ("failed", job.failed)) if count)
    return (f'<span style="display:inline-block;vertical-align:middle;width:10em;height:0.9em;background:#e0e0e0;'
            f'white-space:nowrap;overflow:hidden">{segments}</span>')


def render_html(jobs: list[Job], elapsed: float, final: bool, ui: str | None) -> str:
    """The HTML display of ``jobs``: a row per job; links only where the Spark UI is."""
    rows = []
    hidden = max(0, len(jobs) - ROWS)
    for job in jobs[hidden:]:
        link = job_link(ui, job.id)
        name = f'<a href="{html.escape(link)}" target="_blank" rel="noopener">{job.id}</a>' if link else str(job.id)
        counts = f"{job.done}/{job.tasks} tasks" + (f", {job.running} running" if job.running else "") + (f", {job.failed} failed" if job.failed else "")
        state = html.escape(job.status.lower())
        description = html.escape(job.description)
        rows.append(f'<tr><td>{name}</td><td style="max-width:28em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap" title="{description}">{description}</td>'
                    f"<td>{bar(job)} {counts}</td>"
                    f"<td>{job.stages_done}/{job.stages}</td><td>{state}</td><td>{job.seconds:.1f} s</td></tr>")
    heading = describe(jobs, elapsed, final)
    return (f'<div class="pyspark-kernel-progress"><div>{html.escape(heading)}</div>'
            '<table><thead><tr><th>Job</th><th>Description</th><th>Tasks</th><th>Stages</th><th>Status</th><th>Elapsed</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            + (f"<div>and {hidden} earlier job(s) of this cell: the Spark UI has them all</div>" if hidden else "") + "</div>")


class Display:
    """One display per cell, made when there is something to show and updated in place."""

    def __init__(self):
        self.handle = None
        self.shown = None
        self.closed = False  # the cell has ended: no more updates
        self.lock = threading.Lock()

    def show(self, jobs: list, elapsed: float, final: bool, ui: str | None) -> None:
        from IPython.display import display

        text = describe(jobs, elapsed, final)
        if text is None:
            return
        data = {"text/plain": text, "text/html": render_html(jobs, elapsed, final, ui)}
        with self.lock:
            if data == self.shown or self.closed:
                return
            self.shown = data
            if self.handle is None:
                self.handle = display(data, raw=True, display_id=True)
            else:
                self.handle.update(data, raw=True)

    def close(self):
        """The cell has ended. An update after it would be a message from an idle kernel, which
        Jupyter takes for activity: the kernel culler would count the notebook idle from then."""
        with self.lock:
            self.closed = True


class Progress:
    """A cell's progress on the classic driver, polled in a thread of its own."""

    def __init__(self, context, group, ui=None):
        self.context = context
        self.group = group
        self.ui = ui
        self.stopped = threading.Event()
        self.display = Display()
        self.first_seen = {}
        self.jobs = []  # as last read: the summary, should the session end with the cell
        self.started = time.monotonic()
        self.thread = None

    def begin(self) -> None:
        run_in_cell = contextvars.copy_context().run  # output from the thread belongs to this cell
        self.thread = threading.Thread(target=run_in_cell, args=(self.watch,), name="pyspark-kernel-progress", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def end(self, error: BaseException | None = None) -> None:
        self.stopped.set()  # the tracker says itself which jobs failed
        if self.thread is not None:
            self.thread.join(timeout=END_WAIT)
        self.display.close()  # a thread still waiting on the JVM shows nothing once the cell is over

    def watch(self) -> None:
        try:
            while not self.stopped.wait(PROGRESS_INTERVAL if self.display.handle else PROGRESS_DELAY):
                self.show(final=False)
            self.show(final=True)
        except Exception:  # the display is a courtesy, and the JVM may have gone: never break a cell over it
            log.debug("the progress display of job group %s stopped", self.group, exc_info=True)

    def show(self, final: bool) -> None:
        if self.display.handle is None and final:
            return  # a cell quicker than the delay gets no progress display
        now = time.monotonic()
        try:
            self.jobs = read_jobs(self.context.statusTracker(), self.group, self.first_seen, now)
            # The cell is over, so are its jobs: the tracker hears of their end from Spark's listener
            # bus, which can lag on a busy JVM. The summary waits for it (a bounded while: the
            # display closes after END_WAIT), else a finished job would show as still running.
            settle = now + FINAL_SETTLE
            while final and any(job.status == "RUNNING" for job in self.jobs) and time.monotonic() < settle:
                time.sleep(SETTLE_INTERVAL)
                now = time.monotonic()
                self.jobs = read_jobs(self.context.statusTracker(), self.group, self.first_seen, now)
        except Exception:  # spark.stop() or %spark restart in the cell: summarise what was last seen
            if not final:
                raise
            log.debug("the jobs' last status was not read: the summary shows what was seen before", exc_info=True)
            for job in self.jobs:
                job.status = "SUCCEEDED" if job.status == "SUCCEEDED" else "FAILED"
        self.display.show(self.jobs, now - self.started, final, self.ui)


def stopped_the_query(error: BaseException | None) -> bool:
    """Whether a cell's error ended its Spark Connect query: an interrupt or Spark's own error, not
    a Python error after the query had finished."""
    return isinstance(error, KeyboardInterrupt) or (error is not None and type(error).__module__.startswith(("pyspark", "grpc")))


class ConnectProgress:
    """A cell's progress on Spark Connect (4.x), from the client's progress handler: the client
    calls it in the cell's own thread as the server reports an operation's stages. An operation
    is one row, named after the code that ran it, read from that thread's stack as the first
    report comes (runtime.callsite: the server names its jobs itself); Connect gives the client
    no job ids, so no UI links."""

    def __init__(self, session):
        self.session = session
        self.display = Display()
        self.operations = {}  # operation id -> its row's facts, in the order they came
        self.started = time.monotonic()
        self.shown_at = float("-inf")
        self.lock = threading.Lock()
        self.thread = threading.current_thread()  # the cell's: other threads' queries are not its

    def begin(self) -> None:
        self.session.registerProgressHandler(self)

    def stop(self) -> None:
        try:
            self.session.removeProgressHandler(self)
        except Exception:  # the session may have gone with the cell
            log.debug("removing a cell's progress handler", exc_info=True)

    def end(self, error: BaseException | None = None) -> None:
        self.stop()
        with self.lock:
            if stopped_the_query(error) and self.operations:
                # The client reports an interrupted or failed operation as done, too.
                list(self.operations.values())[-1]["failed"] = True
            if self.display.handle is not None:
                self.show(final=True)

    def __call__(self, stages, inflight_tasks, operation_id, done):
        # The client calls handlers without a try, in whichever thread runs a query: a fault here
        # must not fail the user's query, and another thread's queries are not this cell's.
        if threading.current_thread() is not self.thread:
            return
        try:
            with self.lock:
                self.report(stages, inflight_tasks, operation_id, done)
        except Exception:
            log.debug("a Spark Connect progress report was not shown", exc_info=True)

    def report(self, stages: Any, inflight_tasks: int, operation_id: str, done: bool) -> None:
        now = time.monotonic()
        operation = self.operations.get(operation_id or "")
        if operation is None:
            operation = self.operations[operation_id or ""] = {"first": now, "ended": None, "stages": [], "running": 0,
                                                                "name": callsite.name_of(sys._getframe(1))}
        if stages:
            operation["stages"] = list(stages)
        operation["running"] = 0 if done else inflight_tasks
        if done:
            operation["ended"] = now
        if now - self.started >= PROGRESS_DELAY and (done or now - self.shown_at >= PROGRESS_INTERVAL):
            self.shown_at = now
            self.show(final=False)

    def jobs(self, now: float, final: bool) -> list:
        jobs = []
        for number, (operation_id, operation) in enumerate(self.operations.items(), 1):
            stages = operation["stages"]
            if operation.get("failed") or (final and operation["ended"] is None):
                status = "FAILED"
            else:
                status = "SUCCEEDED" if operation["ended"] is not None else "RUNNING"
            name = DIRECTORIES.sub("", operation["name"]) if operation.get("name") else f"operation {operation_id[:8]}" if operation_id else "operation"
            jobs.append(Job(
                number, name, status,
                sum(bool(stage.done) for stage in stages), len(stages), sum(stage.num_tasks for stage in stages),
                sum(stage.num_completed_tasks for stage in stages), operation["running"], 0, (operation["ended"] or now) - operation["first"],
            ))
        return jobs

    def show(self, final: bool) -> None:
        now = time.monotonic()
        self.display.show(self.jobs(now, final), now - self.started, final, None)
