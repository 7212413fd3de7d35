"""Build hook: a wheel carries the cookiecutter template as package data, so that
`pip install` / `pipx install` gives a `pyspark-kernel create` that works. In a checkout, the
repository root is the template itself (`cookiecutter .`)."""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = ["cookiecutter.json", "local_extensions.py", "defaults.conf", "hooks", "profiles", "schema", "{{cookiecutter.kernel_name}}"]


class BuildWithTemplate(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "pyspark_kernel", "_template")
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        for entry in TEMPLATE:
            source = os.path.join(ROOT, entry)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(target, entry), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, target)


setup(cmdclass={"build_py": BuildWithTemplate})
