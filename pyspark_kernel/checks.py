"""A line of doctor's report: OK with what was found, or PROBLEM with what is wrong and its fix.
Its own module: doctor and its cluster checks (pyspark_kernel.cluster) both make them."""

from __future__ import annotations

from typing import NamedTuple

OK, PROBLEM = "OK", "PROBLEM"


class Check(NamedTuple):
    """One line of the report: OK with what was found, or PROBLEM with what is wrong and the fix."""

    status: str
    name: str
    text: str  # what was found (OK), or what is wrong (PROBLEM)
    fix: str = ""

    @property
    def problem(self) -> str | None:
        return self.text if self.status == PROBLEM else None

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.text}" + (f" ({self.fix})" if self.status == PROBLEM else "")


def ok(name: str, found: str) -> Check:
    return Check(OK, name, found)


def problem(name: str, what: str, fix: str) -> Check:
    return Check(PROBLEM, name, what, fix)
