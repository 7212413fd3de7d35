"""A Jinja extension that tells the hooks where this template lives and where cookiecutter started.

Cookiecutter runs hooks from a temporary file, with the generated directory as the working
directory, and gives them the template path as the user typed it (often relative). The hooks need
the absolute path to import the pyspark_kernel package beside this file, and the directory the
user started in to make sense of a relative venv_dir (cookiecutter changes directory later on).
"""

import os

from jinja2.ext import Extension

# Taken when cookiecutter first imports this module, before it changes directory.
LAUNCH_DIR = os.getcwd()


class TemplateRoot(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["template_root"] = os.path.dirname(os.path.abspath(__file__))
        environment.globals["launch_dir"] = LAUNCH_DIR
