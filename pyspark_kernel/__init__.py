"""pyspark-kernel: turn a Python environment and a Spark configuration into a Jupyter kernel.

Kept free of third-party imports: the cookiecutter hooks import this package from the template
root before they know pyhocon and jsonschema are installed.
"""

__version__ = "0.1.0"
