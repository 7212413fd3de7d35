"""The shared driver's own process (see driver): a PySpark driver whose JVM serves Spark Connect
on loopback, and the keeper of the notebooks' leases.

Started by the first notebook, in a session of its own, with its settings on standard input. It
prints "ready" once the Connect server answers and its record is written, then:
- holds one connection per attached notebook on its Unix socket, and answers status requests;
- leaves driver_linger seconds after the last notebook has gone (or, once ready, when none has
  come), removing its record and socket first;
- when its JVM dies, removes them too and closes every lease, so each notebook knows at once.
Its JVM reads Py4J's pipe from this process, and exits if this process dies however it dies.
"""

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from .driver import SERVER_NAME, Locked, Paths, remove_files, write_record

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
LINGER_RETRY = 0.5  # seconds before another try at leaving, when a notebook holds the lock
STOP_GRACE = 20  # seconds Spark may take to stop before its JVM is killed


def server_settings(conf, scratch):
    """What the JVM is launched with: the kernel's settings, then what makes it a Connect server on
    loopback only (gRPC, driver RPC and block manager; SPARK_LOCAL_IP does the UI)."""
    settings = dict(conf)
    settings.update({
        "spark.app.name": SERVER_NAME,
        "spark.plugins": ",".join(filter(None, [conf.get("spark.plugins"), CONNECT_PLUGIN])),
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": "0",  # a free one; the record says which
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.local.dir": scratch,
    })
    options = settings.get("spark.driver.defaultJavaOptions", "")
    settings["spark.driver.defaultJavaOptions"] = f"{options} -Djava.io.tmpdir={scratch}".strip()
    return settings


class Server:
    def __init__(self, config):
        self.config = config
        self.paths = Paths(config["directory"], config["key"])
        self.selector = selectors.DefaultSelector()
        self.leases = {}  # connection -> the notebook's pid
        self.empty_since = None
        self.jvm_gone = threading.Event()
        self.wake_read, self.wake_write = os.pipe()
        self.context = self.session = None
        self.started = time.time()
        self.left = False  # it left by itself, after its linger: nothing of it stays

    def start_spark(self):
        os.makedirs(self.paths.scratch, mode=0o700, exist_ok=True)
        # The JVM inherits the token from here: the Connect server reads it from its environment.
        os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = self.config["token"]
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
        from pyspark import SparkConf, SparkContext
        from pyspark.java_gateway import launch_gateway
        from pyspark.sql import SparkSession

        settings = server_settings(self.config["conf"], self.paths.scratch)
        conf = SparkConf(loadDefaults=False)
        conf.setAll(settings.items())
        self.gateway = launch_gateway(conf=conf, popen_kwargs={"stdout": sys.stderr, "stderr": sys.stderr, "stdin": subprocess.PIPE})
        conf.setAll(self.config.get("secrets", {}).items())  # through Py4J, not the command line
        self.context = SparkContext(conf=conf, gateway=self.gateway)
        self.context.setLogLevel(self.config.get("log_level", "WARN"))
        self.session = SparkSession(self.context)
        # The Scala object's own method: the class has no static forwarder for it.
        jvm = self.context._jvm
        service = jvm.java.lang.Class.forName("org.apache.spark.sql.connect.service.SparkConnectService$").getField("MODULE$").get(None)
        port = service.localPort()
        if not port:
            raise RuntimeError("the Spark Connect service did not start")
        return port

    def watch_jvm(self):
        def wait():
            self.gateway.proc.wait()
            self.jvm_gone.set()
            os.write(self.wake_write, b"x")

        threading.Thread(target=wait, daemon=True).start()

    def serve(self, port):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.paths.socket)
        finally:
            os.umask(old)
        listener.listen(64)
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        write_record(self.paths, {
            "key": self.paths.key, "spark_version": self.context.version, "port": port, "token": self.config["token"],
            "pid": os.getpid(), "jvm": self.gateway.proc.pid, "started": self.started, "ui": self.context.uiWebUrl,
            "log": self.paths.log, "master": self.context.master,
        })
        self.empty_since = time.monotonic()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        linger = float(self.config.get("linger", 30))
        while not self.jvm_gone.is_set():
            timeout = None
            if not self.leases:
                timeout = max(0.0, self.empty_since + linger - time.monotonic())
            events = self.selector.select(timeout)
            for key, _ in events:
                if key.data == "listener":
                    connection, _ = listener.accept()
                    self.selector.register(connection, selectors.EVENT_READ, bytearray())
                elif key.data == "wake":
                    os.read(self.wake_read, 16)
                else:
                    self.read(key.fileobj, key.data)
            if not self.leases and not self.jvm_gone.is_set() and time.monotonic() >= self.empty_since + linger:
                if self.leave():
                    return 0
        self.log(f"the JVM has exited (code {self.gateway.proc.returncode}): closing {len(self.leases)} notebooks' leases")
        remove_files(self.paths)
        for connection in list(self.leases):
            connection.close()
        return 1

    def read(self, connection, buffer):
        try:
            chunk = connection.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(connection)
            return
        if connection in self.leases:
            return  # a notebook says nothing once attached
        buffer += chunk
        if b"\n" not in buffer:
            if len(buffer) > 65536:
                self.drop(connection)
            return
        try:
            request = json.loads(bytes(buffer).split(b"\n", 1)[0])
        except ValueError:
            self.drop(connection)
            return
        if isinstance(request, dict) and isinstance(request.get("attach"), int):
            self.leases[connection] = request["attach"]
            self.reply(connection, {"attached": True, "notebooks": len(self.leases)})
        elif isinstance(request, dict) and request.get("status"):
            self.reply(connection, self.status())
            self.drop(connection)
        else:
            self.drop(connection)

    def reply(self, connection, answer):
        try:
            connection.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            self.drop(connection)

    def drop(self, connection):
        try:
            self.selector.unregister(connection)
        except (KeyError, ValueError):
            pass
        if self.leases.pop(connection, None) is not None and not self.leases:
            self.empty_since = time.monotonic()
        connection.close()

    def status(self):
        return {"pid": os.getpid(), "jvm": self.gateway.proc.pid, "started": self.started, "notebooks": sorted(self.leases.values()),
                "ui": self.context.uiWebUrl, "master": self.context.master, "version": self.context.version}

    def leave(self):
        """Leave, unless a notebook is attaching right now (it holds the lock): then try again soon."""
        try:
            with Locked(self.paths, timeout=0) as lock:
                if self.leases:
                    return False
                remove_files(self.paths)
                lock.remove()
        except Exception:
            self.empty_since = time.monotonic() - float(self.config.get("linger", 30)) + LINGER_RETRY
            return False
        self.log(f"no notebook for {self.config.get('linger', 30)} s: stopping")
        self.stop_spark()
        self.left = True  # cleanly: its log goes too
        return True

    def stop_spark(self):
        timer = threading.Timer(STOP_GRACE, lambda: self.gateway.proc.kill())
        timer.daemon = True
        timer.start()
        try:
            self.session.stop()
        except Exception:
            self.gateway.proc.kill()
        finally:
            timer.cancel()

    def log(self, text):
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pyspark-kernel shared driver: {text}\n")
        sys.stderr.flush()

    def clean(self):
        shutil.rmtree(self.paths.scratch, ignore_errors=True)
        if self.left:
            try:
                os.unlink(self.paths.log)
            except FileNotFoundError:
                pass


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a notebook's interrupt is never the server's
    config = json.loads(sys.stdin.read())
    sys.stdin.close()
    # Not the notebook's child: its process tree (what Jupyter and resource monitors count as the
    # notebook's) must not hold the server every notebook shares.
    if os.fork():
        os._exit(0)
    sys.stdout.write(f"pid {os.getpid()}\n")
    sys.stdout.flush()
    server = Server(config)
    code = 1
    try:
        try:
            port = server.start_spark()
        except Exception as error:
            server.log(f"Spark did not start: {type(error).__name__}: {error}")
            if getattr(server, "gateway", None) is not None:
                server.gateway.proc.kill()
            sys.stdout.write("failed\n")
            return code
        server.watch_jvm()
        server.log(f"serving Spark Connect on 127.0.0.1:{port} (JVM pid {server.gateway.proc.pid})")
        code = server.serve(port)
        return code
    finally:
        server.clean()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # Py4J's threads must not keep a server that has left


if __name__ == "__main__":
    raise SystemExit(main())
