"""Finding, listing and removing kernels (`pyspark-kernel list`, `remove`; `smoke` and `doctor`
find theirs here too), where Jupyter finds kernels."""

import os
import sys

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from .errors import InputError


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


def describe(name: str, resource_dir: str, spec: dict) -> list:
    made = spec["metadata"]["pyspark_kernel"]
    python_ok = os.path.exists(spec["argv"][0])
    spark_ok = made["spark_home"] == "" or os.path.isfile(os.path.join(made["spark_home"], "bin", "spark-submit"))
    state = "ok" if python_ok and spark_ok else ", ".join(
        what for what, ok in (("Python missing", python_ok), ("SPARK_HOME missing", spark_ok)) if not ok)
    return [name, spec["display_name"], made["master"], made["spark_version"], made["python_version"], state, resource_dir]


def list_kernels(kernels_dir: str | None = None, out=sys.stdout) -> int:
    rows = [describe(name, *entry) for name, entry in our_kernels(kernels_dir).items()]
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
