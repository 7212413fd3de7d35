"""`pyspark-kernel doctor NAME`: will this kernel start here, and if not, what to fix.

It runs the kernel's own start-up checks (the diagnostics module of its runtime, loaded from the
kernel's directory) with the environment the kernel would get, plus what they cannot see: the Java
version Spark needs, the versions of pyspark on both sides, and the cluster's client configuration.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from typing import Iterator

from .drift import create_command, runtime_version, spark_version_now, upgrade_command
from .environment import probe
from .errors import InputError
from .hooks import RUNTIME_PACKAGE
from .kernelspec import CONF_VARIABLE, OPTIONS_VARIABLE, RUNTIME_SOURCE, kernel_environment
from .runtime import auth, cache, dependencies, pipwatch, ui
from .runtime.diagnostics import SparkStartError
from .runtime.options import DEFAULT_OPTIONS, SPARK_VARIABLES
from .manage import find_kernel
from .runtime.envpack import fingerprint
from .validate import master_kind
from .checks import PROBLEM, Check, ok, problem

# The Java versions each Spark release line documents ("Spark runs on Java ..." in its docs).
SPARK_JAVA = {(3, 3): (8, 11, 17), (3, 4): (8, 11, 17), (3, 5): (8, 11, 17, 21), (4, 0): (17, 21), (4, 1): (17, 21)}
CHECKED_PACKAGE = "pyspark_kernel_checked_runtime"  # the checked kernel's copy of the runtime, as loaded here


def load_runtime(kernel_dir: str, upgrade: str = "pyspark-kernel upgrade NAME") -> types.ModuleType:
    """The kernel's own diagnostics module (standard library only: it loads without the kernel's
    pyspark), from the kernel's copy of the runtime: its imports of the runtime's other modules
    find the kernel's copies. Loaded afresh each time, and without the package's __init__."""
    package = os.path.join(kernel_dir, RUNTIME_PACKAGE)
    if not os.path.isfile(os.path.join(package, "diagnostics.py")):
        raise InputError("kernel_name", f"{kernel_dir} has no {RUNTIME_PACKAGE}/diagnostics.py", f"regenerate the kernel: {upgrade}")
    for name in [name for name in sys.modules if name == CHECKED_PACKAGE or name.startswith(CHECKED_PACKAGE + ".")]:
        del sys.modules[name]
    parent = types.ModuleType(CHECKED_PACKAGE)
    parent.__path__ = [package]
    sys.modules[CHECKED_PACKAGE] = parent
    return importlib.import_module(f"{CHECKED_PACKAGE}.diagnostics")


def documented_java(spark_version) -> tuple[int, ...] | None:
    """The Java versions Spark ``spark_version`` documents; a newer Spark 4 than the table knows
    is taken to keep its line's (17 and 21)."""
    try:
        line = tuple(int(part) for part in str(spark_version).split(".")[:2])
    except ValueError:
        return None
    if line in SPARK_JAVA:
        return SPARK_JAVA[line]
    newest = max((known for known in SPARK_JAVA if known[0] == line[0]), default=None)
    return SPARK_JAVA[newest] if newest and line > newest else None


def java_check(java: str, spark_version, java_version) -> Check:
    found = java_version(java)
    documented = documented_java(spark_version)
    if found is None:
        return problem("java", f"cannot tell the version of {java}", "check that it runs: java -version")
    if documented is None:
        return ok("java", f"{java} (Java {found}; no Java table for Spark {spark_version})")
    listed = ", ".join(map(str, documented))
    if found < min(documented):
        return problem("java", f"{java} is Java {found}; Spark {spark_version} runs on Java {listed}", "install one of those JDKs, or set JAVA_HOME in the kernel's env to one")
    if found not in documented:
        return ok("java", f"{java} (Java {found}; Spark {spark_version} documents Java {listed})")
    return ok("java", f"{java} (Java {found})")


def checks(spec, kernel_dir: str, environ, upgrade: str | None = None, kernels_dir: str | None = None) -> Iterator[Check]:
    """Every check on the kernel, in the report's order, against what is installed now (not what
    was found when the kernel was made). ``upgrade``: the command that upgrades this kernel."""
    name = os.path.basename(os.path.normpath(kernel_dir))
    upgrade = upgrade or upgrade_command(name)
    create = create_command(name, kernel_dir, kernels_dir)
    env = {**environ, **kernel_environment(spec.env, environ)}
    conf = json.loads(env.get(CONF_VARIABLE, "{}"))
    options = json.loads(env.get(OPTIONS_VARIABLE, "{}"))
    master = conf.get("spark.master", "local[*]")
    kind = master_kind(master)
    metadata = spec.metadata.get("pyspark_kernel", {})
    runtime = load_runtime(kernel_dir, upgrade)
    python = spec.argv[0]
    try:
        found = probe(python)
        yield ok("python", f"{python} (Python {found.python_version})")
    except InputError as error:
        yield problem("python", f"the kernel's Python {python} does not run: {error.problem}",
                      f"recreate the environment there, or point the kernel at another: {create} -e ENV (it keeps the kernel's other settings)")
        return
    recorded = metadata.get("spark_version")
    spark_now = spark_version_now(metadata, env)
    # pip's layout (and a Connect client) run the environment's own pyspark: without it, that is the cause.
    pyspark_gone = metadata.get("spark_layout") in ("pip", "client") and not found.pyspark
    if pyspark_gone:
        extra = "[connect]" if kind == "connect" or metadata.get("spark_layout") == "client" else ""
        pinned = f"=={recorded}" if recorded else ""
        yield problem("pyspark", f"the kernel's environment {found.prefix} has no pyspark (the kernel was made with {recorded or 'one'})",
                      f"{found.python} -m pip install 'pyspark{extra}{pinned}'")
    if kind != "connect":
        if not pyspark_gone:
            yield from spark_home_checks(runtime, env, metadata, create, upgrade)
        try:
            yield java_check(runtime.find_java(env), spark_now or recorded, runtime.java_version)
        except runtime.SparkStartError as error:
            yield problem("java", str(error), "install a JDK 17+ or set JAVA_HOME in the kernel's env")
    if not pyspark_gone:
        made_with = f"; the kernel was made with Spark {recorded}, and runs the one installed" if spark_now and recorded and spark_now != recorded else ""
        yield ok("pyspark", f"pyspark {found.pyspark or '(from SPARK_HOME)'}{f', Spark {spark_now}' if spark_now and spark_now != found.pyspark else ''}{made_with}")
    yield runtime_check(kernel_dir, metadata, upgrade)
    yield from cluster_checks(kind, master, conf, env, runtime, create, upgrade)
    if kind != "connect":  # a Connect server's driver is the server's
        yield auth_check(conf)
    yield server_environment_check(spec.env, environ, upgrade)
    yield ui_check(kernel_dir, env, kind, upgrade)
    yield ok("start_timeout", f"a start that hangs is given up after {options.get('start_timeout', DEFAULT_OPTIONS['start_timeout'])} s; one whose JVM exits fails at once")
    idle = options.get("idle_timeout", DEFAULT_OPTIONS["idle_timeout"])
    yield ok("idle_timeout", f"the session is stopped after {idle} s without a job, and restarted on next use" if idle and kind != "connect"
             else "the session is kept however long it is idle")
    yield limits_check(conf, env, kind)
    if kind != "connect" and conf.get(dependencies.PACKAGES):
        yield from packages_checks(conf, env)
    yield cache_check(env)
    if options.get("ship_environment"):
        yield environment_check(os.path.join(kernel_dir, options["ship_environment"]), metadata, upgrade)


def environment_check(archive: str, metadata: dict, upgrade: str) -> Check:
    """The packed environment the executors get, against the environment the driver runs now: a
    package added or changed since packing would be missing or different on the executors."""
    if not os.path.isfile(archive):
        return problem("executor_environment", f"{archive} is missing", f"{upgrade}: it packs the environment again")
    packed_from, venv = metadata.get("packed_from"), metadata.get("venv_dir", "")
    if not packed_from:
        return ok("executor_environment", f"{archive} (the kernel was made before kernels recorded what they packed: {upgrade} packs the environment again and records it)")
    if fingerprint(venv) != packed_from:
        packed = pipwatch.read_manifest(os.path.join(os.path.dirname(archive), pipwatch.MANIFEST))
        now = pipwatch.distributions(venv)
        if packed is not None and packed != now:  # what %pip does: the kernel's start packs it again (runtime.shipping)
            return ok("executor_environment", f"{venv} changed since it was packed into {archive} ({pipwatch.Changes(packed, now).summary()}): "
                      f"the kernel's next session packs it again as it starts ({upgrade} packs it now)")
        return problem("executor_environment", f"{venv} changed since it was packed into {archive}: the executors would run the environment as it was",
                       f"{upgrade}: it packs the environment again")
    return ok("executor_environment", f"{archive}, packed from {venv} as it is now")


def spark_home_checks(runtime, env, metadata: dict, create: str, upgrade: str) -> Iterator[Check]:
    """SPARK_HOME and py4j as kernel.json sets them. A pip pyspark that moved (an environment
    rebuilt on another Python) is found again by upgrade; a distribution that moved is not."""
    moved_fix = (upgrade if metadata.get("spark_layout") == "pip"
                 else f"put Spark back there, or point the kernel at it: {create} --spark_home DIR (it keeps the kernel's other settings)")
    try:
        runtime.check_spark_home(env)
        yield ok("spark_home", env["SPARK_HOME"])
    except runtime.SparkStartError as error:  # the whole message (kernels made before errors had fields have no .problem)
        yield problem("spark_home", getattr(error, "problem", None) or str(error), moved_fix)
    missing = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path and not os.path.exists(path)]
    if missing:
        yield problem("py4j", f"missing from the kernel's PYTHONPATH: {', '.join(missing)} (Spark was upgraded or moved)", upgrade)
    else:
        yield ok("py4j", f"py4j {metadata.get('py4j_version', '?')}")


def runtime_check(kernel_dir: str, metadata: dict, upgrade: str) -> Check:
    """Whether the kernel runs this pyspark-kernel's runtime: a kernel keeps the copy it was made
    with, whatever pyspark-kernel is installed since."""
    from packaging.version import InvalidVersion, Version

    from . import __version__

    theirs, ours = runtime_version(os.path.join(kernel_dir, RUNTIME_PACKAGE)), runtime_version(RUNTIME_SOURCE)
    if theirs == ours:
        return ok("runtime", f"this pyspark-kernel's ({ours})")
    try:
        newer = Version(str(metadata.get("generator_version"))) > Version(__version__)
    except InvalidVersion:
        newer = False
    if newer:
        return problem("runtime", f"made by a newer pyspark-kernel ({metadata['generator_version']}; its runtime {theirs}, this one's {ours})",
                       f"upgrade pyspark-kernel, or make it this version's: {upgrade}")
    return problem("runtime", f"made by an older pyspark-kernel (its runtime {theirs or 'none'}, this pyspark-kernel's {ours})", f"run {upgrade}")


def limits_check(conf: dict, env, kind: str) -> Check:
    """The hub's CPU_LIMIT and MEM_LIMIT in doctor's own environment (under JupyterHub, a terminal
    of the user's server has the server's, which kernels inherit), and what the kernel's copy of
    runtime.limits makes of them."""
    limits = sys.modules.get(f"{CHECKED_PACKAGE}.limits")  # loaded with the kernel's diagnostics, if the kernel has it
    declared = [f"{name} {env[name]}" for name in ("CPU_LIMIT", "MEM_LIMIT") if env.get(name)]
    if not declared:
        return ok("limits", "no CPU_LIMIT or MEM_LIMIT here: local[*] runs a task thread per core, the driver heap is Spark's default")
    if kind == "connect":
        return ok("limits", f"{', '.join(declared)}: the driver is the Spark Connect server's, outside them")
    if limits is None:
        return problem("limits", f"{', '.join(declared)} here, and this kernel was made before kernels fitted them", "regenerate the kernel with pyspark-kernel create --force")
    found = limits.read_limits(env)
    if found.ignored:
        return problem("limits", f"{', '.join(found.ignored)} is not a positive number: kernels ignore it", "the hub's spawner sets it: check its cpu_limit and mem_limit")
    fitted, notices = limits.fit(conf, conf, env)
    if notices:
        return problem("limits", notices[0], "lower spark.driver.memory (pyspark-kernel create --force ... --spark.driver.memory=SIZE), or ask for a larger memory limit")
    return ok("limits", limits.status_line(conf, conf, env).removeprefix("limits: "))


def cache_check(env) -> Check:
    """The per-user cache the kernel prunes at each start, and its limit."""
    try:
        cap = cache.limit(env)
    except cache.LimitError as error:
        return problem("cache", f"{cache.LIMIT_VARIABLE}: {error.problem}", f"{error.fix}; until then kernels do not prune the cache")
    entries = cache.read_entries(env)
    gone = sum(1 for entry in entries if entry.missing())
    stale = f"; {gone} for a Java, Spark or environment that is gone (the next kernel start removes them)" if gone else ""
    return ok("cache", f"{cache.cache_root(env)} holds {cache.size_text(cache.total(entries))} in {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
              f"limit {cache.size_text(cap)}{stale} (pyspark-kernel cache)")


def packages_checks(conf: dict, env) -> Iterator[Check]:
    """Whether the kernel's Maven packages resolve, by Spark's own resolver with the kernel's
    repositories and Ivy settings (runtime.dependencies): one line for each that does not."""
    try:
        seconds = dependencies.resolve(conf, env, env.get("SPARK_HOME", ""), runtime_java(env))
    except dependencies.DependencyError as error:
        for coordinate, why in error.unresolved:
            yield problem("packages", dependencies.hide_credentials(f"{coordinate}: {why} in {dependencies.where_from(conf)}"), error.fix)
        if not error.unresolved:
            yield problem("packages", error.problem, error.fix)
        return
    yield ok("packages", f"{conf[dependencies.PACKAGES]} resolve ({seconds:.1f} s)")


def runtime_java(env) -> str | None:
    from .runtime.diagnostics import find_java

    try:
        return find_java(env)
    except SparkStartError:  # the java check says so
        return None


def auth_check(conf: dict) -> Check:
    """Whether the kernel's driver needs a secret for its RPC and block transfers (runtime.auth)."""
    found = auth.describe(conf)
    return problem("rpc_auth", found.text, found.fix) if found.problem else ok("rpc_auth", found.text + (f" ({found.fix})" if found.fix else ""))


def server_environment_check(spec_env, environ, upgrade: str) -> Check:
    """Variables of the server's environment that would change Spark, and whether kernel.json
    overrides them (kernels made before it did so inherit them)."""
    given = [name for name in SPARK_VARIABLES if environ.get(name)]
    inherited = [name for name in given if name not in spec_env]
    if inherited:
        return problem("server_environment", f"the Jupyter server sets {', '.join(inherited)}, which this kernel inherits",
                       f"{upgrade}: kernels made now set them in kernel.json")
    detail = f"the Jupyter server sets {', '.join(given)}; kernel.json sets its own" if given else "no Spark variables from the Jupyter server"
    return ok("server_environment", detail)


def ui_check(kernel_dir: str, env, kind: str, upgrade: str) -> Check:
    """Whether the banner's Spark UI link will work for a browser that is not on this machine:
    through the Jupyter server, which needs jupyter-server-proxy and pyspark_kernel.serverext in
    the server's environment (taken to be this one: the CLI is installed beside the server)."""
    if kind == "connect":
        return ok("spark_ui", "a Spark Connect kernel has no driver UI of its own (the Connect server's is the server's)")
    try:
        base = ui.server_base(env)
    except SparkStartError as error:
        return problem("spark_ui", error.problem, "set it to the server's base URL")
    if base is None:
        return ok("spark_ui", f"linked straight at the driver (http://HOST:4040 and up), which only a browser that reaches this machine opens; "
                              f"under JupyterHub, or with {ui.SERVER_URL_VARIABLE} set, the link goes through the Jupyter server; "
                              f"with ui_access owner it answers only requests with the kernel's token (%spark status shows how)")
    if not os.path.isfile(os.path.join(kernel_dir, RUNTIME_PACKAGE, "ui.py")):
        return problem("spark_ui", "this kernel was made before its UI could be served through the Jupyter server", upgrade)
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return problem("spark_ui", f"jupyter-server-proxy is not installed in this environment ({sys.prefix}), so the link {base}{ui.PATH}/PORT/ will not answer",
                       "pip install 'pyspark-kernel-template[server]' into the Jupyter server's environment, then restart the server")
    if not serverext_enabled():
        return problem("spark_ui", f"the server extension pyspark_kernel.serverext is not enabled, so the link {base}{ui.PATH}/PORT/ will not answer",
                       "jupyter server extension enable pyspark_kernel.serverext, then restart the server")
    return ok("spark_ui", f"through the Jupyter server at {base}{ui.PATH}/PORT/jobs/ (jupyter-server-proxy and pyspark_kernel.serverext are enabled here)")


def serverext_enabled() -> bool:
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    return bool(ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions().get("pyspark_kernel.serverext"))


def cluster_checks(kind: str, master: str, conf: dict, env, runtime, create: str, upgrade: str) -> Iterator[Check]:
    from . import cluster

    if kind == "yarn":
        conf_dirs = [env[name] for name in ("HADOOP_CONF_DIR", "YARN_CONF_DIR") if env.get(name)]
        usable = [d for d in conf_dirs if os.path.isfile(os.path.join(d, "yarn-site.xml"))]
        if not usable:  # the live checks would all fail for this one cause
            yield problem("yarn", "no HADOOP_CONF_DIR or YARN_CONF_DIR with a yarn-site.xml",
                          f"copy the cluster's client configuration here and set HADOOP_CONF_DIR: {create} --env HADOOP_CONF_DIR=DIR (it keeps the kernel's other settings)")
            return
        yield ok("yarn", usable[0])
        yield from cluster.yarn_checks(conf, env, create)
    elif kind == "kubernetes":
        config = env.get("KUBECONFIG") or os.path.join(os.path.expanduser("~"), ".kube", "config")
        yield ok("kubernetes", config) if os.path.isfile(config) else problem("kubernetes", f"no kubeconfig at {config}", "set KUBECONFIG (in the kernel's env) to the cluster's kubeconfig")
    elif kind in ("standalone", "connect"):
        try:
            runtime.check_master_reachable(master)
            yield ok("master", f"{master} answers")
        except runtime.SparkStartError as error:
            yield problem("master", str(error), f"start the cluster, or point the kernel at another: {create} --spark_master URL (it keeps the kernel's other settings)")
    else:
        yield ok("master", master)
    if kind in ("yarn", "standalone"):
        yield driver_address_check(master, conf, env, create, upgrade)


def driver_address_check(master: str, conf: dict, env, create: str, upgrade: str) -> Check:
    """The address the kernel's own runtime (its copy of runtime.address) will advertise."""
    from . import cluster

    try:
        module = importlib.import_module(f"{CHECKED_PACKAGE}.address")
    except ImportError:
        return problem("driver_address", "this kernel was made before kernels chose the address the cluster reaches the driver at", upgrade)
    return cluster.driver_address_check(module, master, conf, env, create)


def doctor(name: str, kernels_dir: str | None = None, out=sys.stdout, environ=None) -> int:
    _, spec = find_kernel(name, kernels_dir, ours=True)
    problems = 0
    for check in checks(spec, spec.resource_dir, dict(os.environ if environ is None else environ), upgrade_command(name, kernels_dir), kernels_dir):
        problems += check.status == PROBLEM
        print(check.line(), file=out)
    print(f"{name}: {problems} problem(s)", file=out)
    return 1 if problems else 0
