"""The kernel starter of a shared-driver kernel: a process that has imported what a notebook's
kernel imports (ipykernel, IPython, Spark Connect's client, this runtime: about 0.7 s of Python and
90 MiB) once, and forks each later notebook's kernel from it. A later notebook then starts without
importing anything, and its kernel shares those modules' memory with the starter's other kernels
(copy on write; gc.freeze keeps the collector from touching their pages).

- kernel.json runs the kernel's pyspark_launch.py, which calls launch(): it hands the kernel over
  to the starter whose socket matches this launch (its fingerprint: the environment, the Python
  and its flags, and what is on sys.path as it is on disk now), or runs ipykernel itself when there
  is none, as `python -m ipykernel_launcher` would. A %pip install changes site-packages, so the
  next notebook is not forked from modules older than its environment.
- The hand-over passes the launch's arguments, environment, working directory and sys.path, and
  its standard streams (SCM_RIGHTS) over the user's own Unix socket (0700 directory; each side
  checks the other's uid). The launcher stays the process Jupyter knows: it forwards signals to the
  kernel's process group and exits with the kernel's status; the kernel kills its group when the
  launcher dies (a pidfd), as Jupyter's kill of the launcher's group would.
- A kernel started the slow way starts the starter once its session is up (ensure); it imports in
  a thread of the lowest priority, so a running cell keeps the cores, and it leaves with the shared
  driver. Its files: k-FINGERPRINT.sock/.lock/.log in the user's runtime directory.
Linux and Python 3.9+ (pidfd); elsewhere every kernel starts the slow way.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import array
import fcntl
import gc
import hashlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import time

from . import spare, userdir

LAUNCHER = "pyspark_launch.py"  # the kernel directory's launcher, which calls launch()
SERVE = "--serve-kernels"
GO = b"g"  # the launcher's word to its forked kernel, once it knows the kernel's pid
PER_LAUNCH = ("JPY_",)  # environment names that differ from one launch to the next
LAUNCH_TIMEOUT = 5  # seconds a starter may take to answer a hand-over
EXIT_WAIT = 5  # seconds the launcher waits for the kernel's status once its process has gone
RECHECK = 30  # seconds between the starter's checks that its environment is unchanged on disk
LAUNCHED = {}  # a kernel started by its launcher itself: its starter's socket, command and environment
SPARE = {}  # in a forked kernel: the warm session its starter made ahead (runtime.spare), until its start takes it
# What a shared-driver notebook imports before its first result; the rest loads as it is used.
MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "pyspark", "pyspark.sql", "pyspark.sql.connect.session",
           "pyspark.sql.connect.dataframe", "pyspark.sql.connect.functions")
RUNTIME_MODULES = ("log", "magics", "entrypoints", "notebook", "session", "shared", "connect", "connectguard", "warming", "progress", "sql")
CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open")


def fingerprint(environ: dict, kernel_dir: str) -> str:
    """What this launch's kernel would import, and from where: a starter whose modules were
    imported under another fingerprint must not fork it."""
    digest = hashlib.sha256()
    # A name set empty is unset: the runtime unsets those kernel.json empties (session.clear_unset).
    for name in sorted(environ):
        if environ[name] and not name.startswith(PER_LAUNCH):
            digest.update(f"{name}={environ[name]}\0".encode("utf-8", "surrogateescape"))
    digest.update(repr((sys.executable, sys.version, tuple(sys.flags), sorted(getattr(sys, "_xoptions", {}).items()))).encode())
    runtime = os.path.join(kernel_dir, "pyspark_kernel_runtime")
    entries = [kernel_dir, os.path.join(kernel_dir, "kernel.json"), runtime]
    entries += sorted(os.path.join(runtime, name) for name in os.listdir(runtime) if name.endswith(".py"))
    # sys.path[0] is the launcher's directory (the kernel's): the rest is where imports come from.
    for entry in entries + sys.path[1:]:
        try:
            found = os.stat(entry)
            digest.update(f"{entry}\0{found.st_ino}\0{found.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{entry}\0-\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:20]


def socket_path(environ: dict, kernel_dir: str) -> str | None:
    """Where this launch's starter listens, or None when no starter can serve it."""
    if not supported():
        return None
    try:
        path = os.path.join(userdir.private_dir(environ), f"k-{fingerprint(environ, kernel_dir)}.sock")
    except (OSError, userdir.NotPrivate):
        return None
    return path if userdir.socket_path_fits(path) else None


def peer_uid(connection: socket.socket) -> int:
    return CREDENTIALS.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDENTIALS.size))[1]


def interpreter_argv(script: str) -> list:
    """The command that ran this launch, up to its script: the starter runs with the same flags."""
    original = getattr(sys, "orig_argv", None)
    if original and script in original:
        return original[:original.index(script) + 1]
    import subprocess

    return [sys.executable, *subprocess._args_from_interpreter_flags(), script]  # noqa: SLF001 - what multiprocessing uses


# -- the launcher's side


def launch(kernel_dir: str, script: str) -> int:
    """Start this launch's kernel: forked by its starter, or here."""
    args = sys.argv[1:]
    if args[:1] == [SERVE]:
        return serve(kernel_dir, int(args[1]), args[2] if len(args) > 2 else None)
    path = socket_path(os.environ, kernel_dir)
    if path is not None:
        try:
            return hand_over(path, args)
        except (OSError, ValueError):
            pass  # no starter, or not one of this user's: the kernel starts here
        # ipykernel changes the environment as it starts (MPLBACKEND, TERM...): the starter gets it as launched.
        LAUNCHED.update(socket=path, argv=interpreter_argv(script), environ=dict(os.environ))
    from .driverstart import start_ahead

    start_ahead(os.environ)  # the JVM starts while ipykernel loads (driverstart)
    run_kernel(args, launcher_path())
    return 0


def launcher_path() -> list:
    """sys.path as `python -m ipykernel_launcher` run from here would have it: the working directory first."""
    return ([] if getattr(sys.flags, "safe_path", False) else [os.getcwd()]) + sys.path[1:]


def hand_over(path: str, args: list) -> int:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(LAUNCH_TIMEOUT)
    connection.connect(path)
    if peer_uid(connection) != os.getuid():
        raise ValueError(f"{path} is not served by this user")
    request = {"argv": args, "env": dict(os.environ), "cwd": os.getcwd(), "path": launcher_path(), "launcher": os.getpid()}
    connection.sendmsg([json.dumps(request).encode("utf-8", "surrogateescape") + b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    reader = connection.makefile("rb")
    answer = json.loads(reader.readline() or b"null")
    if not isinstance(answer, dict) or "pid" not in answer:
        raise ValueError(f"the starter refused: {answer}")
    kernel = answer["pid"]
    # The kernel waits for this word before it starts: a launch that gave up waiting (and starts
    # its kernel itself) never gets a second kernel on the same ports.
    connection.sendall(GO)
    # Jupyter signals the launcher's group: the kernel's group gets the same (an interrupt, a stop).
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, lambda number, _frame: forward(kernel, number))
    try:
        gone = os.pidfd_open(kernel)
        selector = selectors.DefaultSelector()
        selector.register(gone, selectors.EVENT_READ)
        while not selector.select():
            pass
    except ProcessLookupError:
        pass  # gone already
    connection.settimeout(EXIT_WAIT)
    try:
        status = json.loads(reader.readline() or b"null")
    except (OSError, ValueError):
        status = None
    code = status.get("exit", 1) if isinstance(status, dict) else 1
    if code < 0:  # killed by a signal: so is the launcher, for Jupyter to see the same
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def forward(kernel: int, number: int) -> None:
    try:
        os.killpg(kernel, number)
    except ProcessLookupError:
        pass


def run_kernel(args: list, path: list) -> None:
    """ipykernel, as `python -m ipykernel_launcher ARGS` would run it."""
    sys.path[:] = path
    sys.argv = [sys.argv[0], *args]
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


# -- the runtime's side


def ensure(keeper: int, record: str) -> None:
    """Start this kernel's starter if its launcher asked for one and none listens (a kernel started
    the slow way): it will serve the next notebooks while the shared driver ``keeper`` lives (its
    record file: ``record``)."""
    if not LAUNCHED:
        return
    lock = os.open(f"{LAUNCHED['socket'][:-len('.sock')]}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # a starter holds it: it listens, or soon will
    finally:
        os.close(lock)
    start(LAUNCHED["argv"], LAUNCHED["environ"], keeper, record)


def take_spare(record: dict, key: str) -> str | None:
    """In a forked kernel's start: the id of the warm session made ahead for it on the shared
    driver of ``record`` and ``key`` (None for another driver's, or none); once."""
    found = spare.choose(SPARE, record, key)
    SPARE.clear()
    return found


def start(argv: list, environ: dict, keeper: int, record: str) -> None:
    """Start a starter: ``argv`` is a launch's command up to its pyspark_launch.py, ``environ`` its
    environment (a launcher's, or the one jupyter_client would give the kernel). It finds its own
    socket, as the launches that it serves do; it makes spare sessions on the shared driver of
    ``keeper`` (its record file: ``record``)."""
    import subprocess

    environ = {name: value for name, value in environ.items() if not name.startswith(PER_LAUNCH)}  # no launch's own
    subprocess.Popen([*argv, SERVE, str(keeper), record], env=environ, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


# -- the starter's side


def serve(kernel_dir: str, keeper: int, record: str | None) -> int:
    """Run as the starter: import, then fork a kernel for each hand-over until the shared driver
    ``keeper`` (its record: ``record``) leaves or the environment changes on disk."""
    path = socket_path(os.environ, kernel_dir)
    if path is None:
        return 0
    base = path[:-len(".sock")]
    lock = os.open(f"{base}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another starter of the same fingerprint is there, or on its way
    output = os.open(f"{base}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd in (1, 2):
        os.dup2(output, fd)
    os.close(output)
    try:
        watched = os.pidfd_open(keeper)
    except ProcessLookupError:
        remove_lock_and_log(base)
        return 0
    # The imports run at the lowest priority (a thread's nice value; and the nice value of this
    # session's autogroup, where the scheduler shares the CPU between sessions first): a notebook's
    # running cell keeps the cores. The forks come from the main thread, and each kernel starts a
    # session of its own, at the usual priority.
    try:
        with open("/proc/self/autogroup", "w", encoding="ascii") as autogroup:
            autogroup.write("19")
    except OSError:
        pass  # no autogroups here: the thread's nice value is enough
    loader = threading.Thread(target=load, args=(kernel_dir,), name="starter-imports")
    loader.start()
    loader.join()
    if os.path.basename(path) != f"k-{fingerprint(os.environ, kernel_dir)}.sock":
        remove_lock_and_log(base)  # the environment changed on disk while the modules loaded
        return 0
    gc.collect()
    gc.freeze()  # the kernels' collectors leave these objects' pages shared
    return Starter(kernel_dir, path, watched, lock, keeper, record).run()


def remove_lock_and_log(base: str) -> None:
    """A leaving starter's files (it holds the lock): the log stays if it says something."""
    for path in (f"{base}.lock", f"{base}.log"):
        try:
            if path.endswith(".lock") or os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass


def load(kernel_dir: str) -> None:
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    import importlib

    paused = gc.isenabled()
    gc.disable()
    try:
        for name in MODULES:
            importlib.import_module(name)
        package = __name__.rpartition(".")[0]
        for name in RUNTIME_MODULES:
            importlib.import_module(f"{package}.{name}")
    finally:
        if paused:
            gc.enable()


class Starter:
    def __init__(self, kernel_dir: str, path: str, watched: int, lock: int, keeper: int, record: str | None) -> None:
        self.kernel_dir, self.path, self.watched, self.lock = kernel_dir, path, watched, lock
        self.keeper, self.record = keeper, record  # the shared driver, where spare sessions are made
        self.spare = None  # the warm session made ahead for the next kernel (runtime.spare): its JSON, and when it came
        self.making = None  # the helper making it: (pid, its pipe's end, its deadline)
        self.tried = 0.0  # when the last helper started (monotonic): a failed one is tried again RECHECK later
        self.keeper_gone = False  # its driver has gone, and the sessions on it
        self.owner = os.getpid()
        self.kernels = {}  # pid -> the launcher's connection, told the kernel's status when it ends
        self.wake_read, self.wake_write = os.pipe()
        for fd in (self.wake_read, self.wake_write):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()
        self.listener = None
        self.bound = None  # the socket's file, which the starter removes as it leaves (if still its own)

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        try:
            os.unlink(self.path)  # a socket left by a starter that was killed (the lock is ours)
        except FileNotFoundError:
            pass
        # Before the socket is there: whoever finds it finds the spare session on its way (the tests, make bench).
        self.make_spare()
        self.listener = listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        self.bound = os.stat(self.path)  # a socket's own fstat is not its file's: this is
        listener.listen(16)
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.selector.register(self.watched, selectors.EVENT_READ, "keeper")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        try:
            while True:
                for key, _ in self.selector.select(RECHECK):
                    if key.data == "keeper":
                        self.keeper_gone = True
                        return 0
                    if key.data == "wake":
                        try:
                            os.read(self.wake_read, 64)
                        except BlockingIOError:
                            pass
                        self.reap()
                    elif key.data == "spare":
                        self.receive_spare()
                    elif key.data == "listener":
                        connection, _ = listener.accept()
                        request = self.take(connection)
                        if request is not None:
                            return become_kernel(request)  # the forked kernel's way out of the loop
                if os.path.basename(self.path) != f"k-{fingerprint(os.environ, self.kernel_dir)}.sock":
                    return 0  # e.g. a %pip install: the next notebooks start the slow way, and start a starter anew
                self.check_spare()
        finally:
            if os.getpid() == self.owner:
                self.leave(listener)

    # -- the spare session (runtime.spare)

    def fork_helper(self, work) -> tuple[int, int]:
        """Fork a helper that runs ``work(out)`` (out: its pipe's end) and exits: (pid, the starter's end)."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read)
                self.close_in_child()
                code = work(write)
            finally:
                os._exit(code)  # never the starter's loop, nor its cleanup
        os.close(write)
        return pid, read

    def make_spare(self, release: str | None = None) -> None:
        """Start making a spare session, unless one is being made (releasing ``release``, a stale one)."""
        if self.record is None or self.making is not None:
            return
        pid, read = self.fork_helper(lambda out: spare.make(self.record, self.keeper, out, release))
        self.tried = time.monotonic()
        self.making = (pid, read, self.tried + spare.MAKE_TIMEOUT)
        self.selector.register(read, selectors.EVENT_READ, "spare")

    def receive_spare(self) -> None:
        pid, read, _ = self.making
        data = b""
        while True:  # a line, or nothing from a helper that failed: it has closed its end either way
            chunk = os.read(read, 4096)
            if not chunk:
                break
            data += chunk
        self.selector.unregister(read)
        os.close(read)
        self.making = None
        try:
            made = json.loads(data) if data else None
        except ValueError:
            made = None
        self.spare = (made, time.monotonic()) if isinstance(made, dict) else None

    def check_spare(self) -> None:
        """At each turn of the loop (at least every RECHECK): kill a helper that hangs; replace a spare
        older than spare.ROTATE; try again RECHECK after a helper that made none."""
        if self.making is not None and time.monotonic() > self.making[2]:
            try:
                os.kill(self.making[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif self.spare is not None and time.monotonic() - self.spare[1] > spare.ROTATE:
            stale, self.spare = self.spare[0]["session"], None
            self.make_spare(release=stale)
        elif self.spare is None and self.making is None and time.monotonic() - self.tried >= RECHECK:
            self.make_spare()  # the last try failed (a busy server): again, not at once

    def close_in_child(self) -> None:
        """In a forked kernel or helper: none of the starter's files (its socket, its other launchers',
        its lock: a next starter's, once this one has gone)."""
        signal.set_wakeup_fd(-1)
        for each in (self.listener, *self.kernels.values()):
            if each is not None:  # no listener yet: the first helper is forked before it
                each.close()
        self.selector.close()
        for fd in (self.wake_read, self.wake_write, self.watched, self.lock, *([self.making[1]] if self.making else [])):
            os.close(fd)

    def take(self, connection: socket.socket) -> dict | None:
        """Fork a kernel for one hand-over; the request in the kernel, None in the starter."""
        try:
            connection.settimeout(LAUNCH_TIMEOUT)
            if peer_uid(connection) != os.getuid():
                raise ValueError("another user")
            fds = array.array("i")
            data, ancillary, _flags, _address = connection.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            while not data.endswith(b"\n"):
                more = connection.recv(1 << 20)
                if not more:
                    raise ValueError("the request was cut short")
                data += more
            request = json.loads(data.decode("utf-8", "surrogateescape"))
            if len(fds) != 3:
                raise ValueError("the standard streams did not come")
        except (OSError, ValueError) as error:
            print(f"hand-over refused: {error}", file=sys.stderr, flush=True)
            connection.close()
            return None
        pid = os.fork()
        if pid == 0:
            self.close_in_child()
            request["fds"], request["connection"] = list(fds), connection
            request["spare"] = self.spare[0] if self.spare else None
            return request
        for fd in fds:
            os.close(fd)
        self.kernels[pid] = connection  # told the kernel's status when it ends
        self.spare = None  # that kernel's now
        self.make_spare()  # the next one's
        return None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            connection = self.kernels.pop(pid, None)
            if connection is not None:
                code = os.waitstatus_to_exitcode(status)
                try:
                    connection.sendall(json.dumps({"exit": code}).encode() + b"\n")
                except OSError:
                    pass
                connection.close()

    def leave(self, listener: socket.socket) -> None:
        """Remove the socket, and the lock and log unless a new starter has them (or the log says something)."""
        base = self.path[:-len(".sock")]
        try:
            if os.path.samestat(os.stat(self.path), self.bound):
                os.unlink(self.path)
                remove_lock_and_log(base)
        except OSError:
            pass
        listener.close()
        for connection in self.kernels.values():
            connection.close()  # each launcher keeps waiting for its kernel's own end
        if self.making is not None:
            try:
                os.kill(self.making[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.spare is not None and self.record is not None and not self.keeper_gone:  # a driver that stays (a %pip install) forgets it now
            session_id = self.spare[0]["session"]
            pid, read = self.fork_helper(lambda out: spare.release(self.record, self.keeper, session_id))
            os.close(read)
            wait_for(pid, spare.MAKE_TIMEOUT)


def wait_for(pid: int, timeout: float) -> None:
    """Wait for child ``pid`` to end, killing it after ``timeout`` seconds."""
    try:
        gone = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    selector = selectors.DefaultSelector()
    selector.register(gone, selectors.EVENT_READ)
    if not selector.select(timeout):
        os.kill(pid, signal.SIGKILL)
    selector.close()
    os.close(gone)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped already


def become_kernel(request: dict) -> int:
    """In the forked process: say its pid to the launcher and wait for its go, then take the
    launch's streams, environment, directory and path, and run ipykernel as the launch would have."""
    connection = request.pop("connection")
    try:
        connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        if connection.recv(len(GO)) != GO:
            os._exit(1)  # the launcher gave up, and starts its kernel itself
    except OSError:
        os._exit(1)
    connection.close()  # the starter keeps its own end, for the kernel's status
    SPARE.update(request.get("spare") or {})
    for number in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL if number != signal.SIGINT else signal.default_int_handler)
    os.setsid()  # a process group of its own: the launcher forwards signals to it, and kills it
    for target, fd in enumerate(request["fds"]):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # not the same random numbers in every forked kernel
    watch_launcher(request["launcher"])
    try:
        # ipykernel would watch its parent, the starter, and leave when it does (read from
        # JPY_PARENT_PID as it was imported): 1 is "no parent to watch". The launcher is watched instead.
        run_kernel([*request["argv"], "--IPKernelApp.parent_handle=1"], request["path"])
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def watch_launcher(pid: int) -> None:
    """Kill this kernel's group when the launcher dies: Jupyter's kill reaches the launcher only."""
    try:
        gone = os.pidfd_open(pid)
    except ProcessLookupError:
        os.killpg(0, signal.SIGKILL)
        return

    def wait():
        selector = selectors.DefaultSelector()
        selector.register(gone, selectors.EVENT_READ)
        while not selector.select():
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=wait, name="launcher-watch", daemon=True).start()
