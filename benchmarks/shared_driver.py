"""Many notebooks on one machine, four ways, all measured in one run (make bench runs it after
kernel_startup.py): the classic kernel (each notebook builds its own SparkSession), our dedicated
kernel, our shared kernel (--spark_driver shared) and PySpark's own reuse of a local Spark Connect
server (spark.local.connect.reuse, a classic kernel whose first cell builds the session with it).

    .venv/bin/python benchmarks/shared_driver.py [--counts 1,4,8] [--runs 3]

- First notebook: launch -> reply of its first Spark cell, sent as soon as the kernel is ready,
  with no server running (each kernel's class-data-sharing archive built beforehand), medians of --runs.
- Later notebooks, with the server up (one notebook attached; for the shared driver, its kernel
  starter listening too): the first Spark cell of a new
  notebook, sent as soon as its kernel is ready (send -> reply, and launch -> reply), medians of 2x--runs.
- Memory: notebooks are opened one after another up to each count; each runs one Spark job. The
  memory of everything they run (kernels, their JVMs and Python workers, and a shared server) is
  summed as PSS, so that pages shared between processes count once, AFTER seconds after the last
  cell and again at rest (SETTLE). The table gives the totals and what each notebook after the
  first adds.
- The CPU the shared driver's JVM spends in a minute at rest.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

PYTHON = sys.executable
CELL = "spark.range(1000).count()"
CLASSIC_CELL = "from pyspark.sql import SparkSession\nspark = SparkSession.builder.master('local[*]').getOrCreate()\nspark.range(1000).count()"
REUSE_CELL = ("from pyspark.sql import SparkSession\n"
              "spark = SparkSession.builder.remote('local[*]').config('spark.local.connect.reuse', 'true').getOrCreate()\nspark.range(1000).count()")
FIRST_CELLS = {"classic": CLASSIC_CELL, "reuse": REUSE_CELL}
WAYS = ("classic", "dedicated", "shared", "reuse")
LABELS = {"classic": "classic kernel", "dedicated": "dedicated", "shared": "shared driver", "reuse": "PySpark's reuse"}
AFTER = 3.0  # seconds after the last cell: the memory a user has right after a result
# Seconds at rest after the last cell before memory is read again: the shared driver gives idle
# memory back after 10 s (driver_server.IDLE_RETURN_MS).
SETTLE = 15.0
IDLE_MINUTE = 60.0


def write_spec(kernels_dir, name, spec):
    os.makedirs(os.path.join(kernels_dir, name))
    with open(os.path.join(kernels_dir, name, "kernel.json"), "w", encoding="utf-8") as handle:
        json.dump(spec, handle)


def make_kernels(kernels_dir, scratch):
    import pyspark

    cli = os.path.join(os.path.dirname(PYTHON), "pyspark-kernel")
    # shared-first: the shared kernel's settings, whose server leaves as its notebook does (one server key).
    for name, flags in (("dedicated", []), ("shared", ["--spark_driver", "shared"]), ("shared-first", ["--spark_driver", "shared", "--driver_linger", "0"])):
        subprocess.run([cli, "create", "-k", name, "-d", kernels_dir, "-e", sys.prefix, *flags], check=True, stdout=subprocess.DEVNULL)
    # The classic way, and PySpark's reuse: a plain ipykernel whose first cell builds the session.
    for name in ("classic", "reuse"):
        write_spec(kernels_dir, name, {"argv": [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": name, "language": "python",
                                       # Their JVMs (and PySpark's reuse server) keep their files in the bench's directory, not /tmp.
                                       "env": {"SPARK_HOME": os.path.dirname(pyspark.__file__), "PYSPARK_PYTHON": PYTHON,
                                               "SPARK_SUBMIT_OPTS": f"-Djava.io.tmpdir={scratch}"}})


class Notebook:
    """A kernel that has answered, and the time it was launched."""

    def __init__(self, kernels_dir, name, env):
        self.manager = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
        self.launched = time.monotonic()
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        try:
            self.client.wait_for_ready(timeout=300)
        except BaseException:
            self.close()
            raise
        self.ready = time.monotonic()

    def run(self, code):
        """Seconds from sending ``code`` to its reply."""
        sent = time.monotonic()
        reply = self.client.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the cell {code!r} failed: {reply['content']}")
        return time.monotonic() - sent

    @property
    def pid(self):
        return self.manager.provisioner.process.pid

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def first_cell(name):
    return FIRST_CELLS.get(name, CELL)


def pss_of(procs):
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            pass
    return total / 2**20


def tree(pids):
    found = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def shared_servers(run_dir):
    """The keepers of our shared drivers (their JVMs are their children), and the kernel starters
    beside them (the kernels they forked are their children)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        try:
            if any(arg.endswith(".driver_server") for arg in cmdline) and proc.cwd().startswith(run_dir):
                found.append(proc.pid)
            elif "--serve-kernels" in cmdline and proc.environ().get("XDG_RUNTIME_DIR") == run_dir:
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def wait_for_starter(run_dir, timeout=120):
    """A shared kernel's first notebook starts the kernel starter, which listens once it has imported,
    then makes a warm session ahead for the next notebook in a helper of its own (runtime.spare),
    which leaves once it is made: the state a notebook opened a few seconds later finds."""
    deadline = time.monotonic() + timeout

    def ready():
        if not any(name.startswith("k-") and name.endswith(".sock") for name in os.listdir(os.path.join(run_dir, "pyspark-kernel"))):
            return False
        try:
            starters = [proc for proc in map(psutil.Process, shared_servers(run_dir)) if "--serve-kernels" in proc.cmdline()]
            return bool(starters) and not any(proc.children() for proc in starters)
        except psutil.Error:
            return False  # one has just gone

    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no kernel starter ready in {run_dir} after {timeout} s")
        time.sleep(0.1)


def reuse_server(scratch):
    """The pid of PySpark's persistent local Connect server, from its discovery file (under TMPDIR)."""
    for directory in os.listdir(scratch):
        path = os.path.join(scratch, directory, "connect-local.json")
        if directory.startswith("spark-connect-") and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return [json.load(handle)["pid"]]
    return []


def servers(way, scratch, run_dir):
    return shared_servers(run_dir) if way == "shared" else reuse_server(scratch) if way == "reuse" else []


def stop_reuse_server(env):
    subprocess.run([PYTHON, "-m", "pyspark.sql.connect.local_server", "--stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def wait_for_servers_to_leave(run_dir, timeout=240):
    """Our shared drivers leave after their linger (a first one also writes its archive)."""
    procs = [psutil.Process(pid) for pid in shared_servers(run_dir)]
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        raise RuntimeError(f"shared drivers still running after {timeout} s: {[proc.pid for proc in alive]}")


def wait_for_archive(cache, prefix, timeout=240):
    directory = os.path.join(cache, "pyspark-kernel", "cds")
    deadline = time.monotonic() + timeout
    while not any(name.startswith(prefix) and name.endswith(".jsa") for name in os.listdir(directory)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {prefix} class-data-sharing archive in {directory} after {timeout} s")
        time.sleep(0.5)


def build_archives(kernels_dir, env, run_dir):
    """A dedicated kernel's JVM and a shared driver's each write their archive as they exit."""
    notebook = Notebook(kernels_dir, "dedicated", env)
    notebook.run(CELL)
    notebook.client.stop_channels()
    notebook.manager.shutdown_kernel()  # not forced: its JVM writes the archive as it exits
    notebook = Notebook(kernels_dir, "shared-first", env)
    notebook.run(CELL)
    notebook.close()
    wait_for_servers_to_leave(run_dir)
    for prefix in ("spark-", "connect-"):
        wait_for_archive(env["XDG_CACHE_HOME"], prefix)


def first_notebook(kernels_dir, name, env, scratch, run_dir):
    """Launch -> reply of a first notebook's first Spark cell sent at once, no server running."""
    notebook = Notebook(kernels_dir, "shared-first" if name == "shared" else name, env)
    try:
        notebook.run(first_cell(name))
        return time.monotonic() - notebook.launched
    finally:
        notebook.close()
        if name == "shared":
            wait_for_servers_to_leave(run_dir)
        elif name == "reuse":
            stop_reuse_server(env)


def later_notebooks(kernels_dir, name, env, runs):
    """With the server up (one notebook attached): a new notebook's first Spark cell sent at once,
    [(send -> reply, launch -> reply)]."""
    holder = Notebook(kernels_dir, name, env)
    found = []
    try:
        holder.run(first_cell(name))
        if name == "shared":
            wait_for_starter(env["XDG_RUNTIME_DIR"])
        for _ in range(runs):
            notebook = Notebook(kernels_dir, name, env)
            try:
                sent = notebook.run(first_cell(name))
                found.append((sent, time.monotonic() - notebook.launched))
            finally:
                notebook.close()
    finally:
        holder.close()
    return found


def measure_memory(kernels_dir, name, env, counts, scratch, run_dir):
    """{count: (PSS MiB AFTER s after the last cell, PSS MiB at rest)} for 1..max(counts) notebooks."""
    opened, totals = [], {}
    try:
        for count in range(1, max(counts) + 1):
            notebook = Notebook(kernels_dir, name, env)
            opened.append(notebook)
            notebook.run(first_cell(name))
            if count in counts:
                done = time.monotonic()
                readings = []
                for wait in (AFTER, SETTLE):
                    time.sleep(max(0.0, done + wait - time.monotonic()))
                    readings.append(pss_of(tree([each.pid for each in opened] + servers(name, scratch, run_dir))))
                totals[count] = tuple(readings)
    finally:
        for notebook in opened:
            notebook.close()
        if name == "reuse":
            stop_reuse_server(env)
    return totals


def idle_cpu(kernels_dir, env, run_dir):
    """CPU seconds the shared driver's JVM spends in a minute at rest, one notebook attached."""
    holder = Notebook(kernels_dir, "shared", env)
    try:
        holder.run(CELL)
        time.sleep(SETTLE)
        jvm = [proc for proc in tree(shared_servers(run_dir)) if proc.name() == "java"][0]
        before = sum(jvm.cpu_times()[:2])
        time.sleep(IDLE_MINUTE)
        return (sum(jvm.cpu_times()[:2]) - before) * 60 / IDLE_MINUTE
    finally:
        holder.close()


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,4,8")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = sorted({int(count) for count in args.counts.split(",")})
    scratch = tempfile.mkdtemp(prefix="pyspark-kernel-bench-shared-")
    run_dir = os.path.join(scratch, "run")
    os.mkdir(run_dir, 0o700)
    # TMPDIR: PySpark's reuse keeps its discovery file and server there too.
    env = {**os.environ, "XDG_CACHE_HOME": os.path.join(scratch, "cache"), "XDG_RUNTIME_DIR": run_dir, "TMPDIR": scratch}
    kernels_dir = os.path.join(scratch, "kernels")
    try:
        make_kernels(kernels_dir, scratch)
        print("building the class-data-sharing archives...", file=sys.stderr)
        build_archives(kernels_dir, env, run_dir)
        print("first notebooks...", file=sys.stderr)
        firsts = {name: [] for name in ("dedicated", "shared", "reuse")}
        for _ in range(args.runs):
            for name in firsts:
                firsts[name].append(first_notebook(kernels_dir, name, env, scratch, run_dir))
        print("later notebooks...", file=sys.stderr)
        laters = {name: later_notebooks(kernels_dir, name, env, 2 * args.runs) for name in ("shared", "reuse")}
        stop_reuse_server(env)
        print("memory...", file=sys.stderr)
        memory = {name: measure_memory(kernels_dir, name, env, counts, scratch, run_dir) for name in WAYS}
        resting = idle_cpu(kernels_dir, env, run_dir)
    finally:
        stop_reuse_server(env)
        try:
            wait_for_servers_to_leave(run_dir, timeout=120)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    report(args.runs, counts, firsts, laters, memory, resting)


def report(runs, counts, firsts, laters, memory, resting):
    first, last = counts[0], counts[-1]

    def extra(name, index):
        totals = memory[name]
        return (totals[last][index] - totals[first][index]) / (last - first) if last > first else float("nan")

    print(f"\nFirst notebook, no server running: launch -> reply of its first Spark cell sent at once (s, medians of {runs})")
    print("| way | first notebook | each run, in order |")
    print("|---|---:|---|")
    for name, found in firsts.items():
        print(f"| {LABELS[name]} | {median(found):.2f} | {', '.join(f'{each:.2f}' for each in found)} |")
    print(f"\nLater notebooks, server up: a new notebook's first Spark cell sent at once (s, medians of {2 * runs})")
    print("| way | send -> reply | launch -> reply |")
    print("|---|---:|---:|")
    for name, found in laters.items():
        print(f"| {LABELS[name]} | {median([sent for sent, _ in found]):.2f} | {median([whole for _, whole in found]):.2f} |")
    print(f"\nMemory of N notebooks, each after one Spark job (PSS, MiB; local[*]): {AFTER:.0f} s after the last cell / at rest ({SETTLE:.0f} s)")
    print(f"| way | {' | '.join(f'{n} notebook' + ('s' if n > 1 else '') for n in counts)} | each extra notebook |")
    print("|---|" + "---:|" * (len(counts) + 1))
    for name in WAYS:
        totals = memory[name]
        cells = [f"{totals[n][0]:,.0f} / {totals[n][1]:,.0f}" for n in counts]
        print(f"| {LABELS[name]} | {' | '.join(cells)} | {extra(name, 0):,.0f} / {extra(name, 1):,.0f} |")
    dedicated, shared, reuse = median(firsts["dedicated"]), median(firsts["shared"]), median(firsts["reuse"])
    later_shared = median([sent for sent, _ in laters["shared"]])
    later_reuse = median([sent for sent, _ in laters["reuse"]])
    print("\n| target | measured | goal |")
    print("|---|---:|---:|")
    print(f"| shared driver's first notebook / dedicated kernel's first cell at once | {shared / dedicated:.2f}x | <= 1.0x |")
    print(f"| PySpark's reuse, first notebook / dedicated kernel's first cell at once | {reuse / dedicated:.2f}x | (baseline) |")
    print(f"| later notebooks' first cell at once, shared driver | {later_shared:.2f} s | <= 0.3 s |")
    print(f"| same / PySpark's reuse | {later_shared / later_reuse:.2f}x | < 1.0x |")
    print(f"| memory per extra notebook, {AFTER:.0f} s after its cell, shared driver | {extra('shared', 0):,.0f} MiB | <= 100 MiB |")
    print(f"| same, PySpark's reuse | {extra('reuse', 0):,.0f} MiB | (baseline) |")
    print(f"| {last} notebooks, shared driver, {AFTER:.0f} s after the last cell | {memory['shared'][last][0] / 1024:.2f} GiB | <= 1.25 GiB |")
    print(f"| same, at rest | {memory['shared'][last][1] / 1024:.2f} GiB | (at rest) |")
    print(f"| shared driver at rest, one notebook attached: its JVM's CPU a minute | {resting:.2f} s | (idle cost) |")


if __name__ == "__main__":
    raise SystemExit(main())
