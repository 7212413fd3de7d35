"""Spark's authentication of the driver's RPC and block transfers (spark.authenticate). Without it,
any process on the machine, another user's too, can call a driver's RPC endpoints and fetch its
cached and shuffle blocks.

What Spark does (SecurityManager.initializeAuth, the same in Spark 3.5 and 4.x): with
spark.authenticate on, it makes a new secret for each application when the master is local* or
yarn (kept in the JVM's memory; executors get it from Spark), and for kubernetes too; for any other
master (standalone) it requires spark.authenticate.secret, which the master and workers must share.
So:

- local masters, and the shared driver (local): on, with Spark's secret for the session;
- standalone: on when the kernel gives the cluster's secret, by reference
  (spark.authenticate.secret=${env:NAME}: resolved from the Jupyter server's environment and handed
  to the JVM over Py4J, never on a command line); else off, and %spark status and doctor say so;
- yarn, kubernetes: as the kernel's settings say (YARN's external shuffle service must be
  configured for it by the cluster's admins).

A spark.authenticate the kernel sets itself stands.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

from typing import NamedTuple

from .masters import MASTERS

AUTHENTICATE = "spark.authenticate"
SECRET = "spark.authenticate.secret"
DEFAULT_MASTER = "local[*]"  # Spark's when no master is set
SECRET_FIX = ("give the kernel the cluster's secret by reference: --spark.authenticate.secret '${env:SPARK_AUTH_SECRET}' --env-from SPARK_AUTH_SECRET, "
              "with the master and workers started with spark.authenticate=true and the same secret")


def master_kind(master: str) -> str | None:
    return next((kind for kind, pattern in MASTERS.items() if pattern.fullmatch(master)), None)


def auth_settings(settings: dict) -> dict:
    """What to add to a driver's settings so that its RPC and block transfers need a secret."""
    if AUTHENTICATE in settings:
        return {}
    kind = master_kind(settings.get("spark.master", DEFAULT_MASTER))
    if kind == "local" or kind == "standalone" and settings.get(SECRET):
        return {AUTHENTICATE: "true"}
    return {}


def is_on(settings: dict) -> bool:
    """Whether a driver launched with ``settings`` (auth_settings already added) authenticates."""
    return settings.get(AUTHENTICATE, "false").strip().lower() == "true"


class Finding(NamedTuple):
    """Whether a driver's RPC and block transfers need a secret, in words, and the fix when not."""

    on: bool
    text: str
    fix: str = ""
    problem: bool = False  # off where the kernel could have it on: doctor reports a problem


def describe(settings: dict) -> Finding:
    settings = {**settings, **auth_settings(settings)}
    kind = master_kind(settings.get("spark.master", DEFAULT_MASTER))
    if is_on(settings):
        where = "the cluster's secret" if kind == "standalone" else "a secret Spark makes for each session"
        return Finding(True, f"on: the driver's RPC and block transfers need {where}")
    if kind == "standalone":
        return Finding(False, "off: the cluster has no secret configured, so any process that reaches the driver can call its RPC and fetch its blocks",
                       SECRET_FIX, problem=True)
    if kind in ("yarn", "kubernetes"):
        return Finding(False, "off: Spark makes a secret for each application once spark.authenticate is true",
                       "ask the cluster's admins (on YARN, its external shuffle service needs it too), then --spark.authenticate=true")
    return Finding(False, "off: any local process can call the driver's RPC and fetch its blocks", "remove spark.authenticate=false from the kernel's settings",
                   problem=True)


def status_line(settings: dict) -> str:
    """`%spark status`'s line about it."""
    found = describe(settings)
    return f"RPC authentication: {found.text}" + (f" ({found.fix})" if found.fix else "")
