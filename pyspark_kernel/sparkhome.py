"""Find SPARK_HOME and py4j for a Python environment, the way Spark itself lays them out.

Two layouts exist: pip's (SPARK_HOME is the pyspark package directory, py4j an installed package)
and a Spark distribution's (``python/`` plus ``python/lib/py4j-<version>-src.zip``). The py4j
version is read from what is there, never assumed: kernels that hard-code it break on upgrade.
"""

import glob
import os
import re
from dataclasses import dataclass

from .errors import InputError, quote
from .runtime.versionfile import package_version

PY4J_ZIP = re.compile(r"py4j-([0-9][0-9A-Za-z.+-]*)-src\.zip")


@dataclass(frozen=True)
class SparkInstall:
    home: str
    layout: str  # "pip" or "distribution"
    spark_version: str
    py4j_version: str
    pythonpath: tuple = ()  # entries the kernel needs in front of its own site-packages


def read_spark_version(pyspark_dir: str) -> str:
    found = package_version(pyspark_dir)
    if found is None:
        raise InputError("spark_home", f"no pyspark/version.py under {quote(pyspark_dir)}", "point spark_home at a complete Spark installation")
    return found


PYTHON_REQUIRES = re.compile(r"""python_requires\s*=\s*["']([^"']+)["']""")


def check_python_supported(requirement: str | None, python_env, spark_version: str) -> None:
    """The kernel's Python must be one this pyspark supports: the executors would fail on it."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        supported = SpecifierSet(requirement) if requirement else None
    except InvalidSpecifier:
        supported = None
    if supported is not None and python_env.python_version not in supported:
        raise InputError("venv_dir", f"Python {python_env.python_version} is not one Spark {spark_version} supports ({requirement})",
                         "use an environment with a supported Python, or a Spark version that supports this one")


def distribution_requires_python(home: str) -> str | None:
    try:
        with open(os.path.join(home, "python", "setup.py"), encoding="utf-8") as handle:
            found = PYTHON_REQUIRES.search(handle.read())
    except OSError:
        return None
    return found.group(1) if found else None


def find_py4j_zip(home: str) -> tuple[str, str]:
    lib = os.path.join(home, "python", "lib")
    zips = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(lib), "py4j-*-src.zip")))
    if not zips:
        raise InputError("spark_home", f"no py4j-*-src.zip in {quote(lib)}", "point spark_home at a complete Spark distribution")
    if len(zips) > 1:
        raise InputError("spark_home", f"{len(zips)} py4j archives in {quote(lib)}: {', '.join(zips)}", "remove all but the one your Spark version ships")
    version = PY4J_ZIP.fullmatch(zips[0])
    if not version:
        raise InputError("spark_home", f"{zips[0]} in {quote(lib)} has no version in its name", "restore the py4j archive your Spark version ships")
    return os.path.join(lib, zips[0]), version.group(1)


def describe(home: str, python_env) -> SparkInstall:
    """The Spark installation at ``home`` as the kernel's Python would use it."""
    if not os.path.isfile(os.path.join(home, "bin", "spark-submit")):
        raise InputError("spark_home", f"{quote(home)} has no bin/spark-submit", "point spark_home at a Spark distribution or a pip-installed pyspark directory")
    if os.path.isfile(os.path.join(home, "python", "pyspark", "__init__.py")):
        py4j_zip, py4j_version = find_py4j_zip(home)
        spark_version = read_spark_version(os.path.join(home, "python", "pyspark"))
        check_python_supported(distribution_requires_python(home), python_env, spark_version)
        return SparkInstall(
            home=home,
            layout="distribution",
            spark_version=spark_version,
            py4j_version=py4j_version,
            pythonpath=(os.path.join(home, "python"), py4j_zip),
        )
    if os.path.isfile(os.path.join(home, "__init__.py")) and os.path.isdir(os.path.join(home, "jars")):
        imported = python_env.pyspark_dir and os.path.realpath(python_env.pyspark_dir)
        if imported != os.path.realpath(home):
            raise InputError("spark_home", f"{quote(home)} is a pip-installed pyspark that venv_dir's Python does not import", "leave spark_home empty to use venv_dir's own pyspark")
        if not python_env.py4j:
            raise InputError("venv_dir", f"{quote(python_env.prefix)} has pyspark but no py4j", f"{python_env.python} -m pip install --force-reinstall pyspark")
        check_python_supported(python_env.pyspark_requires_python, python_env, read_spark_version(home))
        return SparkInstall(home=home, layout="pip", spark_version=read_spark_version(home), py4j_version=python_env.py4j)
    raise InputError("spark_home", f"{quote(home)} is neither a Spark distribution nor a pip-installed pyspark", "point spark_home at the directory holding bin/spark-submit and python/ (or jars/)")


def client_only(python_env) -> SparkInstall:
    """A Spark Connect kernel needs no Spark installation: pyspark-client (pyspark without jars) is
    enough, and the server runs the JVM."""
    if python_env.pyspark_dir and os.path.isfile(os.path.join(python_env.pyspark_dir, "__init__.py")):
        return SparkInstall(home=python_env.pyspark_dir, layout="client", spark_version=read_spark_version(python_env.pyspark_dir), py4j_version="none")
    raise InputError("venv_dir", f"{quote(python_env.prefix)} has no pyspark", f"{python_env.python} -m pip install 'pyspark[connect]' (or pyspark-client)")


def resolve(spark_home: str, python_env, environ=None) -> SparkInstall:
    """SPARK_HOME for the kernel: the answer, else the pyspark installed in venv_dir, else $SPARK_HOME."""
    environ = os.environ if environ is None else environ
    if spark_home:
        return describe(os.path.abspath(os.path.expanduser(spark_home)), python_env)
    pyspark_dir = python_env.pyspark_dir
    if pyspark_dir and os.path.isfile(os.path.join(pyspark_dir, "bin", "spark-submit")):
        return describe(pyspark_dir, python_env)
    if environ.get("SPARK_HOME"):
        return describe(os.path.abspath(environ["SPARK_HOME"]), python_env)
    raise InputError("spark_home", f"no Spark found: {quote(python_env.prefix)} has no pyspark and SPARK_HOME is not set",
                     f"{python_env.python} -m pip install pyspark, or set spark_home to a Spark distribution")
