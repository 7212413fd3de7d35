"""The warm-up jobs a kernel runs once its session is ready, before the user's first job, each
the first of its kind: a JVM-only job (code loading, query planning), a Python UDF (the SQL
UDFs' worker daemon and its workers, which import pandas and pyarrow), when the environment has
pyarrow an Arrow UDF, and an RDD map (the RDD API's daemon and workers, another pool). Spark keeps
Python workers for reuse (spark.python.worker.reuse) and lets idle ones go after a minute, so the
first Python function of a notebook finds them warm.
Functions are lambdas or nested: cloudpickle sends them by value, as executors cannot import
this package.
"""

import importlib.util
from typing import Any

WORKERS = 4  # at most this many Python workers are started: each costs memory as long as it lives


def partitions(session: Any) -> int:
    return max(1, min(session.sparkContext.defaultParallelism, WORKERS))


def jvm_job(session: Any) -> None:
    session.range(1000).count()


def rdd_map(session: Any) -> None:
    count = partitions(session)
    session.sparkContext.parallelize(range(count), count).map(lambda x: x + 1).collect()


def python_udf(session: Any) -> None:
    from pyspark.sql.functions import udf

    session.range(0, partitions(session), 1, partitions(session)).select(udf(lambda x: x + 1, "long")("id")).collect()


def arrow_udf(session: Any) -> None:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def plus_one(values: pd.Series) -> pd.Series:
        return values + 1

    session.range(0, partitions(session), 1, partitions(session)).select(pandas_udf(plus_one, "long")("id")).collect()


def has_arrow() -> bool:
    """Whether Arrow UDFs can run here: pandas and pyarrow in the kernel's environment."""
    return all(importlib.util.find_spec(name) is not None for name in ("pandas", "pyarrow"))


def dynamic_allocation(context: Any) -> bool:
    """Whether the cluster gives executors on demand: a warm-up would ask for them for nothing."""
    return not context.master.startswith("local") and context.getConf().get("spark.dynamicAllocation.enabled", "false").strip().lower() == "true"
