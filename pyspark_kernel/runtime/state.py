"""The states of the kernel's Spark session, and which state may follow which.

idle -> starting -> ready | failed; ready -> stopped (spark.stop(), idle_timeout, a restart),
dead (the driver exited) or stopping (the kernel exits); stopped -> starting; and a restart takes
any state but starting and stopping back to idle. SparkRuntime.transition alone changes the state.
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    """A str, so that it prints and compares as its name: `%spark status` shows it."""

    IDLE = "idle"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"
    DEAD = "dead"
    STOPPING = "stopping"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# For each state, the states it may follow.
ALLOWED = {
    State.IDLE: {State.IDLE, State.FAILED, State.STOPPED, State.DEAD},  # a restart, once the session is retired
    State.STARTING: {State.IDLE, State.STOPPED},
    State.READY: {State.STARTING},
    State.FAILED: {State.STARTING},
    State.STOPPED: {State.READY},
    State.DEAD: {State.READY},
    State.STOPPING: {State.READY},
}


def allowed(current: State, to: State) -> bool:
    """Whether ``to`` may follow ``current``."""
    return current in ALLOWED[to]
