"""Launcher of a pyspark-kernel kernel with a shared driver (kernel.json runs it): the kernel is
forked by the kernel's starter when one has the same environment loaded, or started here as
`python -m ipykernel_launcher` would start it (pyspark_kernel_runtime.starter says how)."""


def _load_runtime():
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.join(here, "pyspark_kernel_runtime")
    spec = importlib.util.spec_from_file_location("pyspark_kernel_runtime", os.path.join(package, "__init__.py"), submodule_search_locations=[package])
    runtime = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runtime
    spec.loader.exec_module(runtime)
    return here


def main():
    here = _load_runtime()
    from pyspark_kernel_runtime import starter

    return starter.launch(here, __file__)


if __name__ == "__main__":
    raise SystemExit(main())
