"""Memory of many notebooks: the classic kernel, our dedicated kernel and our shared kernel, all
measured in one run (make bench runs it after kernel_startup.py).

    .venv/bin/python benchmarks/shared_driver.py [--counts 1,4,8] [--runs 3]

For each way, notebooks are opened one after another up to each count; each runs one Spark job.
After SETTLE seconds at rest, the memory of everything they run (kernels, their JVMs and Python
workers, and the shared driver: its server process, JVM and workers) is summed as PSS, so that
pages shared between processes count once. The table gives the total and the memory each
notebook after the first adds. Then, on the shared kernel with its driver up, a later notebook's
first Spark cell (sent once the kernel is ready, and sent at once) is timed, medians of --runs,
and the CPU its JVM spends in a minute at rest is read.
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
SERVER_APP = "pyspark-kernel shared driver"
TYPING = 10.0
# Seconds at rest after the last cell before memory is read, the same for every way: a user reads
# the result. The shared driver gives idle memory back after 10 s (driver_server.IDLE_RETURN_MS).
SETTLE = 15.0
IDLE_MINUTE = 60.0


def write_spec(kernels_dir, name, spec):
    os.makedirs(os.path.join(kernels_dir, name))
    with open(os.path.join(kernels_dir, name, "kernel.json"), "w", encoding="utf-8") as handle:
        json.dump(spec, handle)


def make_kernels(kernels_dir):
    import pyspark

    cli = os.path.join(os.path.dirname(PYTHON), "pyspark-kernel")
    for name, flags in (("dedicated", []), ("shared", ["--spark_driver", "shared"])):
        subprocess.run([cli, "create", "-k", name, "-d", kernels_dir, "-e", sys.prefix, *flags], check=True, stdout=subprocess.DEVNULL)
    # The classic way: a plain ipykernel whose first cell builds its own SparkSession.
    write_spec(kernels_dir, "classic", {"argv": [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "classic",
                                        "language": "python", "env": {"SPARK_HOME": os.path.dirname(pyspark.__file__), "PYSPARK_PYTHON": PYTHON}})


def start_kernel(kernels_dir, name, env):
    """(manager, client) of a kernel that has answered."""
    manager = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels_dir]))
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=300)
    except BaseException:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        raise
    return manager, client


def open_notebook(kernels_dir, name, env, cell):
    manager, client = start_kernel(kernels_dir, name, env)
    run(client, cell)
    return manager, client


def run(client, code):
    reply = client.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"the cell {code!r} failed: {reply['content']}")


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
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(arg.endswith(".driver_server") for arg in proc.info["cmdline"] or []) and proc.cwd().startswith(run_dir):
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def measure_way(kernels_dir, name, env, counts, run_dir):
    """{count: total PSS MiB} for 1..max(counts) notebooks of kernel ``name``."""
    cell = CLASSIC_CELL if name == "classic" else CELL
    opened, totals = [], {}
    try:
        for count in range(1, max(counts) + 1):
            opened.append(open_notebook(kernels_dir, name, env, cell))
            if count in counts:
                time.sleep(SETTLE)
                pids = [manager.provisioner.process.pid for manager, _ in opened] + shared_servers(run_dir)
                totals[count] = pss_of(tree(pids))
    finally:
        for manager, client in opened:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    return totals


def idle_cpu(kernels_dir, env, run_dir):
    """CPU seconds the shared driver's JVM spends in a minute at rest, one notebook attached."""
    holder = open_notebook(kernels_dir, "shared", env, CELL)
    try:
        time.sleep(SETTLE)
        jvm = [proc for proc in tree(shared_servers(run_dir)) if proc.name() == "java"][0]
        before = sum(jvm.cpu_times()[:2])
        time.sleep(IDLE_MINUTE)
        return (sum(jvm.cpu_times()[:2]) - before) * 60 / IDLE_MINUTE
    finally:
        holder[1].stop_channels()
        holder[0].shutdown_kernel(now=True)


def later_notebook_cell(kernels_dir, env, runs):
    """With the shared driver up (one notebook attached): a later notebook's first Spark cell,
    sent after 10 s of typing (as kernel_startup.py times a first cell) and sent at once, medians in seconds."""
    holder = open_notebook(kernels_dir, "shared", env, CELL)
    typed, at_once = [], []
    try:
        for _ in range(runs):
            for wait, results in ((TYPING, typed), (None, at_once)):
                manager, client = start_kernel(kernels_dir, "shared", env)
                try:
                    if wait:
                        time.sleep(wait)  # the user types
                    sent = time.monotonic()
                    run(client, CELL)
                    results.append(time.monotonic() - sent)
                finally:
                    client.stop_channels()
                    manager.shutdown_kernel(now=True)
    finally:
        holder[1].stop_channels()
        holder[0].shutdown_kernel(now=True)
    return statistics.median(typed), statistics.median(at_once)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,4,8")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = sorted({int(count) for count in args.counts.split(",")})
    scratch = tempfile.mkdtemp(prefix="pyspark-kernel-bench-shared-")
    run_dir = os.path.join(scratch, "run")
    os.mkdir(run_dir, 0o700)
    env = {**os.environ, "XDG_CACHE_HOME": os.path.join(scratch, "cache"), "XDG_RUNTIME_DIR": run_dir, "TMPDIR": scratch}
    kernels_dir = os.path.join(scratch, "kernels")
    try:
        make_kernels(kernels_dir)
        results = {name: measure_way(kernels_dir, name, env, counts, run_dir) for name in ("classic", "dedicated", "shared")}
        typed, at_once = later_notebook_cell(kernels_dir, env, args.runs)
        resting = idle_cpu(kernels_dir, env, run_dir)
    finally:
        deadline = time.monotonic() + 120
        while shared_servers(run_dir) and time.monotonic() < deadline:
            time.sleep(0.5)  # the shared driver leaves after its linger
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nMemory of N notebooks, each after one Spark job (PSS, MiB; local[*]); counts {', '.join(map(str, counts))}")
    print(f"| way | {' | '.join(f'{n} notebook' + ('s' if n > 1 else '') for n in counts)} | each extra notebook |")
    print("|---|" + "---:|" * (len(counts) + 1))
    for name, totals in results.items():
        first, last = counts[0], counts[-1]
        extra = (totals[last] - totals[first]) / (last - first) if last > first else float("nan")
        print(f"| {name} | {' | '.join(f'{totals[n]:,.0f}' for n in counts)} | {extra:,.0f} |")
    print(f"\nShared kernel, driver up: a later notebook's first Spark cell `{CELL}`: {typed:.2f} s sent after {TYPING:.0f} s of typing, "
          f"{at_once:.2f} s sent at once (medians of {args.runs})")
    print(f"Shared driver at rest, one notebook attached: its JVM used {resting:.2f} s of CPU a minute")


if __name__ == "__main__":
    raise SystemExit(main())
