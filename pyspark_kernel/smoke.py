"""The smoke test: run a real notebook on an installed kernel and report each check.

The notebook is built here from the kernel's own kernel.json: what it configures is what the
checks expect. Expected values enter the notebook as a JSON string literal, never as code.
"""

import json
import re
import sys
import time

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from .errors import InputError
from .kernelspec import CONF_VARIABLE, kernel_environment
from .manage import find_kernel
from .runtime.masters import is_connect
from .runtime.options import ENV_REFERENCE

ENV_FROM_SERVER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # kernel.json's form of an --env-from variable

SETUP = """\
import json as _json, sys as _sys
_expected = _json.loads({expected!r})
"""

# (name, what it proves, code). A check passes when its cell raises nothing.
CHECKS = [
    ("spark_count", "spark.range(1000).count() == 1000", """\
_count = spark.range(1000).count()
assert _count == 1000, "spark.range(1000).count() returned %r" % _count
print("spark.range(1000).count() =", _count)
"""),
    ("master", "Spark runs on the configured master", """\
if _expected["master"].startswith("sc://"):
    import pyspark as _pyspark
    assert type(spark).__module__ == "pyspark.sql.connect.session", "spark is a %s, not a Spark Connect session" % type(spark)
    # pyspark-client has no SparkContext at all, so no way to start a JVM.
    assert getattr(getattr(_pyspark, "SparkContext", None), "_gateway", None) is None, "a local JVM was started for a Spark Connect kernel"
    print("Spark Connect session, no local JVM")
else:
    assert sc.master == _expected["master"], "sc.master is %r, the kernel configures %r" % (sc.master, _expected["master"])
    print("sc.master =", sc.master)
"""),
    ("conf_round_trip", "every configured Spark setting reads back exactly", """\
_appended = ("spark.archives", "spark.driver.defaultJavaOptions")  # the kernel's runtime adds to these
_read = {k: spark.conf.get(k, None) for k in _expected["conf"]}
_wrong = {k: (v, _read[k]) for k, v in _expected["conf"].items() if _read[k] != v and not (k in _appended and (_read[k] or "").startswith(v))}
# Secrets (${env:NAME} settings): only that Spark has a value; the value is never shown.
_missing = [k for k in _expected["conf_secret"] if not spark.conf.get(k, None)]
assert not _wrong and not _missing, "; ".join(["%s: configured %r, Spark has %r" % (k, v, got) for k, (v, got) in _wrong.items()]
                                             + ["%s: Spark has no value for this secret" % k for k in _missing])
print(len(_expected["conf"]) + len(_expected["conf_secret"]), "settings read back exactly")
"""),
    ("environment", "the kernel process has kernel.json's env", """\
import os as _os
_wrong = {k: (v, _os.environ.get(k)) for k, v in _expected["env"].items() if _os.environ.get(k, "") != v}  # "" in kernel.json: unset
_missing = [k for k in _expected["env_secret"] if not _os.environ.get(k)]  # from the server's environment: only that it is there
assert not _wrong and not _missing, "; ".join(["%s: kernel.json gives %r, the kernel has %r" % (k, v, got) for k, (v, got) in _wrong.items()]
                                             + ["%s: not set in the Jupyter server's environment" % k for k in _missing])
print(len(_expected["env"]) + len(_expected["env_secret"]), "environment variables as configured")
"""),
    ("driver_python", "the driver runs the kernel's Python", """\
assert _sys.executable == _expected["python"], "the driver runs %s, the kernel is configured for %s" % (_sys.executable, _expected["python"])
print("driver Python:", _sys.executable)
"""),
    ("executor_python", "executors run the driver's Python version", """\
from pyspark.sql.functions import udf as _udf

@_udf
def _executor_python(_):
    import sys
    return "%s (%d.%d.%d)" % ((sys.executable,) + tuple(sys.version_info[:3]))

_driver_version = "%d.%d.%d" % _sys.version_info[:3]
_seen = sorted({row[0] for row in spark.range(0, 4, 1, 2).select(_executor_python("id")).collect()})
assert all(seen.endswith("(%s)" % _driver_version) for seen in _seen), "executors ran %r, the driver runs Python %s" % (_seen, _driver_version)
print("executor Python:", ", ".join(_seen))
"""),
]

STARTUP_TIMEOUT = 180
CELL_TIMEOUT = 300


def expectations(spec) -> dict:
    """What the notebook checks, as data written into its first cell. Values from the server's
    environment (--env-from) and ${env:NAME} settings are secrets: the notebook, which CI keeps as
    an artifact, gets only their names, and checks only that they are set."""
    from_server = {name for name, value in spec.env.items() if ENV_FROM_SERVER.fullmatch(value)}
    env = {name: value for name, value in kernel_environment(spec.env, {}).items() if name not in from_server}
    conf = json.loads(env.get(CONF_VARIABLE, "{}"))
    master = conf.get("spark.master", "")
    if is_connect(master):
        conf = {k: v for k, v in conf.items() if k != "spark.master"}  # a Connect server has its own master
    secret_conf = sorted(k for k, v in conf.items() if ENV_REFERENCE.search(v))
    return {"master": master, "conf": {k: v for k, v in conf.items() if k not in secret_conf}, "conf_secret": secret_conf,
            "env": env, "env_secret": sorted(from_server), "python": spec.argv[0]}


def check_cell(source: str, name: str, description: str):
    return nbformat.v4.new_code_cell(source, metadata={"tags": [f"check:{name}"], "pyspark_kernel": {"check": name, "description": description}})


def user_checks(path: str) -> list:
    """The code cells of a team's own notebook, each one more check (named by a check:NAME tag)."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as error:
        raise InputError("notebook", f"cannot read {path}: {error}", "give the path of a .ipynb notebook") from None
    cells = []
    for number, cell in enumerate((c for c in notebook.cells if c.cell_type == "code"), 1):
        tags = [tag[len("check:"):] for tag in cell.metadata.get("tags", []) if tag.startswith("check:")]
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "(empty cell)")
        cells.append(check_cell(cell.source, tags[0] if tags else f"notebook-{number}", first_line))
    return cells


def make_notebook(expected: dict, extra_cells=()):
    cells = [check_cell(SETUP.format(expected=json.dumps(expected)), "setup", "the kernel starts and the notebook's first cell runs")]
    cells += [check_cell(code, name, description) for name, description, code in CHECKS]
    return nbformat.v4.new_notebook(cells=cells + list(extra_cells))


def cell_error(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output['ename']}: {output['evalue']}"
    return None


def cell_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream").strip()


def run_notebook(notebook, manager, name: str):
    # The channels encrypted when the kernel can (it says so in kernel.json): no plain-TCP warning.
    km = KernelManager(kernel_name=name, kernel_spec_manager=manager, transport_encryption="auto")
    client = NotebookClient(notebook, km=km, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT, allow_errors=True)
    try:
        client.execute()
    finally:
        if km.has_kernel:  # nbclient gives up waiting after a while; the kernel must not outlive us
            km.shutdown_kernel(now=False)
    return notebook


BANNER = re.compile(r"Spark \S+ \| .+")


def banner(notebook) -> str | None:
    """The kernel's one-line Spark banner, from whichever cell showed it."""
    lines = (line for cell in notebook.cells for line in cell_text(cell).splitlines())
    return next((line for line in lines if BANNER.fullmatch(line)), None)


def results(notebook) -> list[tuple]:
    """[(name, description, error or None, output)], one per check cell, in order."""
    return [(cell.metadata["pyspark_kernel"]["check"], cell.metadata["pyspark_kernel"]["description"], cell_error(cell), cell_text(cell))
            for cell in notebook.cells if "pyspark_kernel" in cell.metadata]


def write_junit(path: str, name: str, found: list, seconds: float) -> None:
    """A JUnit report: one test case per check, its output and failure readable in any CI."""
    from xml.etree import ElementTree

    failures = sum(1 for _, _, error, _ in found if error)
    suite = ElementTree.Element("testsuite", name=f"pyspark-kernel smoke {name}", tests=str(len(found)), failures=str(failures), errors="0", time=f"{seconds:.2f}")
    for check, description, error, output in found:
        case = ElementTree.SubElement(suite, "testcase", classname=f"smoke.{name}", name=check)
        if error:
            ElementTree.SubElement(case, "failure", message=error).text = f"{description}\n{error}"
        ElementTree.SubElement(case, "system-out").text = output
    tree = ElementTree.ElementTree(suite)
    ElementTree.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def smoke(name: str, kernels_dir: str | None = None, out=sys.stdout, junit: str | None = None, save_notebook: str | None = None, notebook: str | None = None) -> int:
    """Run the smoke notebook on kernel ``name``; print one line a check; 0 when all pass.
    ``notebook`` adds a team's own checks; ``junit`` and ``save_notebook`` write the results."""
    manager, spec = find_kernel(name, kernels_dir)
    executed = make_notebook(expectations(spec), user_checks(notebook) if notebook else ())
    started = time.monotonic()
    try:
        run_notebook(executed, manager, name)
        found = results(executed)
    except Exception as error:  # noqa: BLE001 - the kernel died or never answered: that is the finding
        found = [("kernel", f"{name} runs the notebook", f"{type(error).__name__}: {error}", "")]
    if save_notebook:
        nbformat.write(executed, save_notebook)
    if junit:
        write_junit(junit, name, found, time.monotonic() - started)
    if banner(executed):
        print(banner(executed), file=out)
    failed = []
    for check, description, error, output in found:
        if error:
            failed.append(check)
            print(f"FAIL {check}: {description}: {error}", file=out)
        else:
            print(f"PASS {check}: {output.splitlines()[-1] if output else description}", file=out)
    print(f"{name}: {len(found) - len(failed)} passed, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""), file=out)
    return 1 if failed else 0
