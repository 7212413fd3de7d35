"""Startup shim of a pyspark-kernel kernel: creates `spark` and `sc` for the notebook.

IPython runs this file in the notebook's namespace before the first cell (kernel.json passes it as
IPKernelApp.exec_files). Everything happens inside one function, so only `spark` and `sc` are left
behind. The Spark settings come from PYSPARK_KERNEL_SPARK_CONF in kernel.json's env, written by the
generator as JSON. An error here would only reach the Jupyter server's log, so a failure is kept
and shown in the notebook instead: on the first cell, and whenever `spark` or `sc` is used.
"""


def _pyspark_kernel_start(namespace):
    import atexit
    import json
    import os
    import sys

    class SparkUnavailable:
        """Stands in for `spark` and `sc` when the session could not start."""

        def __init__(self, message):
            self._message = message

        def __getattr__(self, name):
            raise RuntimeError(self._message)

        def __repr__(self):
            return self._message

    def start(conf):
        from pyspark.sql import SparkSession

        master = conf.pop("spark.master", None)
        builder = SparkSession.builder
        # A Spark Connect master is a remote session: no local JVM, no SparkContext.
        builder = builder.remote(master) if master and master.startswith("sc://") else builder.master(master)
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        # Stop Spark when the kernel exits, so its JVM does not outlive it.
        atexit.register(session.stop)
        return session

    def describe(spark):
        master = spark.conf.get("spark.master", None) or os.environ.get("SPARK_REMOTE", "")
        try:
            sc = spark.sparkContext
        except Exception:
            return "Spark %s | master %s | Spark Connect session" % (spark.version, master)
        return "Spark %s | master %s | app %s | UI %s" % (spark.version, sc.master, sc.applicationId, sc.uiWebUrl or "off")

    try:
        spark = start(json.loads(os.environ.get("PYSPARK_KERNEL_SPARK_CONF", "{}")))
    except Exception as error:
        message = "Spark did not start: %s: %s" % (type(error).__name__, error)
        namespace["spark"] = namespace["sc"] = SparkUnavailable(message)
        banner = message
    else:
        namespace["spark"] = spark
        try:
            namespace["sc"] = spark.sparkContext
        except Exception as error:
            namespace["sc"] = SparkUnavailable("sc is not available in a Spark Connect session: %s" % error)
        banner = describe(spark)

    shell = namespace["get_ipython"]()

    def show_banner(*_):
        shell.events.unregister("pre_run_cell", show_banner)
        print(banner, file=sys.stdout, flush=True)

    shell.events.register("pre_run_cell", show_banner)


_pyspark_kernel_start(globals())
del _pyspark_kernel_start
