"""Jinja extension of the template: where it lives, where cookiecutter started, an early check of
the kernel name, and the chosen profile's master as the spark_master prompt's default.

Cookiecutter runs hooks from a temporary file, with the generated directory as the working
directory, and gives them the template path as the user typed it (often relative). The hooks need
the absolute path to import the pyspark_kernel package beside this file, and the directory the
user started in to make sense of a relative venv_dir (cookiecutter changes directory later on).
"""

import os
import sys

from jinja2.ext import Extension

TEMPLATE_ROOT = os.path.dirname(os.path.abspath(__file__))
# Taken when cookiecutter first imports this module, before it changes directory.
LAUNCH_DIR = os.getcwd()


def kernel_name_or_exit(name):
    """Cookiecutter creates the kernel directory before any hook runs and deletes it when a hook
    fails; for a name like "x/.." that would be the kernels directory itself. So the name is
    checked here, while cookiecutter renders the answers, before it creates anything."""
    sys.path.insert(0, TEMPLATE_ROOT)
    try:
        from pyspark_kernel.errors import InputError
        from pyspark_kernel.validate import check_kernel_name
    finally:
        sys.path.remove(TEMPLATE_ROOT)
    try:
        return check_kernel_name(name)
    except InputError as error:
        print(error, file=sys.stderr)
        raise SystemExit(1) from None


def profile_master(profile):
    """The default of the spark_master prompt: the master the chosen profile sets."""
    sys.path.insert(0, TEMPLATE_ROOT)
    try:
        from pyspark_kernel.errors import InputError
        from pyspark_kernel.hooks import require_dependencies
        try:
            require_dependencies()
            from pyspark_kernel.build import profile_master as master_of

            return master_of(profile, os.path.join(TEMPLATE_ROOT, "profiles"))
        except InputError as error:
            print(error, file=sys.stderr)
            raise SystemExit(1) from None
    finally:
        sys.path.remove(TEMPLATE_ROOT)


class TemplateRoot(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["template_root"] = TEMPLATE_ROOT
        environment.globals["launch_dir"] = LAUNCH_DIR
        environment.filters["kernel_name_or_exit"] = kernel_name_or_exit
        environment.filters["profile_master"] = profile_master
