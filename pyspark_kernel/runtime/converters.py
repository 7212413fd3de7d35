"""Py4J's input converters, as PySpark registers them: its numpy converters are asked only once
numpy is imported (UntilNumpy).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import sys
from typing import Any

NUMPY_CONVERTERS = ("NumpyArrayConverter", "NumpyScalarConverter")  # PySpark 4's, in pyspark.sql.types


class UntilNumpy:
    """One of PySpark's numpy input converters, asked only once numpy is imported. Py4J asks every
    input converter about every argument of every call into the JVM, and to answer, Spark 4's
    numpy converters import pyspark.testing, and with it numpy, pandas and pyarrow: about a
    second of CPU and 85 MiB in the kernel, spent at the start, before any cell asks for them.
    No object is a numpy array or scalar while numpy is not imported, so until then the answer
    is no, at no cost; after, the converter itself answers, and converts."""

    def __init__(self, converter):
        self.converter = converter

    def can_convert(self, value) -> bool:
        return "numpy" in sys.modules and self.converter.can_convert(value)

    def convert(self, value: Any, gateway_client: Any) -> Any:
        return self.converter.convert(value, gateway_client)


def defer_numpy_converters() -> None:
    """Once pyspark.sql is imported (it registers the converters): PySpark's numpy converters
    wait for numpy (UntilNumpy). Other converters, and PySpark versions without these, are left
    as they are."""
    try:
        from py4j import protocol
    except ImportError:  # the launch itself says what is missing
        return
    converters = protocol.INPUT_CONVERTER
    converters[:] = [UntilNumpy(converter) if is_numpy_converter(converter) else converter for converter in converters]


def is_numpy_converter(converter) -> bool:
    return type(converter).__module__ == "pyspark.sql.types" and type(converter).__name__ in NUMPY_CONVERTERS
