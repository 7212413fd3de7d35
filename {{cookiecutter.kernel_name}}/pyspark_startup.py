"""Startup shim of a pyspark-kernel kernel: defines `spark` and `sc` for the notebook.

IPython runs this file in the notebook's namespace before the first cell (kernel.json passes it as
IPKernelApp.exec_files). It loads the package pyspark_kernel_runtime from the kernel's directory,
which starts Spark and looks after it. If the runtime itself cannot start (an unwritable TMPDIR, no
/bin/sh, a broken kernel.json), the first cell says why and `spark` and `sc` raise that error:
IPython would only log an error here to the server's console.
"""


def _pyspark_kernel_start(namespace):
    import importlib.util
    import os
    import sys

    # IPython sets __file__ while it runs this file.
    here = os.path.dirname(os.path.abspath(namespace["__file__"]))
    package = os.path.join(here, "pyspark_kernel_runtime")
    # IPython puts this file's directory first on sys.path while it runs the file and takes it off
    # after: a change to the list that the runtime's start thread may be walking for an import,
    # which then skips an entry ("No module named 'pyspark'"). Off now, before the thread exists.
    if sys.path and os.path.realpath(sys.path[0] or os.curdir) == os.path.realpath(here):
        del sys.path[0]
    try:
        # Loaded already when the kernel's launcher (pyspark_launch.py) or its starter has run it.
        runtime = sys.modules.get("pyspark_kernel_runtime")
        if runtime is None or os.path.dirname(getattr(runtime, "__file__", "")) != package:
            spec = importlib.util.spec_from_file_location("pyspark_kernel_runtime", os.path.join(package, "__init__.py"), submodule_search_locations=[package])
            runtime = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = runtime
            spec.loader.exec_module(runtime)
        runtime.install(namespace)
    except Exception as error:  # noqa: BLE001 - whatever it is, the notebook must be told
        # The runtime's own setup errors say it all; they carry a marker, as the runtime's classes
        # may not have loaded (and a class found by its name could be anyone's).
        detail = str(error) if getattr(error, "setup_error", False) is True else f"{type(error).__name__}: {error}"
        _pyspark_kernel_setup_failed(namespace, f"The kernel's Spark runtime could not start: {detail}")  # noqa: F821 - defined below, deleted after the call


def _pyspark_kernel_setup_failed(namespace, message):
    class SparkSetupError(RuntimeError):
        """The kernel's runtime could not start; Spark cannot either."""

    class Unavailable:
        def __getattr__(self, attribute):
            raise SparkSetupError(message)

        def __repr__(self):
            raise SparkSetupError(message)

    namespace["spark"] = Unavailable()
    namespace["sc"] = Unavailable()
    shell = namespace["get_ipython"]()

    def first_cell(*_):
        import sys

        shell.events.unregister("pre_run_cell", first_cell)
        print(f"ERROR: {message}", file=sys.stderr, flush=True)

    shell.events.register("pre_run_cell", first_cell)


_pyspark_kernel_start(globals())
del _pyspark_kernel_start, _pyspark_kernel_setup_failed
