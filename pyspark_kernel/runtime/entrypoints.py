"""Every way a notebook gets a session gets the kernel's.

Whoever creates the first SparkContext in a process decides its configuration, and most
notebooks begin with their own `SparkSession.builder...getOrCreate()`. So PySpark's entry points
are wrapped as PySpark is imported (an import hook: the notebook may import it before the
kernel's background start does):

- `SparkSession.builder...getOrCreate()`, `SparkContext(...)` and `SparkContext.getOrCreate()`
  return the kernel's session or context, waiting for it while it starts; the builder's runtime
  settings are applied and the others named (Notebook.user_session);
- `SparkSession.getActiveSession()` returns the kernel's session when PySpark finds none for the
  calling thread (the JVM keeps the active session per thread, and the kernel's was made in its
  start thread);
- `stop()` on the kernel's session or context tells the runtime, so that the next use of Spark
  starts a new session;
- PySpark's class attributes that hold the active context, gateway and session (read directly in
  over a hundred places: a udf's DDL return type, `StructType.fromDDL`, functions, ML, streaming)
  are the kernel's, waited for, when a cell reads them while the kernel's start runs, or before a
  lazy kernel's first start (Awaited). A Spark Connect kernel is remote from its first cell.

The kernel's own start passes through untouched (SparkRuntime.creating), and so does a builder
that asks for a Spark Connect server with `.remote(...)` on a kernel that is not one.
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
import threading
from typing import Any

from .state import State

CONTEXT_MODULES = ("pyspark.core.context", "pyspark.context")  # Spark 4, Spark 3
SESSION_MODULE = "pyspark.sql.session"
CONNECT_SESSION_MODULE = "pyspark.sql.connect.session"
CONTEXT_ARGUMENTS = ("master", "appName", "sparkHome", "pyFiles", "environment", "batchSize", "serializer", "conf")
# The class attributes PySpark reads for its active context and session: None until a start sets them.
CONTEXT_ATTRIBUTES = ("_active_spark_context", "_gateway", "_jvm")
SESSION_ATTRIBUTES = ("_instantiatedSession", "_activeSession")
CONNECT_SESSION_ATTRIBUTES = ("_default_session",)


def context_options(args: tuple, kwargs: dict) -> dict:
    """The settings a SparkContext(...) call asks for, as Spark keys."""
    given = {**dict(zip(CONTEXT_ARGUMENTS, args)), **kwargs}
    options = {}
    conf = given.get("conf")
    if conf is not None:
        options.update(dict(conf.getAll()))
    options["spark.master"] = given.get("master") or options.get("spark.master")
    options["spark.app.name"] = given.get("appName") or options.get("spark.app.name")
    return options


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs ``patches[name](module)`` right after the module ``name`` is executed."""

    def __init__(self, patches):
        self.patches = patches
        self.finding = threading.local()

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.patches or getattr(self.finding, "active", False):
            return None
        self.finding.active = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = PatchingLoader(spec.loader, self.patches[name])
                    return spec
            return None
        finally:
            self.finding.active = False


class PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch):
        self.loader = loader
        self.patch = patch

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name):  # get_source, get_code, ... as the real loader has them
        return getattr(self.loader, name)


class Awaited:
    """A class attribute of PySpark's that is None until a start sets it (the start's assignment
    replaces this). Read by a cell on the notebook's thread, it is the kernel's: the cell waits for
    the start, or starts Spark, as the builder does. Read by the start itself, another thread, or
    outside a cell, it is None, as PySpark left it."""

    def __init__(self, entry: EntryPoints, owner: type, name: str) -> None:
        self.entry, self.owner, self.name = entry, owner, name

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        entry = self.entry
        if (entry.runtime.creating() or threading.current_thread() is not threading.main_thread() or not entry.notebook.running
                or getattr(entry.stopping, "active", False) or getattr(entry.passing, "active", False)):
            return None
        entry.notebook.session()
        value = self.owner.__dict__.get(self.name)
        return None if value is self else value

    @classmethod
    def install(cls, entry: EntryPoints, owner: type, names: tuple) -> None:
        """For each of ``names`` that ``owner`` holds as None (no start yet, or the last ended)."""
        for name in names:
            if name in owner.__dict__ and owner.__dict__[name] is None:
                setattr(owner, name, cls(entry, owner, name))


class EntryPoints:
    def __init__(self, runtime, notebook) -> None:
        self.runtime = runtime
        self.notebook = notebook
        self.stopping = threading.local()  # inside SparkSession.stop(), which stops the context too
        self.passing = threading.local()  # inside a builder the kernel does not serve (.remote())

    def install(self) -> None:
        patches = {name: self.patch_context_module for name in CONTEXT_MODULES}
        patches[SESSION_MODULE] = self.patch_session_module
        patches[CONNECT_SESSION_MODULE] = self.patch_connect_session_module
        if self.runtime.driver.remote:
            # As SparkSession.builder.remote() sets it, before a cell can ask: PySpark's functions
            # and types then take the Spark Connect path from the first cell, not the classic one.
            os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
        for name, patch in patches.items():
            if name in sys.modules:
                patch(sys.modules[name])
        sys.meta_path.insert(0, PatchOnImport(patches))
        self.runtime.listeners.append(self.session_ended)

    def session_ended(self, runtime: Any, ended: tuple) -> None:
        """The next use of Spark starts a new session: through PySpark's class attributes too."""
        for name, patch in self.awaiting.items():
            module = sys.modules.get(name)
            if module is not None:
                patch(module)

    @property
    def awaiting(self) -> dict:
        """The modules whose classes hold the kernel's active context or session, and their patch."""
        if self.runtime.driver.remote:
            return {CONNECT_SESSION_MODULE: lambda module: Awaited.install(self, module.SparkSession, CONNECT_SESSION_ATTRIBUTES)}
        awaiting = {name: lambda module: Awaited.install(self, module.SparkContext, CONTEXT_ATTRIBUTES) for name in CONTEXT_MODULES}
        awaiting[SESSION_MODULE] = lambda module: Awaited.install(self, module.SparkSession, SESSION_ATTRIBUTES)
        return awaiting

    # -- SparkContext

    def patch_context_module(self, module) -> None:
        context_class = module.__dict__.get("SparkContext")
        if context_class is None or context_class.__module__ != module.__name__ or "pyspark_kernel_patched" in context_class.__dict__:
            return  # Spark 4's pyspark.context re-exports pyspark.core.context's
        entry = self
        original_init = context_class.__init__
        original_stop = context_class.stop

        def __new__(cls, *args, **kwargs):
            if cls is not context_class or entry.runtime.creating():
                return object.__new__(cls)
            return entry.notebook.user_context(context_options(args, kwargs))

        @functools.wraps(original_init)
        def __init__(self, *args, **kwargs):
            if getattr(self, "_jsc", None) is not None:
                return  # the kernel's context, given back by __new__
            original_init(self, *args, **kwargs)

        def getOrCreate(cls, conf=None):
            if entry.runtime.creating():
                return original_get_or_create.__func__(cls, conf)
            return entry.notebook.user_context(dict(conf.getAll()) if conf is not None else {})

        @functools.wraps(original_stop)
        def stop(self):
            original_stop(self)
            if not getattr(entry.stopping, "active", False):
                entry.runtime.user_stopped(self)

        original_get_or_create = context_class.__dict__["getOrCreate"]
        context_class.__new__ = __new__
        context_class.__init__ = __init__
        context_class.getOrCreate = classmethod(functools.wraps(original_get_or_create.__func__)(getOrCreate))
        context_class.stop = stop
        context_class.pyspark_kernel_patched = True
        if not self.runtime.driver.remote:
            Awaited.install(self, context_class, CONTEXT_ATTRIBUTES)

    # -- SparkSession

    def patch_session_module(self, module) -> None:
        session_class = module.SparkSession
        if "pyspark_kernel_patched" in session_class.__dict__:
            return
        entry = self
        builder_class = session_class.Builder
        original_get_or_create = builder_class.getOrCreate
        original_active = session_class.__dict__["getActiveSession"]
        original_stop = session_class.stop

        @functools.wraps(original_get_or_create)
        def getOrCreate(builder):
            options = dict(getattr(builder, "_options", {}))
            if entry.runtime.creating():
                return original_get_or_create(builder)
            if not entry.runtime.driver.serves(options):
                entry.passing.active = True  # PySpark's own builder decides, from what it finds
                try:
                    return original_get_or_create(builder)
                finally:
                    entry.passing.active = False
            return entry.notebook.user_session(options)

        def getActiveSession(cls):
            found = original_active.__func__(cls)
            if found is not None or entry.runtime.creating() or threading.current_thread() is not threading.main_thread():
                return found
            if entry.runtime.state == State.READY:
                return entry.runtime.session  # PySpark asks for it in many operations: no detour
            return entry.notebook.session()

        @functools.wraps(original_stop)
        def stop(self):
            entry.stopping.active = True
            try:
                original_stop(self)
            finally:
                entry.stopping.active = False
            entry.runtime.user_stopped(getattr(self, "_sc", None))  # any session of the kernel's context: newSession() too

        builder_class.getOrCreate = getOrCreate
        session_class.getActiveSession = classmethod(functools.wraps(original_active.__func__)(getActiveSession))
        session_class.stop = stop
        session_class.pyspark_kernel_patched = True
        if not self.runtime.driver.remote:
            Awaited.install(self, session_class, SESSION_ATTRIBUTES)

    def patch_connect_session_module(self, module) -> None:
        session_class = module.__dict__.get("SparkSession")
        if session_class is None or "pyspark_kernel_patched" in session_class.__dict__:
            return
        entry = self
        original_stop = session_class.stop

        @functools.wraps(original_stop)
        def stop(self):
            original_stop(self)
            entry.runtime.user_stopped(self)

        session_class.stop = stop
        if entry.runtime.driver.context_error() is not None:  # the driver's own error, not the Connect client's
            def sparkContext(self):
                raise entry.runtime.driver.context_error()

            session_class.sparkContext = property(sparkContext)
        session_class.pyspark_kernel_patched = True
        if self.runtime.driver.remote:
            Awaited.install(self, session_class, CONNECT_SESSION_ATTRIBUTES)
