"""runtime.address: the address a cluster reaches the driver at, and where a local driver listens."""

import pytest

from pyspark_kernel.runtime import address


@pytest.mark.parametrize("settings, environ, expected", [
    ({"spark.master": "local[*]", "spark.driver.bindAddress": "127.0.0.1"}, {}, {"SPARK_LOCAL_IP": "127.0.0.1"}),
    ({"spark.master": "local[2]", "spark.driver.bindAddress": "0.0.0.0"}, {}, {"SPARK_LOCAL_IP": "0.0.0.0"}),  # the user's bind address
    ({"spark.master": "local[*]", "spark.driver.bindAddress": "127.0.0.1"}, {"SPARK_LOCAL_IP": "10.0.0.5"}, {}),  # the user's SPARK_LOCAL_IP stands
    ({"spark.master": "local[*]"}, {}, {}),
    ({"spark.master": "spark://10.0.0.1:7077", "spark.driver.bindAddress": "0.0.0.0"}, {}, {}),  # a cluster's driver: Spark's choice
    ({"spark.master": "yarn"}, {}, {}),
], ids=["local", "local-own-bind-address", "local-own-spark-local-ip", "local-no-bind-address", "standalone", "yarn"])
def test_a_local_drivers_ui_listens_on_its_bind_address(settings, environ, expected):
    assert address.jvm_environment(settings, environ) == expected


def test_a_standalone_master_on_loopback_is_reached_from_loopback():
    assert address.driver_host("spark://127.0.0.1:7077", {}, {}) == "127.0.0.1"


@pytest.mark.parametrize("master, conf, environ", [
    ("local[*]", {}, {}),
    ("spark://127.0.0.1:7077", {"spark.driver.host": "10.0.0.2"}, {}),
    ("spark://127.0.0.1:7077", {}, {"SPARK_LOCAL_IP": "10.0.0.2"}),
    ("sc://127.0.0.1:15002", {}, {}),
], ids=["local", "given", "spark-local-ip", "connect"])
def test_the_kernel_leaves_the_address_alone_where_it_is_not_its_to_choose(master, conf, environ):
    assert address.driver_host(master, conf, environ) is None
