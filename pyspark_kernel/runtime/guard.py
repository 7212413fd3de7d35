"""Every call the notebook makes to the driver JVM goes through one guard on Py4J's client:

- an interrupt that arrives while the main thread waits inside a call is held and raised as the
  call returns. Raised inside the call, Py4J shuts the call's connection down and asks the JVM to
  do the same, and the JVM can then drop the next connection the cell opens: the cell would end
  with a Py4JNetworkError instead of the interrupt (seen on a busy machine). The cell's jobs are
  cancelled meanwhile, so the call returns at once; a second interrupt does not wait.
- a call that fails because the JVM has exited raises one clear error that says how it exited,
  instead of Py4J's connection errors.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import logging
import threading

PY4J_SEND_FAILED = "Exception while sending command."


class HeldInterrupt:
    interrupt = KeyboardInterrupt

    def __init__(self):
        self.depth = 0  # Py4J calls the main thread is inside (the JVM can call back into Python)
        self.pending = False

    def hold(self) -> bool:
        """Whether to hold this interrupt (a first one, inside a call) rather than raise it now."""
        if self.depth and not self.pending:
            self.pending = True
            return True
        self.pending = False
        return False

    def call(self, function, *args, **kwargs):
        """``function(*args, **kwargs)``, a call the main thread is inside: a first interrupt
        meanwhile is held and raised as it returns."""
        main = threading.current_thread() is threading.main_thread()
        if main:
            self.depth += 1
        try:
            return function(*args, **kwargs)
        finally:
            if main:
                self.depth -= 1
                if self.pending and self.depth == 0:
                    self.pending = False
                    raise self.interrupt  # noqa: B012 - the interrupt the user asked for wins


def guard(client, held: HeldInterrupt, died) -> None:
    """Route ``client``'s calls through ``held`` and ``died`` (a function giving the error to
    raise when a failed call is explained by the JVM having exited, else None). Once the JVM is
    known to be gone (the client is marked not connected), calls fail at once."""
    send = client.send_command
    if getattr(send, "pyspark_kernel_guard", False):
        return

    def explained_send(*args, **kwargs):
        try:
            return send(*args, **kwargs)
        except Exception as error:
            if is_network_error(error):
                dead = died()
                if dead is not None:
                    raise dead from None
            raise

    def send_command(*args, **kwargs):
        if not getattr(client, "is_connected", True):
            dead = died()
            if dead is not None:
                raise dead
        return held.call(explained_send, *args, **kwargs)

    send_command.pyspark_kernel_guard = True
    client.send_command = send_command


def is_network_error(error: BaseException) -> bool:
    """Py4J's own connection errors, or the socket's: not an error the JVM answered with."""
    return isinstance(error, OSError) or type(error).__name__ == "Py4JNetworkError"


class QuietWhenDead(logging.Filter):
    """Drops Py4J's own report of a failed call ("Exception while sending command.", logged on the
    root logger, so it lands in whatever cell is running) when the JVM has exited: the notebook
    gets the runtime's one error instead."""

    def __init__(self, exited):
        super().__init__()
        self.exited = exited

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage() == PY4J_SEND_FAILED and self.exited())


def quiet_py4j(exited) -> None:
    logging.getLogger().addFilter(QuietWhenDead(exited))
