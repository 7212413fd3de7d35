"""Kernel start-up benchmark: pyspark-kernel against a bare ipykernel, a plain-Python SparkSession
and the classic PYTHONSTARTUP PySpark kernel, all measured in one run.

    .venv/bin/python benchmarks/kernel_startup.py [--runs 3] [--cycles 20]

Per configuration, medians of --runs:
  kernel ready         launch -> kernel_info reply
  first cell at once   launch -> reply of `spark.range(1000).count()` sent as soon as the kernel is ready
  first cell after 10s the same cell's round trip, sent 10 s after the kernel is ready (a user typing)
  peak memory          largest resident memory of the kernel's process tree while it ran
  first RDD map / UDF  the round trip of a first Python-function cell (an RDD map; a Python UDF),
                       sent 10 s after the kernel is ready
  peak memory          (also over a notebook that uses every path: a UDF, a JVM job, an RDD map and
                       an Arrow UDF, on our kernel and the classic one alike)
  orphans              processes of the kernel still alive 10 s after its shutdown
Our kernel's start profile (%spark status) is shown step by step, medians of the runs.
Then --cycles start/stop cycles of our kernel (every other one forced) count surviving JVMs and
scratch directories; --runs interrupts of a minute-long job time how soon the cell stops; and
--together kernels of one spec, started at once with an empty class-data-sharing cache, time
launch -> first count for each (first, median, last). Everything runs on this machine, in
temporary directories.
"""

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
CELL = "spark.range(1000).count()"
# A notebook's first Python functions, each sent as the first cell after the user has typed for a while.
RDD_CELL = "sc.parallelize(range(4), 2).map(lambda x: x + 1).collect()"
UDF_CELL = "from pyspark.sql.functions import udf\nspark.range(4).select(udf(lambda x: x + 1, 'long')('id')).collect()"
ARROW_CELL = ("import pandas as pd\nfrom pyspark.sql.functions import pandas_udf\n"
              "def plus_one(s: pd.Series) -> pd.Series:\n    return s + 1\n"
              "spark.range(4).select(pandas_udf(plus_one, 'long')('id')).collect()")
PROFILE = "[list(step) for step in __import__('pyspark_kernel_runtime').RUNTIME.profile.steps]"
TYPING = 10.0
ORPHAN_WAIT = 10.0
SAMPLE_EVERY = 0.1

PLAIN_SESSION = """
import sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[*]").config("spark.ui.showConsoleProgress", "false").getOrCreate()
assert spark.range(1000).count() == 1000
print(time.time(), flush=True)
spark.stop()
"""


class PeakMemory:
    """Samples the resident memory of a process and its descendants until stopped."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def tree(self):
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self):
        while not self.stopped.wait(SAMPLE_EVERY):
            total = 0
            for proc in self.tree():
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)

    def stop(self):
        self.stopped.set()
        self.thread.join()
        return self.peak / 2**20


def descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def count_alive(procs, wait):
    """How many of ``procs`` are still alive after ``wait`` seconds (they may exit meanwhile)."""
    gone, alive = psutil.wait_procs(procs, timeout=wait)
    for proc in alive:  # don't let one run's leftovers slow the next
        proc.kill()
    psutil.wait_procs(alive, timeout=10)
    return len(alive)


def execute(client, name, code):
    reply = client.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{name}: the cell {code!r} failed: {reply['content']}")


def run_kernel(kernels_dir, name, env, typing, orphan_wait=ORPHAN_WAIT, cell=CELL, then=(), profile=None):
    """One kernel start: (ready s, first cell s from launch or from sending, peak MiB, orphans).
    ``then``: cells run after the timed one (their memory counts); ``profile``: a list that gets
    the kernel's start profile, [(step, seconds)]."""
    manager = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
    launched = time.monotonic()
    manager.start_kernel(env=env)
    memory = PeakMemory(manager.provisioner.process.pid)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=180)
        ready = time.monotonic() - launched
        if typing:
            time.sleep(TYPING)  # the user types; Spark may start meanwhile
        sent = time.monotonic()
        execute(client, name, cell)
        done = time.monotonic()
        first_cell = done - sent if typing else done - launched
        for code in then:
            execute(client, name, code)
        if profile is not None:
            reply = client.execute_interactive("pass", timeout=60, output_hook=lambda msg: None, user_expressions={"profile": PROFILE})
            found = reply["content"]["user_expressions"]["profile"]
            if found["status"] != "ok":
                raise RuntimeError(f"{name}: no start profile: {found}")
            profile.extend(ast.literal_eval(found["data"]["text/plain"]))
        procs = descendants(manager.provisioner.process.pid)
    finally:
        client.stop_channels()
        manager.shutdown_kernel()
        peak = memory.stop()
    return ready, first_cell, peak, count_alive(procs, orphan_wait)


def run_plain(env):
    """A plain Python script: launch -> SparkSession + first count, and its peak memory."""
    launched = time.time()
    proc = subprocess.Popen([PYTHON, "-c", PLAIN_SESSION], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    memory = PeakMemory(proc.pid)
    finished = float(proc.stdout.readline())
    proc.wait(timeout=120)
    return finished - launched, memory.stop()


def write_spec(kernels_dir, name, spec):
    os.makedirs(os.path.join(kernels_dir, name))
    with open(os.path.join(kernels_dir, name, "kernel.json"), "w", encoding="utf-8") as handle:
        json.dump(spec, handle)


def make_kernels(kernels_dir):
    import pyspark

    spark_home = os.path.dirname(pyspark.__file__)
    cli = os.path.join(os.path.dirname(PYTHON), "pyspark-kernel")
    for name, flags in (("ours", []), ("ours-no-cds", ["--no-class_data_sharing"]), ("ours-jvm", ["--warm_up", "jvm"])):
        subprocess.run([cli, "create", "-k", name, "-d", kernels_dir, "-e", sys.prefix, *flags], check=True, stdout=subprocess.DEVNULL)
    argv = [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    write_spec(kernels_dir, "bare", {"argv": argv, "display_name": "bare ipykernel", "language": "python"})
    # The classic PySpark kernel: the pyspark shell's start-up file, run before the kernel answers.
    write_spec(kernels_dir, "classic", {
        "argv": argv, "display_name": "classic PySpark", "language": "python",
        "env": {"SPARK_HOME": spark_home, "PYSPARK_PYTHON": PYTHON, "PYTHONSTARTUP": os.path.join(spark_home, "python", "pyspark", "shell.py"),
                "PYSPARK_SUBMIT_ARGS": "--master local[*] --conf spark.ui.showConsoleProgress=false pyspark-shell"},
    })


def build_archive(kernels_dir, env):
    """Our kernel's first run writes the class-data-sharing archive as its JVM exits: its JVM and
    watchdog are given the time that takes, not killed as a later run's leftovers are."""
    run_kernel(kernels_dir, "ours", env, typing=False, orphan_wait=300)
    cache = os.path.join(env["XDG_CACHE_HOME"], "pyspark-kernel", "cds")
    deadline = time.monotonic() + 120
    while not any(name.endswith(".jsa") for name in os.listdir(cache)):
        if time.monotonic() > deadline:
            raise RuntimeError("the class-data-sharing archive was not written")
        time.sleep(0.5)


def cycles(kernels_dir, env, count):
    """Start/stop our kernel ``count`` times, every other stop forced; survivors after each."""
    jvms = scratch = 0
    for index in range(count):
        manager = KernelManager(kernel_name="ours", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
        manager.start_kernel(env=env)
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=180)
        client.execute_interactive(CELL, timeout=300, output_hook=lambda msg: None)
        procs = descendants(manager.provisioner.process.pid)
        client.stop_channels()
        manager.shutdown_kernel(now=index % 2 == 1)
        jvms += count_alive([p for p in procs if process_name(p) == "java"], 30)
        deadline = time.monotonic() + 30
        while os.listdir(env["TMPDIR"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        scratch += len(os.listdir(env["TMPDIR"]))
        for leftover in os.listdir(env["TMPDIR"]):
            shutil.rmtree(os.path.join(env["TMPDIR"], leftover), ignore_errors=True)
    return jvms, scratch


def process_name(proc):
    try:
        return proc.name()
    except psutil.NoSuchProcess:
        return None


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--together", type=int, default=8)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="pyspark-kernel-bench-")
    try:
        kernels_dir = os.path.join(work, "kernels")
        env = {**os.environ, "XDG_CACHE_HOME": os.path.join(work, "cache"), "TMPDIR": os.path.join(work, "tmp"),
               "JUPYTER_RUNTIME_DIR": os.path.join(work, "runtime")}
        os.makedirs(env["TMPDIR"])
        make_kernels(kernels_dir)
        print("building the class-data-sharing archive (first run of our kernel)...", file=sys.stderr)
        build_archive(kernels_dir, env)

        metrics = ("ready", "at_once", "after_typing", "rdd_after_typing", "udf_after_typing", "memory", "typing_memory", "notebook_memory", "orphans")
        results = {name: {metric: [] for metric in metrics} for name in ("ours", "ours-no-cds", "ours-jvm", "classic", "bare", "plain")}
        profiles = {"at_once": [], "after_typing": []}
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}...", file=sys.stderr)
            for name in ("ours", "ours-no-cds", "classic", "bare"):
                if name == "classic":  # ours with only the JVM warm-up: after typing, its first cell and memory
                    _, after_typing, typing_memory, _ = run_kernel(kernels_dir, "ours-jvm", env, typing=True)
                    results["ours-jvm"]["after_typing"].append(after_typing)
                    results["ours-jvm"]["typing_memory"].append(typing_memory)
                ours = name == "ours"
                profile = [] if ours else None
                ready, at_once, memory, orphans = run_kernel(kernels_dir, name, env, typing=False, profile=profile) if name != "bare" else bare_run(kernels_dir, env)
                if ours:
                    profiles["at_once"].append(profile)
                results[name]["ready"].append(ready)
                results[name]["memory"].append(memory)
                results[name]["orphans"].append(orphans)
                if name == "bare":
                    continue
                results[name]["at_once"].append(at_once)
                profile = [] if ours else None
                _, after_typing, typing_memory, _ = run_kernel(kernels_dir, name, env, typing=True, profile=profile)
                results[name]["after_typing"].append(after_typing)
                results[name]["typing_memory"].append(typing_memory)
                if ours:
                    profiles["after_typing"].append(profile)
                if name in ("ours", "classic"):
                    results[name]["rdd_after_typing"].append(run_kernel(kernels_dir, name, env, typing=True, cell=RDD_CELL)[1])
                    # The UDF first; then every other path, so that both kernels have run the same notebook.
                    _, udf, notebook_memory, _ = run_kernel(kernels_dir, name, env, typing=True, cell=UDF_CELL, then=(CELL, RDD_CELL, ARROW_CELL))
                    results[name]["udf_after_typing"].append(udf)
                    results[name]["notebook_memory"].append(notebook_memory)
            at_once, memory = run_plain(env)
            results["plain"]["at_once"].append(at_once)
            results["plain"]["memory"].append(memory)
        print(f"{args.cycles} start/stop cycles...", file=sys.stderr)
        jvms, scratch = cycles(kernels_dir, env, args.cycles)
        print("interrupts...", file=sys.stderr)
        interrupts = [interrupt_latency(kernels_dir, env) for _ in range(args.runs)]
        print(f"{args.together} kernels at once, empty cache...", file=sys.stderr)
        together = start_together(kernels_dir, {**env, "XDG_CACHE_HOME": os.path.join(work, "cache-together")}, args.together)
        print_table(results, args.runs, args.cycles, jvms, scratch)
        print_profiles(profiles)
        print_start_figures(interrupts, together)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def interrupt_latency(kernels_dir, env):
    """Seconds from interrupting a cell, whose Spark job would run a minute, to the cell's error."""
    markers = tempfile.mkdtemp(dir=env["TMPDIR"], prefix="bench-markers-")
    job = f"sc.parallelize(range(2), 2).map(lambda x: open({markers!r} + '/%d' % x, 'w').close() or __import__('time').sleep(60)).count()"
    manager = KernelManager(kernel_name="ours", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=180)
        client.execute_interactive(CELL, timeout=300, output_hook=lambda msg: None)
        msg_id = client.execute(job, stop_on_error=False)
        deadline = time.monotonic() + 120
        while len(os.listdir(markers)) < 2:  # both tasks are running
            if time.monotonic() > deadline:
                raise RuntimeError("the interrupted job's tasks never started")
            time.sleep(0.1)
        interrupted = time.monotonic()
        manager.interrupt_kernel()
        while True:
            message = client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "error":
                return time.monotonic() - interrupted
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        shutil.rmtree(markers, ignore_errors=True)


def start_together(kernels_dir, env, count):
    """Launch ``count`` kernels of one spec at once (empty cache); each one's launch -> first count."""
    managers, clients, launched = [], [], []
    for _ in range(count):
        manager = KernelManager(kernel_name="ours", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
        launched.append(time.monotonic())
        manager.start_kernel(env=env)
        managers.append(manager)
    times = [None] * count

    def first_count(index):
        client = managers[index].client()
        client.start_channels()
        clients.append(client)
        client.wait_for_ready(timeout=300)
        reply = client.execute_interactive(CELL, timeout=900, output_hook=lambda msg: None)
        if reply["content"]["status"] == "ok":
            times[index] = time.monotonic() - launched[index]

    threads = [threading.Thread(target=first_count, args=(index,)) for index in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in clients:
            client.stop_channels()
        for manager in managers:
            manager.shutdown_kernel()
    return times


def print_start_figures(interrupts, together):
    print("\n| start-up and interrupt | measured |")
    print("|---|---:|")
    print(f"| interrupt of a minute-long job -> cell stopped (median of {len(interrupts)}) | {median(interrupts):.2f} s |")
    done = sorted(t for t in together if t is not None)
    print(f"| {len(together)} kernels at once, empty cache: failed starts | {len(together) - len(done)} |")
    if done:
        print(f"| same: launch -> first count, first / median / last | {done[0]:.1f} / {median(done):.1f} / {done[-1]:.1f} s |")


def print_profiles(profiles):
    """Our kernel's start, step by step: medians over the runs, for a first cell sent at once
    (it waits: no warm-up) and for one sent after 10 s of typing (the warm-up runs first)."""
    print("\n| start-up step (median s) | cell sent at once | after 10 s of typing |")
    print("|---|---:|---:|")
    steps = []
    for runs in profiles.values():
        for run in runs:
            steps += [step for step, _ in run if step not in steps]
    for step in steps:
        row = []
        for runs in profiles.values():
            found = [dict(run)[step] for run in runs if step in dict(run)]
            row.append(f"{median(found):.2f}" if found else "-")
        print(f"| {step} | " + " | ".join(row) + " |")


def bare_run(kernels_dir, env):
    """A bare ipykernel has no Spark: only its ready time, memory and orphans count."""
    manager = KernelManager(kernel_name="bare", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
    launched = time.monotonic()
    manager.start_kernel(env=env)
    memory = PeakMemory(manager.provisioner.process.pid)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    ready = time.monotonic() - launched
    client.execute_interactive("1 + 1", timeout=60, output_hook=lambda msg: None)
    procs = descendants(manager.provisioner.process.pid)
    client.stop_channels()
    manager.shutdown_kernel()
    return ready, None, memory.stop(), count_alive(procs, ORPHAN_WAIT)


def print_table(results, runs, cycle_count, jvms, scratch):
    def cell(name, metric, fmt="{:.2f}"):
        value = median(results[name][metric])
        return "-" if value != value else fmt.format(value)

    names = [("ours", "pyspark-kernel"), ("ours-no-cds", "ours, no CDS"), ("ours-jvm", "ours, warm_up jvm"), ("classic", "classic kernel"),
             ("bare", "bare ipykernel"), ("plain", "plain SparkSession")]
    rows = [
        ("kernel ready (s)", "ready", "{:.2f}"),
        ("first Spark cell at once (s)", "at_once", "{:.2f}"),
        ("first Spark cell after 10 s (s)", "after_typing", "{:.2f}"),
        ("first RDD map after 10 s (s)", "rdd_after_typing", "{:.2f}"),
        ("first Python UDF after 10 s (s)", "udf_after_typing", "{:.2f}"),
        ("peak memory of process tree (MiB)", "memory", "{:.0f}"),
        ("peak memory, one JVM cell after 10 s (MiB)", "typing_memory", "{:.0f}"),
        ("peak memory, notebook using every path (MiB)", "notebook_memory", "{:.0f}"),
        (f"orphan processes {ORPHAN_WAIT:.0f} s after shutdown", "orphans", "{:.0f}"),
    ]
    print(f"\nMedians of {runs} runs (2 cores; pip PySpark, Java 17).\n")
    print("| metric | " + " | ".join(label for _, label in names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, metric, fmt in rows:
        print(f"| {label} | " + " | ".join(cell(name, metric, fmt) for name, _ in names) + " |")

    def ratio(a, metric_a, b, metric_b):
        return median(results[a][metric_a]) / median(results[b][metric_b])

    print("\n| target | measured | goal |")
    print("|---|---:|---:|")
    print(f"| kernel ready / bare ipykernel | {ratio('ours', 'ready', 'bare', 'ready'):.2f}x | <= 1.5x |")
    print(f"| classic kernel ready / bare ipykernel | {ratio('classic', 'ready', 'bare', 'ready'):.1f}x | (baseline) |")
    print(f"| first Spark cell at once / plain SparkSession | {ratio('ours', 'at_once', 'plain', 'at_once'):.2f}x | <= 0.5x |")
    print(f"| same, without the CDS archive | {ratio('ours-no-cds', 'at_once', 'plain', 'at_once'):.2f}x | (CDS effect) |")
    print(f"| first Spark cell after 10 s of typing | {median(results['ours']['after_typing']):.2f} s | <= 0.6 s |")
    print(f"| classic kernel, first Spark cell after 10 s | {median(results['classic']['after_typing']):.2f} s | (baseline) |")
    print(f"| first RDD map after 10 s of typing | {median(results['ours']['rdd_after_typing']):.2f} s | <= 0.3 s |")
    print(f"| classic kernel, first RDD map after 10 s | {median(results['classic']['rdd_after_typing']):.2f} s | (baseline) |")
    print(f"| first Python UDF after 10 s of typing | {median(results['ours']['udf_after_typing']):.2f} s | <= 0.3 s |")
    print(f"| classic kernel, first Python UDF after 10 s | {median(results['classic']['udf_after_typing']):.2f} s | (baseline) |")
    print(f"| peak memory / classic kernel, first Spark cell | {ratio('ours', 'memory', 'classic', 'memory'):.2f}x | <= 1.0x |")
    print(f"| peak memory / classic kernel, notebook using every path | {ratio('ours', 'notebook_memory', 'classic', 'notebook_memory'):.2f}x | <= 1.0x |")
    print(f"| peak memory / classic kernel, one JVM cell after 10 s of typing | {ratio('ours', 'typing_memory', 'classic', 'typing_memory'):.2f}x | (Python workers warmed) |")
    print(f"| same, warm_up jvm / classic kernel | {ratio('ours-jvm', 'typing_memory', 'classic', 'typing_memory'):.2f}x | <= 1.0x |")
    print(f"| surviving JVMs over {cycle_count} start/stop cycles (half forced) | {jvms} | 0 |")
    print(f"| scratch directories left over {cycle_count} cycles | {scratch} | 0 |")


if __name__ == "__main__":
    main()
