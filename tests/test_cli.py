"""`pyspark-kernel create`: the original script's flags, atomic installs, values kept as data."""

import json
import os
import shutil
import subprocess

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from pyspark_kernel.cli import split_spark_flags
from pyspark_kernel.errors import InputError
from pyspark_kernel.install import STAGING_PREFIX
from pyspark_kernel.kernelspec import kernel_environment
from pyspark_kernel.runtime.options import OPTIONS

from .conftest import KERNEL_FILES, PYTHON, ROOT, VENV_DIR, kernel_env, read_spec, run_cli, spark_conf_of, tree_snapshot, venv_with_project_packages

# Each value must reach kernel.json (and Spark) unchanged and run nothing. {marker} is a file that
# must never appear.
NASTY = [
    "spaces, \"double\" and 'single' quotes",
    "a=b=c",
    "{{ cookiecutter.kernel_name }} {{ 7 * 7 }}",
    "{% raw %}x{% endraw %} {% if true %}y{% endif %}",
    "$(touch {marker}) `touch {marker}`; touch {marker}",
    "back\\slash \\n \\\\ \\u0041",
    "# not a comment // nor this",
    "line one\nline two",
    "ünïcödé ✓ 火花",
    "${?HOME} ${HOME}",
    "'''; import os; os.system('touch {marker}') #",
    '"}], "argv": ["touch", "{marker}"], "x": [{"',
]


def nasty_values(marker):
    return [value.replace("{marker}", str(marker)) for value in NASTY]


def test_spark_flags_take_both_forms_and_any_value():
    conf, rest = split_spark_flags(["-k", "x", "--spark.a", "1", "--spark.b=2=3", "--spark.c", "-Dx=y", "--spark_master", "yarn"])
    assert conf == {"spark.a": "1", "spark.b": "2=3", "spark.c": "-Dx=y"}
    assert rest == ["-k", "x", "--spark_master", "yarn"]


def test_spark_flag_without_value_is_an_error():
    with pytest.raises(InputError, match="--spark.a has no value"):
        split_spark_flags(["--spark.a"])


def test_create_with_the_original_flags(kernels_dir):
    done = run_cli(
        "create", "-k", "etl", "-e", VENV_DIR, "-d", str(kernels_dir), "--spark_master", "local[4]",
        "--spark.executor.memory", "4g", "--spark.sql.shuffle.partitions=8", "--env", "HADOOP_CONF_DIR=/etc/hadoop/conf",
        "--display_name", "ETL",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"Installed kernel etl in {kernels_dir / 'etl'}"
    spec = read_spec(kernels_dir / "etl")
    conf = spark_conf_of(spec)
    assert conf["spark.master"] == "local[4]"
    assert conf["spark.executor.memory"] == "4g" and conf["spark.sql.shuffle.partitions"] == "8"
    assert spec["env"]["HADOOP_CONF_DIR"] == "/etc/hadoop/conf"
    assert spec["display_name"] == "ETL"
    assert os.listdir(kernels_dir) == ["etl"]


def test_relative_venv_dir_is_taken_from_the_current_directory(kernels_dir):
    done = run_cli("create", "-k", "rel", "-e", os.path.relpath(VENV_DIR, ROOT), "-d", str(kernels_dir), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert read_spec(kernels_dir / "rel")["argv"][0] == PYTHON


def test_default_kernels_dir_is_the_users_jupyter_data_dir():
    data_dir = os.environ["JUPYTER_DATA_DIR"]  # isolated by conftest
    done = run_cli("create", "-k", "in-data-dir", "-e", VENV_DIR)
    try:
        assert done.returncode == 0, done.stderr
        assert os.path.isfile(os.path.join(data_dir, "kernels", "in-data-dir", "kernel.json"))
        assert "in-data-dir" in KernelSpecManager().find_kernel_specs()
        listed = subprocess.run([os.path.join(VENV_DIR, "bin", "jupyter"), "kernelspec", "list", "--json"], capture_output=True, text=True, check=True)
        assert "in-data-dir" in json.loads(listed.stdout)["kernelspecs"]
    finally:
        shutil.rmtree(os.path.join(data_dir, "kernels", "in-data-dir"), ignore_errors=True)


@pytest.mark.parametrize("args, field", [
    (["-k", "a/b"], "kernel_name"),
    (["-k", ".."], "kernel_name"),
    (["-k", "Bad"], "kernel_name"),
    (["-k", "ok", "--spark_master", "local[*"], "spark_master"),
    (["-k", "ok", "--spark.executor.memory", "4 gb"], "spark_conf"),
    (["-k", "ok", "--spark.x"], "spark_conf"),
    (["-k", "ok", "--env", "NOEQUALS"], "env"),
    (["-k", "ok", "--env", "A-B=1"], "env"),
    (["-k", "ok", "-e", "/nonexistent/venv"], "venv_dir"),
    (["-k", "ok", "--spark_home", "/nonexistent/spark"], "spark_home"),
    (["-k", "ok", "-t", "/nonexistent/template"], "kernels_template_path"),
    (["-k", "ok", "--no-such-flag"], "arguments"),
    (["-k", "ok", "--spark_init", "soon"], "arguments"),
    (["-k", "ok", "--warm_up", "always"], "arguments"),
    (["-k", "ok", "--start_timeout", "-5"], "start_timeout"),
    (["-k", "ok", "--idle_timeout", "-1"], "idle_timeout"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_flags_give_one_error_line_and_leave_nothing(kernels_dir, args, field):
    done = run_cli("create", "-d", str(kernels_dir), *args)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"ERROR: {field}: ") and done.stderr.rstrip().endswith(")")
    assert os.listdir(kernels_dir) == []


def test_existing_kernel_is_kept_byte_identical_without_force(kernels_dir):
    assert run_cli("create", "-k", "keep", "-d", str(kernels_dir)).returncode == 0
    before = tree_snapshot(kernels_dir)
    done = run_cli("create", "-k", "keep", "-d", str(kernels_dir), "--spark_master", "local[2]")
    assert done.returncode == 1
    assert done.stderr.strip() == f"ERROR: kernel_name: a kernel named keep already exists in {kernels_dir} (pass --force to replace it)"
    assert tree_snapshot(kernels_dir) == before


def test_bad_input_with_force_leaves_the_existing_kernel_byte_identical(kernels_dir):
    assert run_cli("create", "-k", "keep", "-d", str(kernels_dir)).returncode == 0
    before = tree_snapshot(kernels_dir)
    done = run_cli("create", "-k", "keep", "-d", str(kernels_dir), "--force", "-e", "/nonexistent/venv")
    assert done.returncode == 1 and done.stderr.startswith("ERROR: venv_dir: ")
    assert tree_snapshot(kernels_dir) == before


def test_force_replaces_the_kernel_and_keeps_no_old_file(kernels_dir):
    assert run_cli("create", "-k", "swap", "-d", str(kernels_dir), "--spark_master", "local[2]").returncode == 0
    (kernels_dir / "swap" / "old-environment.tar.gz").write_bytes(b"stale")
    done = run_cli("create", "-k", "swap", "-d", str(kernels_dir), "--spark_master", "local[3]", "--force")
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(kernels_dir / "swap")) == KERNEL_FILES
    assert spark_conf_of(read_spec(kernels_dir / "swap"))["spark.master"] == "local[3]"
    assert not [name for name in os.listdir(kernels_dir) if name.startswith(STAGING_PREFIX)]


def test_nasty_values_reach_kernel_json_exactly_and_run_nothing(kernels_dir, tmp_path):
    marker = tmp_path / "marker"
    values = nasty_values(marker)
    args = ["create", "-k", "nasty", "-d", str(kernels_dir), "--display_name", values[0] + values[2] + values[7]]
    for index, value in enumerate(values):
        args += [f"--spark.test.value{index}", value, "--env", f"NASTY_{index}={value}"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    spec = read_spec(kernels_dir / "nasty")
    conf = spark_conf_of(spec)
    for index, value in enumerate(values):
        assert conf[f"spark.test.value{index}"] == value
        assert kernel_env(spec)[f"NASTY_{index}"] == value
    assert spec["display_name"] == values[0] + values[2] + values[7]
    assert not marker.exists()


def test_interactive_answers_are_kept_exactly(tmp_path):
    """Cookiecutter does not render typed answers as Jinja: they reach kernel.json as typed."""
    marker = tmp_path / "marker"
    display, conf_value, env_value = nasty_values(marker)[2], nasty_values(marker)[4], nasty_values(marker)[3]
    # the defaults for spark_home and profile, then for every plain variable after spark_master (cookiecutter asks for dicts last)
    plain = [option.name for option in OPTIONS if option.cookiecutter and option.kind != "mapping"]
    defaults = [""] * len(plain[plain.index("spark_master") + 1:])
    answers = ["typed", display, VENV_DIR, "", "", "local[2]", *defaults, json.dumps({"spark.test.typed": conf_value}), json.dumps({"TYPED": env_value})]
    out = tmp_path / "kernels"
    done = subprocess.run([os.path.join(VENV_DIR, "bin", "cookiecutter"), ROOT, "-o", str(out)], input="\n".join(answers) + "\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spec = read_spec(out / "typed")
    assert spec["display_name"] == display
    assert spark_conf_of(spec)["spark.test.typed"] == conf_value
    assert kernel_env(spec)["TYPED"] == env_value
    assert not marker.exists()


def test_a_forked_template_brings_its_own_defaults(tmp_path, kernels_dir):
    fork = tmp_path / "fork"
    shutil.copytree(ROOT, fork, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "__pycache__", "*.egg-info"))
    defaults = (fork / "defaults.conf").read_text()
    (fork / "defaults.conf").write_text(defaults.replace('conf {\n', 'conf {\n    "spark.sql.session.timeZone" = "UTC"\n', 1))
    done = run_cli("create", "-t", str(fork), "-k", "team", "-d", str(kernels_dir))
    assert done.returncode == 0, done.stderr
    assert spark_conf_of(read_spec(kernels_dir / "team"))["spark.sql.session.timeZone"] == "UTC"


def test_the_packages_own_hooks_run_in_creates_process(tmp_path, monkeypatch):
    """Not as scripts: cookiecutter would start a Python for each (0.6 s of CPU a kernel)."""
    import hashlib
    import pathlib

    from cookiecutter import hooks as cookiecutter_hooks

    from pyspark_kernel import generate, hooks

    for name, (digest, function) in generate.OWN_HOOKS.items():  # a hook edited here is one the package no longer knows: update OWN_HOOKS
        assert hashlib.sha256((pathlib.Path(ROOT) / "hooks" / name).read_bytes()).hexdigest() == digest, name
        assert f"hooks.{function}(" in (pathlib.Path(ROOT) / "hooks" / name).read_text(), (name, function)  # the function the script calls
    scripts = []
    monkeypatch.setattr(cookiecutter_hooks, "run_script", lambda path, cwd=".": scripts.append(path))
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    answers = {"kernel_name": "in-process", "venv_dir": VENV_DIR, "spark_conf": {}, "env": {}, "env_from": []}
    generate.generate_kernel(ROOT, "in-process", answers, str(kernels / "in-process"), shareable=False, force=False)
    assert scripts == []
    assert read_spec(kernels / "in-process")["metadata"]["pyspark_kernel"]["venv_dir"] == VENV_DIR
    assert generate.own_hook(ROOT, os.path.join(ROOT, "hooks", "pre_gen_project.py")) is hooks.pre_gen
    # A template with a pyspark_kernel of its own (a fork's checkout) runs its hooks as scripts.
    fork = tmp_path / "fork"
    shutil.copytree(ROOT, fork, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "__pycache__", "*.egg-info"))
    assert generate.own_hook(str(fork), str(fork / "hooks" / "pre_gen_project.py")) is None


def test_a_forked_template_whose_hook_does_more_has_it_run(tmp_path, kernels_dir):
    """A fork without a pyspark_kernel of its own imports this one, but its edited hook is its own:
    it runs as cookiecutter runs it, whole."""
    fork = tmp_path / "fork"
    shutil.copytree(ROOT, fork, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "__pycache__", "*.egg-info", "pyspark_kernel", "benchmarks", "docs"))
    hook = fork / "hooks" / "post_gen_project.py"
    marker = tmp_path / "team-step"
    hook.write_text(hook.read_text().replace("    return hooks.post_gen(CONTEXT, LAUNCH_DIR)\n",
                                             f"    open({str(marker)!r}, 'w').close()  # the team's own step\n    return hooks.post_gen(CONTEXT, LAUNCH_DIR)\n"))
    done = run_cli("create", "-t", str(fork), "-k", "team-hook", "-d", str(kernels_dir))
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    assert read_spec(kernels_dir / "team-hook")["display_name"] == "PySpark (team-hook)"


def test_hocon_substitution_takes_the_generating_users_environment(kernels_dir):
    """defaults.conf has JAVA_HOME = ${?JAVA_HOME}: set, it is kept; unset, the key is left out."""
    with_java = run_cli("create", "-k", "with-java", "-d", str(kernels_dir), env={**os.environ, "JAVA_HOME": "/opt/jdk-17"})
    without = run_cli("create", "-k", "without-java", "-d", str(kernels_dir), env={k: v for k, v in os.environ.items() if k != "JAVA_HOME"})
    assert with_java.returncode == without.returncode == 0, with_java.stderr + without.stderr
    assert read_spec(kernels_dir / "with-java")["env"]["JAVA_HOME"] == "/opt/jdk-17"
    assert "JAVA_HOME" not in read_spec(kernels_dir / "without-java")["env"]


def test_a_forked_template_brings_its_own_prompt_defaults(tmp_path, kernels_dir):
    fork = tmp_path / "fork"
    shutil.copytree(ROOT, fork, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "__pycache__", "*.egg-info"))
    context = json.loads((fork / "cookiecutter.json").read_text())
    context.update(kernel_name="team-default", spark_master="local[3]")
    (fork / "cookiecutter.json").write_text(json.dumps(context))
    done = run_cli("create", "-t", str(fork), "-d", str(kernels_dir))
    assert done.returncode == 0, done.stderr
    assert spark_conf_of(read_spec(kernels_dir / "team-default"))["spark.master"] == "local[3]"


def test_a_broken_template_is_one_error_line(tmp_path, kernels_dir):
    template = tmp_path / "broken"
    template.mkdir()
    (template / "cookiecutter.json").write_text("{ broken")
    done = run_cli("create", "-t", str(template), "-k", "x", "-d", str(kernels_dir))
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("ERROR: kernels_template_path: cookiecutter failed: ")
    assert os.listdir(kernels_dir) == []


@pytest.mark.parametrize("make", [
    lambda p: (p / "afile").write_text("x") and p / "afile",
    lambda p: (p / "afile").write_text("x") and p / "afile" / "kernels",
], ids=["a-file", "under-a-file"])
def test_kernels_dir_that_cannot_be_a_directory_is_one_error_line(tmp_path, make):
    done = run_cli("create", "-k", "x", "-d", str(make(tmp_path)))
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("ERROR: kernels_dir: cannot write to ")


@pytest.mark.parametrize("args", [["--spark_master", "bad"], ["-e", "/nonexistent/venv"]], ids=["checked-before", "checked-by-the-hook"])
def test_bad_input_leaves_no_kernels_dir_it_would_have_created(tmp_path, args):
    deep = tmp_path / "new" / "deep" / "kernels"
    done = run_cli("create", "-k", "x", "-d", str(deep), *args)
    assert done.returncode == 1 and done.stderr.startswith("ERROR: ")
    assert os.listdir(tmp_path) == []


def test_an_environment_that_prints_at_start_is_still_understood(tmp_path, kernels_dir):
    venv = venv_with_project_packages(tmp_path, ())
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "chatty.pth").write_text("import sys; print('hello from a .pth file')\n")
    done = run_cli("create", "-k", "chatty", "-d", str(kernels_dir), "-e", str(venv))
    assert done.returncode == 0, done.stderr
    assert read_spec(kernels_dir / "chatty")["argv"][0] == str(venv / "bin" / "python")


def test_a_forked_template_adds_its_own_cluster_profile(tmp_path, kernels_dir):
    fork = tmp_path / "fork"
    shutil.copytree(ROOT, fork, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "__pycache__", "*.egg-info"))
    (fork / "profiles" / "team-yarn.conf").write_text('include "yarn.conf"\nspark.conf { "spark.yarn.queue" = "team" }\nexecutor.python = "/opt/team/bin/python"\n')
    done = run_cli("create", "-t", str(fork), "-k", "team-yarn", "-d", str(kernels_dir), "--profile", "team-yarn")
    assert done.returncode == 0, done.stderr
    spec = read_spec(kernels_dir / "team-yarn")
    conf = spark_conf_of(spec)
    assert (conf["spark.master"], conf["spark.yarn.queue"], kernel_env(spec)["PYSPARK_PYTHON"]) == ("yarn", "team", "/opt/team/bin/python")


SECRET_VALUE = "s3cr3t-Value-that-must-not-leak"


@pytest.mark.parametrize("args, field", [
    (["--spark.hadoop.fs.s3a.secret.key", SECRET_VALUE], "spark_conf"),
    (["--spark.ssl.keyStorePassword", SECRET_VALUE], "spark_conf"),
    (["--spark.authenticate.secret", SECRET_VALUE], "spark_conf"),
    (["--env", f"MY_TOKEN={SECRET_VALUE}"], "env"),
    (["--env", f"DB_PASSWORD={SECRET_VALUE}"], "env"),
    (["--env", f"GOOGLE_APPLICATION_CREDENTIALS_JSON={SECRET_VALUE}"], "env"),
], ids=lambda v: v[0] if isinstance(v, list) else v)
def test_secrets_in_plain_text_are_refused_with_the_fix(kernels_dir, args, field):
    done = run_cli("create", "-k", "leaky", "-d", str(kernels_dir), *args)
    assert done.returncode == 1
    assert done.stderr.startswith(f"ERROR: {field}: ") and "holds a secret" in done.stderr
    assert ("${env:NAME}" in done.stderr) if field == "spark_conf" else ("--env-from" in done.stderr)
    assert os.listdir(kernels_dir) == []


def test_secrets_by_reference_never_reach_a_generated_file(kernels_dir, tmp_path):
    env = {**os.environ, "MY_TOKEN": SECRET_VALUE, "S3_SECRET": SECRET_VALUE}
    done = run_cli("create", "-k", "safe", "-d", str(kernels_dir), "--env-from", "MY_TOKEN",
                   "--spark.hadoop.fs.s3a.secret.key", "${env:S3_SECRET}", env=env)
    assert done.returncode == 0, done.stderr
    for relative, content in tree_snapshot(kernels_dir).items():
        assert SECRET_VALUE.encode() not in content, relative
    spec = read_spec(kernels_dir / "safe")
    assert spec["env"]["MY_TOKEN"] == "${MY_TOKEN}"  # jupyter_client fills it in when the kernel starts
    assert kernel_environment(spec["env"], env)["MY_TOKEN"] == SECRET_VALUE
    assert spark_conf_of(spec)["spark.hadoop.fs.s3a.secret.key"] == "${env:S3_SECRET}"


def test_a_teams_config_file_sets_its_cluster_defaults(tmp_path):
    """cookiecutter --config-file with default_context: the team's defaults, no prompts."""
    config = tmp_path / "team.yaml"
    config.write_text("default_context:\n  kernel_name: team-etl\n  spark_master: local[3]\n  spark_init: lazy\n")
    out = tmp_path / "kernels"
    done = subprocess.run([os.path.join(VENV_DIR, "bin", "cookiecutter"), ROOT, "--no-input", "--config-file", str(config), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spec = read_spec(out / "team-etl")
    assert spark_conf_of(spec)["spark.master"] == "local[3]"
    assert json.loads(kernel_env(spec)["PYSPARK_KERNEL_OPTIONS"])["init"] == "lazy"


def test_replay_regenerates_the_last_kernel(tmp_path):
    """cookiecutter --replay: the same answers again, for a kernel lost or to rebuild after an upgrade."""
    config = tmp_path / "config.yaml"
    config.write_text(f"replay_dir: {tmp_path / 'replay'}\ncookiecutters_dir: {tmp_path / 'cc'}\n")
    out = tmp_path / "kernels"
    cookiecutter = os.path.join(VENV_DIR, "bin", "cookiecutter")
    first = subprocess.run([cookiecutter, ROOT, "--no-input", "--config-file", str(config), "-o", str(out), "kernel_name=again", "spark_master=local[2]"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    original = (out / "again" / "kernel.json").read_text()
    shutil.rmtree(out / "again")
    replay = subprocess.run([cookiecutter, ROOT, "--replay", "--config-file", str(config), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert (out / "again" / "kernel.json").read_text() == original


def test_verbose_create_shows_cookiecutters_steps_and_ours(kernels_dir):
    done = run_cli("create", "-k", "loud", "-e", VENV_DIR, "-d", str(kernels_dir), "--verbose")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"Installed kernel loud in {kernels_dir / 'loud'}"
    for step in ("cookiecutter.", "environment found", "layers merged", "spark home resolved", "spec validated", "kernel.json and the runtime written", "moved into place"):
        assert step in done.stderr, step


def test_create_without_verbose_says_one_line_and_nothing_on_stderr(kernels_dir):
    done = run_cli("create", "-k", "quiet", "-e", VENV_DIR, "-d", str(kernels_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"Installed kernel quiet in {kernels_dir / 'quiet'}"]
    assert done.stderr == ""


def test_sql_rows_reaches_the_kernels_options(kernels_dir):
    done = run_cli("create", "-k", "rows", "-e", VENV_DIR, "-d", str(kernels_dir), "--sql_rows", "5")
    assert done.returncode == 0, done.stderr
    assert json.loads(read_spec(kernels_dir / "rows")["env"]["PYSPARK_KERNEL_OPTIONS"])["sql_rows"] == 5


@pytest.mark.parametrize("rows", ["0", "-3", "many", "2.5"])
def test_bad_sql_rows_is_one_error_line(kernels_dir, rows):
    done = run_cli("create", "-k", "rows", "-e", VENV_DIR, "-d", str(kernels_dir), f"--sql_rows={rows}")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f'ERROR: sql_rows: "{rows}" is not a whole number above 0 (give a number such as 20)\n'
    assert os.listdir(kernels_dir) == []
