"""A Spark Connect driver (an sc:// master): the kernel is a client of a server that someone else
runs. Its sessions have no SparkContext; a cell's operations carry a tag of the cell's own, which
an interrupt cancels (Spark Connect has no job groups).

What %pip adds to the kernel's environment reaches the server's Python workers as the session's
artifacts (runtime.artifacts): at once, when a cell installs it, and at each new session's start
(a kernel restart, %spark restart, an idle stop), which gets every distribution that differs from
the environment `create` recorded (runtime.pipwatch.MANIFEST), since the server forgets a session's
artifacts with it."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from typing import Any

from . import artifacts, pipwatch
from .diagnostics import KERNEL_DIR, check_master_reachable
from .drivers import CANCEL_THREAD, Driver
from .masters import with_token
from .options import CONNECT_TOKEN_VARIABLE
from .shipping import RESTART
from .state import State

log = logging.getLogger(__name__)


class ConnectDriver(Driver):
    remote = True
    calls = None  # the session's gRPC calls, which hold the main thread's interrupt (connectguard)
    sent: dict[str, str] = {}  # the session's artifacts from %pip: {distribution: its zip}, new for each session

    def start(self, attempt) -> Any:
        runtime = self.runtime
        SparkSession = self.import_pyspark()
        runtime.mark("checking the master")
        check_master_reachable(runtime.master)

        runtime.mark("connecting to the Spark Connect server")
        # The token lives in the Jupyter server's environment, never in kernel.json; it goes to the
        # client as a builder option, not into an environment variable that code prints.
        builder = self.remote_builder(SparkSession, with_token(runtime.master, runtime.environ.get(CONNECT_TOKEN_VARIABLE)))
        for key, value in runtime.conf.items():
            if key not in ("spark.master", "spark.remote"):
                builder = builder.config(key, value)
        session = builder.getOrCreate()
        self.send_environment(session, attempt)
        return session

    def send_environment(self, session: Any, attempt, kernel_dir: str = KERNEL_DIR) -> None:
        """Send a new session every pure-Python distribution that differs from the environment as
        `create` recorded it (as it was at the kernel's start, for a kernel made before that); the
        start's banner says what went and what cannot, once."""
        runtime = self.runtime
        self.sent = {}  # a new session has none of the last one's artifacts
        baseline = pipwatch.read_manifest(os.path.join(kernel_dir, pipwatch.MANIFEST))
        now = pipwatch.distributions(runtime.pip.prefix)
        changes = pipwatch.Changes(runtime.pip.initial if baseline is None else baseline, now)
        runtime.pip.ship(now)  # the cells' notices measure from here
        if not changes.names:
            return
        runtime.mark("adding %pip's packages to the session")
        zipped, refused = self.zip_distributions(changes)
        parts = []
        if zipped:
            try:
                session.addArtifacts(*zipped.values(), pyfile=True)
                self.sent = zipped
                parts.append(f"{', '.join(zipped)} sent to its Python workers (addArtifacts, pyfile)")
            except Exception as error:  # the session works without them: its UDFs' imports say what is missing
                log.warning("adding %s to the Spark Connect session", ", ".join(zipped), exc_info=True)
                parts.append(f"sending {', '.join(zipped)} failed: {first_line(error)}")
        parts.extend(refusal(why) for why in refused)
        attempt.notices.append(f"The Spark Connect session gets what %pip changed since create ({changes.summary()}): " + "; ".join(parts) + ".")

    def zip_distributions(self, changes: pipwatch.Changes) -> tuple[dict[str, str], list[artifacts.NotShippable]]:
        """The changed distributions zipped ({name: zip}), and those that cannot be."""
        zipped, refused = {}, []
        for name in changes.names:
            try:
                zipped[name] = artifacts.zip_distribution(name, changes.after[name][0], self.runtime.scratch, self.runtime.pip.prefix)
            except artifacts.NotShippable as why:
                refused.append(why)
            except OSError as error:
                refused.append(artifacts.NotShippable(name, f"cannot be zipped: {error.strerror or error}"))
        return zipped, refused

    def remote_builder(self, SparkSession: Any, url: str) -> Any:
        """A builder of a session on the Spark Connect server at ``url`` whose gRPC calls hold a
        first interrupt to their end: one raised inside gRPC can hang every later query (connectguard)."""
        load_client()
        from .connectguard import HoldInterrupts, channel_builder

        calls = HoldInterrupts(self.runtime.held)
        channel = channel_builder(url, calls)
        if channel is None:
            return SparkSession.builder.remote(url)
        from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

        self.calls = calls
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # as SparkSession.builder.remote(url) sets it
        return RemoteSparkSession.builder.channelBuilder(channel)

    def after_death(self, session: Any, context: Any) -> None:
        # A call under way fails now, instead of retrying for minutes. Its calls are closed, not
        # its channel, where they are the kernel's (connectguard: closing could crash the kernel).
        if self.calls is not None:
            self.calls.close()
            return
        try:
            session.client.close()
        except Exception:
            log.debug("closing the Spark Connect client of a session whose server died", exc_info=True)

    # -- cells

    def session_options(self, options: dict) -> dict:
        return {key: value for key, value in options.items() if key != "spark.remote"}  # the kernel's server

    def begin_cell(self, group: str, cell: int) -> None:
        self.runtime.session.addTag(group)  # the client's tags are this thread's

    def end_cell(self, group: str) -> None:
        self.runtime.session.removeTag(group)

    def cancel(self, group: str) -> None:
        self.runtime.session.interruptTag(group)

    def interrupt(self, group: str) -> None:
        # A 3.5 client leaves the server's operation running when interrupted: the tag stops it.
        threading.Thread(target=interrupt_tag, args=(self.runtime.session, group, self.calls), name=CANCEL_THREAD, daemon=True).start()

    def progress(self, group: str) -> Any:
        from .progress import ConnectProgress

        return ConnectProgress(self.runtime.session)

    def pip_notice(self, changes: pipwatch.Changes) -> str | None:
        """Pure-Python distributions go to the ready session as artifacts, those it lacks (each new
        session gets them at its start: send_environment); others, and removals, cannot reach the
        server's Python from here."""
        zipped, refused = self.zip_distributions(changes)
        parts = []
        if zipped and self.runtime.state == State.READY:
            new = {name: path for name, path in zipped.items() if self.sent.get(name) != path}
            try:
                if new:
                    self.runtime.session.addArtifacts(*new.values(), pyfile=True)
                    self.sent = {**self.sent, **new}
                parts.append(f"{', '.join(zipped)} sent to the Spark Connect session's Python workers (addArtifacts, pyfile): its UDFs import them from now on, "
                             "and each new session gets them as it starts")
            except Exception as error:  # said, not raised: the cell's own work is done
                log.warning("adding %s to the Spark Connect session", ", ".join(new), exc_info=True)
                parts.append(f"sending {', '.join(new)} to the Spark Connect session failed ({first_line(error)}): a new session gets them as it starts ({RESTART})")
        elif zipped:
            parts.append(f"{', '.join(zipped)} go to the Spark Connect session's Python workers as it starts (addArtifacts, pyfile)")
        parts.extend(refusal(why) for why in refused)
        if changes.removed:
            parts.append(f"removing ({', '.join(changes.removed)}) does not reach the server")
        return f"NOTE: %pip changed this environment ({changes.summary()}): " + "; ".join(parts) + "."

    # -- what the notebook shows

    def banner(self) -> str:
        return f"Spark {self.runtime.session.version} | Spark Connect {self.runtime.master}"

    def status_lines(self) -> list[str]:
        return [f"Spark Connect server: {self.runtime.master}"]


def load_client() -> None:
    """Import Spark Connect's client: gRPC, protobuf, pandas and pyarrow, about 0.3 s of Python that
    a notebook's first Spark cell may be waiting for. The garbage collector is paused meanwhile: it
    would walk the new modules' objects again and again, for nothing (about 50 ms)."""
    if "pyspark.sql.connect.session" in sys.modules:
        return
    paused = gc.isenabled()
    gc.disable()
    try:
        import pyspark.sql.connect.session  # noqa: F401 - loaded for the builder
        from . import connectguard  # noqa: F401 - and gRPC with it
    finally:
        if paused:
            gc.enable()


def refusal(why: artifacts.NotShippable) -> str:
    return f"{why.name} not sent: {why.reason}; install it where the Spark Connect server runs"


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def interrupt_tag(session: Any, tag: str, calls: Any = None) -> None:
    """Interrupt the operations tagged ``tag``, from interrupt's thread; first end the main
    thread's wait for a response, where its interrupt is held (connectguard)."""
    try:
        if calls is not None:
            calls.cancel_awaited()
        session.interruptTag(tag)
    except Exception:  # the server may have gone: the cell's own call says so
        log.debug("interrupting the operations tagged %s", tag, exc_info=True)
