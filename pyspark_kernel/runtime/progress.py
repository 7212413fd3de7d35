"""A one-line text progress display of a cell's Spark jobs, updated in place, polled from Spark's
status tracker (no listener jar)."""

import contextvars
import threading
import time

PROGRESS_DELAY = 0.5  # a cell shows progress once it has run this long with Spark jobs
PROGRESS_INTERVAL = 0.5
WIDTH = 20


def describe(tracker, group, elapsed, final):
    """The progress line for the jobs of ``group``, or None when it has none."""
    jobs = [tracker.getJobInfo(job) for job in sorted(tracker.getJobIdsForGroup(group))]
    jobs = [job for job in jobs if job is not None]
    if not jobs:
        return None
    stages = [tracker.getStageInfo(stage) for job in jobs for stage in job.stageIds]
    stages = [stage for stage in stages if stage is not None]
    done_jobs = sum(job.status == "SUCCEEDED" for job in jobs)
    tasks = sum(stage.numTasks for stage in stages)
    finished = sum(stage.numCompletedTasks for stage in stages)
    running = sum(stage.numActiveTasks for stage in stages)
    if final:
        failed = [job for job in jobs if job.status == "FAILED"]
        state = f"{len(failed)} failed or cancelled" if failed else "done"
        return f"Spark: {len(jobs)} job(s) {state}, {finished}/{tasks} tasks, {elapsed:.1f} s"
    filled = int(WIDTH * finished / tasks) if tasks else 0
    bar = "#" * filled + "." * (WIDTH - filled)
    done_stages = sum(stage.numTasks == stage.numCompletedTasks for stage in stages)
    return f"Spark: [{bar}] jobs {done_jobs}/{len(jobs)}, stages {done_stages}/{len(stages)}, tasks {finished}/{tasks} ({running} running), {elapsed:.0f} s"


class Progress:
    def __init__(self, context, group):
        self.context = context
        self.group = group
        self.stopped = threading.Event()
        self.handle = None
        self.text = None
        self.started = time.monotonic()
        self.thread = None

    def begin(self):
        run_in_cell = contextvars.copy_context().run  # output from the thread belongs to this cell
        self.thread = threading.Thread(target=run_in_cell, args=(self.watch,), name="pyspark-kernel-progress", daemon=True)
        self.thread.start()

    def end(self):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def watch(self):
        try:
            while not self.stopped.wait(PROGRESS_INTERVAL if self.handle else PROGRESS_DELAY):
                self.show(final=False)
            self.show(final=True)
        except Exception:  # the display is a courtesy, and the JVM may have gone: never break a cell over it
            pass

    def show(self, final):
        from IPython.display import display

        if self.handle is None and final:
            return  # a cell quicker than the delay gets no progress line
        text = describe(self.context.statusTracker(), self.group, time.monotonic() - self.started, final)
        if text is None or text == self.text:
            return
        self.text = text
        if self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)
