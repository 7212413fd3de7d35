"""Startup shim of a pyspark-kernel kernel: defines `spark` and `sc` for the notebook.

IPython runs this file in the notebook's namespace before the first cell (kernel.json passes it as
IPKernelApp.exec_files). It loads pyspark_kernel_runtime.py from the kernel's directory, which
starts Spark and looks after it, and leaves only `spark` and `sc` behind.
"""


def _pyspark_kernel_start(namespace):
    import importlib.util
    import os
    import sys

    # IPython sets __file__ while it runs this file.
    path = os.path.join(os.path.dirname(os.path.abspath(namespace["__file__"])), "pyspark_kernel_runtime.py")
    spec = importlib.util.spec_from_file_location("pyspark_kernel_runtime", path)
    runtime = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runtime
    spec.loader.exec_module(runtime)
    runtime.install(namespace)


_pyspark_kernel_start(globals())
del _pyspark_kernel_start
