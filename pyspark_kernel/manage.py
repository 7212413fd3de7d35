"""Finding, listing and removing kernels (`pyspark-kernel list`, `remove`; `smoke` and `doctor`
find theirs here too), where Jupyter finds kernels."""

import os
import sys

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from .drift import spark_version_now, upgrade_command
from .errors import InputError
from .hooks import RUNTIME_PACKAGE


def manager(kernels_dir: str | None = None) -> KernelSpecManager:
    return KernelSpecManager(kernel_dirs=[kernels_dir]) if kernels_dir else KernelSpecManager()


def find_kernel(name: str, kernels_dir: str | None = None, ours: bool = False):
    """(the KernelSpecManager, the kernel's spec); ``ours``: only a kernel pyspark-kernel made."""
    found = manager(kernels_dir)
    try:
        spec = found.get_kernel_spec(name)
    except NoSuchKernel:
        where = kernels_dir or "Jupyter's kernel paths"
        raise InputError("kernel", f"no kernel named {name!r} in {where}", "see `jupyter kernelspec list`, or pass -d with the kernels directory") from None
    if ours and "pyspark_kernel" not in (spec.metadata or {}):
        raise InputError("kernel", f"{name} was not made by pyspark-kernel ({spec.resource_dir})", "see pyspark-kernel list for the kernels it made")
    return found, spec


def our_kernels(kernels_dir: str | None = None) -> dict:
    """{name: (resource_dir, spec dict)} of the kernels pyspark-kernel generated."""
    found = manager(kernels_dir).get_all_specs()
    return {name: (entry["resource_dir"], entry["spec"]) for name, entry in sorted(found.items())
            if "pyspark_kernel" in (entry["spec"].get("metadata") or {})}


def describe(name: str, resource_dir: str, spec: dict, kernels_dir: str | None = None) -> list:
    """One row: the Spark installed now (marked when it is not the one the kernel was made with)."""
    from .drift import runtime_version
    from .kernelspec import RUNTIME_SOURCE, kernel_environment

    made = spec["metadata"]["pyspark_kernel"]
    env = kernel_environment(spec.get("env") or {}, os.environ)
    python_ok = os.path.exists(spec["argv"][0])
    spark_now = spark_version_now(made, env)
    spark = spark_now if spark_now == made["spark_version"] else f"{spark_now or 'none'} (made with {made['spark_version']})"
    spark_ok = made["spark_layout"] == "client" or os.path.isfile(os.path.join(env.get("SPARK_HOME") or made["spark_home"], "bin", "spark-submit"))
    current = runtime_version(os.path.join(resource_dir, RUNTIME_PACKAGE)) == runtime_version(RUNTIME_SOURCE)
    problems = [what for what, fine in (("Python missing", python_ok), ("pyspark missing" if made["spark_layout"] == "pip" else "SPARK_HOME missing", spark_ok),
                                        (f"older runtime: {upgrade_command(name, kernels_dir)}", current)) if not fine]
    return [name, spec["display_name"], made["master"], spark, made["python_version"], ", ".join(problems) or "ok", resource_dir]


def list_kernels(kernels_dir: str | None = None, out=sys.stdout) -> int:
    rows = [describe(name, *entry, kernels_dir) for name, entry in our_kernels(kernels_dir).items()]
    header = ["NAME", "DISPLAY NAME", "MASTER", "SPARK", "PYTHON", "STATE", "DIRECTORY"]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip(), file=out)
    return 0


def remove_kernel(name: str, kernels_dir: str | None = None, out=sys.stdout) -> int:
    specs, spec = find_kernel(name, kernels_dir)
    if "pyspark_kernel" not in (spec.metadata or {}):
        raise InputError("kernel", f"{name} was not made by pyspark-kernel", f"remove it with jupyter kernelspec remove {name}")
    try:
        specs.remove_kernel_spec(name)
    except PermissionError as error:
        raise InputError("kernel", f"cannot remove {spec.resource_dir}: {error.strerror}", "run as the kernel's owner, or ask who installed it") from None
    print(f"Removed kernel {name} from {spec.resource_dir}", file=out)
    return 0
