"""Runtime of a pyspark-kernel kernel: starts Spark beside the kernel and looks after it.

Copied into each kernel directory as the package `pyspark_kernel_runtime` and loaded by the
kernel's pyspark_startup.py, in the kernel's own Python, which needs nothing but ipykernel and
pyspark: these modules import only the standard library until Spark starts. One job a module:

- options: the options table, kernel.json's options and Spark settings, and secrets; masters: master URLs;
- diagnostics: start-up checks and failure messages (pyspark-kernel doctor uses them too); log: kernel.log;
- jvm: the driver JVM's launch settings, scratch directory, watchdog.sh and archive; cds: the
  archive's health (mapped only whole, set aside when the JVM crashes on it or refuses it);
- limits: the hub's CPU_LIMIT and MEM_LIMIT, which a local master and the driver's heap fit;
- guard: every Py4J call: interrupts held to the call's end, a dead JVM explained; converters: numpy's;
- connectguard: every Spark Connect gRPC call: interrupts held to the call's end (one inside gRPC can hang the channel);
- session: the session's life: start, stop, death, restart; state: its states; attempt: one start;
- drivers: how the driver runs (choice picks one), one kind a module: dedicated (a JVM of the kernel's own), connect
  (an sc:// server), shared (the user's shared local server; driver_server runs it; prestart starts it for the Jupyter server;
  starter forks the later notebooks' kernels, spare makes each one's session ahead; userdir: the user's 0700 directory for their sockets);
- workdir: relative paths against each notebook's own directory on the shared driver, and a warehouse path Hadoop reads right;
- warming: when the warm-up runs, around the cells; warmup: its jobs;
- notebook: `spark` and `sc`, cells, waiting, interrupt; entrypoints: the notebook's own builders;
  frames: a DataFrame as a cell's value;
- progress: a cell's live job progress and its summary; callsite: jobs named after the cell and line (or the
  %%sql query) that ran them; idle: idle_timeout; magics: %spark; sql: %%sql;
- ui: the Spark UI's link, through the Jupyter server where the kernel knows its base URL;
- auth: which drivers' RPC and block transfers need a secret (spark.authenticate), and what status and doctor say;
- cache: the per-user cache of archives and packed environments, pruned at each start;
- envpack: packing an environment for cluster executors; pipwatch: what %pip changed since they got it;
  shipping: what a cluster's executors get, and what a %pip cell says; artifacts: %pip's packages for Spark Connect.
"""

RUNTIME = None  # this kernel's SparkRuntime, for inspection
NOTEBOOK = None


def install(namespace: dict) -> None:
    global RUNTIME, NOTEBOOK
    from . import log
    from . import magics
    from .entrypoints import EntryPoints
    from .notebook import Notebook
    from .session import SparkRuntime

    shell = namespace["get_ipython"]()
    RUNTIME = SparkRuntime()
    log.setup(RUNTIME.scratch, RUNTIME.environ)  # kernel.log beside the JVM's driver.log (runtime.log)
    RUNTIME.begin()  # the watchdog first: no Spark without it, whoever starts Spark
    NOTEBOOK = Notebook(RUNTIME, namespace, shell)
    EntryPoints(RUNTIME, NOTEBOOK).install()
    magics.register(shell, NOTEBOOK)
    NOTEBOOK.begin()
    return RUNTIME
