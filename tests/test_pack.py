"""The packed executor environment on its own: a virtualenv and the interpreter it was made from,
unpacked somewhere else, runs where neither the environment nor that interpreter exists."""

import os
import subprocess
import sys
import tarfile

import pytest

from pyspark_kernel.runtime.envpack import pack_with_interpreter


@pytest.fixture
def small_venv(tmp_path):
    venv = tmp_path / "made-here"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "only_here.py").write_text("WHERE = 'shipped'\n")
    # What no executor reads: Spark's jars and the completer's type stubs.
    for path in ("pyspark/jars/spark-core.jar", "jedi/third_party/typeshed/stdlib/os.pyi"):
        (site / path).parent.mkdir(parents=True)
        (site / path).write_text("")
    (site / "jedi" / "__init__.py").write_text("")
    return venv


def unpack(archive, target):
    target.mkdir(parents=True)
    with tarfile.open(archive) as packed:
        packed.extractall(target, filter="tar" if hasattr(tarfile, "tar_filter") else None)
    return target / "bin" / "python"


def test_the_archive_holds_the_interpreter_and_no_link_out_of_it(tmp_path, small_venv):
    archive = tmp_path / "environment.tar.gz"
    pack_with_interpreter(str(small_venv), str(archive))
    with tarfile.open(archive) as packed:
        members = {member.name: member for member in packed.getmembers()}
    version = "%d.%d" % sys.version_info[:2]
    assert f"bin/python{version}-shipped" in members and f"lib/python{version}/os.py" in members
    assert f"lib/python{version}/site-packages/only_here.py" in members and "pyvenv.cfg" not in members
    assert not [name for name in members if "/test/" in name or "__pycache__" in name or "/pyspark/jars/" in name or "/typeshed/" in name]
    assert f"lib/python{version}/site-packages/jedi/__init__.py" in members
    links = {name: member.linkname for name, member in members.items() if member.issym() or member.islnk()}
    assert all(not target.startswith("/") for target in links.values()), links


@pytest.mark.skipif(os.geteuid() != 0, reason="hiding the base interpreter needs a mount namespace: root (CI runs as root)")
def test_the_unpacked_environment_runs_where_its_base_interpreter_is_hidden(tmp_path, small_venv):
    archive = tmp_path / "environment.tar.gz"
    pack_with_interpreter(str(small_venv), str(archive))
    python = unpack(archive, tmp_path / "elsewhere" / "environment")
    hide = " && ".join(f"mount -t tmpfs none {path}" for path in (sys.base_prefix, small_venv))
    code = "import sys, ssl, sqlite3, decimal, only_here; print(sys.prefix, only_here.WHERE)"
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", f'{hide} && exec "$@"', "sh", str(python), "-c", code],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "elsewhere" / "environment"), "shipped"]
