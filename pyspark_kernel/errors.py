"""The one error a user of the template sees: which field, what is wrong, how to fix it."""

import json


class InputError(Exception):
    """Bad input, reported as one line: ``ERROR: <field>: <problem> (<fix>)``."""

    def __init__(self, field: str, problem: str, fix: str):
        super().__init__(field, problem, fix)
        self.field = field
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"ERROR: {self.field}: {self.problem} ({self.fix})"


def quote(value) -> str:
    """A value as it appears in an error: quoted, with newlines and control characters escaped,
    so the error stays on one line whatever the user typed."""
    return json.dumps(value, ensure_ascii=False)
