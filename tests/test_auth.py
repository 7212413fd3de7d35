"""runtime.auth: which drivers' RPC and block transfers need a secret (spark.authenticate), and
what %spark status and doctor say. The end-to-end side is tests/test_rpc_access.py."""

import pytest

from pyspark_kernel.runtime import auth
from pyspark_kernel.runtime.driver_server import server_settings

ON = {"spark.authenticate": "true"}


@pytest.mark.parametrize("settings, added", [
    ({}, ON),  # no master: Spark's local[*]
    ({"spark.master": "local[*]"}, ON),
    ({"spark.master": "local[2,3]"}, ON),
    ({"spark.master": "spark://h:7077"}, {}),  # the cluster's secret is needed, and not given
    ({"spark.master": "spark://h:7077", "spark.authenticate.secret": "${env:S}"}, ON),
    ({"spark.master": "yarn"}, {}),
    ({"spark.master": "k8s://https://h:6443"}, {}),
    ({"spark.master": "local[*]", "spark.authenticate": "false"}, {}),  # the kernel's own choice stands
], ids=["default", "local", "local-failures", "standalone", "standalone-secret", "yarn", "kubernetes", "forced-off"])
def test_auth_settings_by_master(settings, added):
    assert auth.auth_settings(settings) == added


def test_the_shared_driver_authenticates_unless_told_not_to():
    assert server_settings({}, "/s", 1, 2, "WARN")["spark.authenticate"] == "true"
    assert server_settings({"spark.authenticate": "false"}, "/s", 1, 2, "WARN")["spark.authenticate"] == "false"


def test_status_says_what_is_authenticated_and_the_fix_when_not():
    assert auth.status_line({"spark.master": "local[*]"}) == "RPC authentication: on: the driver's RPC and block transfers need a secret Spark makes for each session"
    standalone = auth.describe({"spark.master": "spark://h:7077"})
    assert not standalone.on and standalone.problem and standalone.fix == auth.SECRET_FIX
    assert auth.describe({"spark.master": "spark://h:7077", "spark.authenticate.secret": "${env:S}"}).text.endswith("need the cluster's secret")
    yarn = auth.describe({"spark.master": "yarn"})
    assert not yarn.on and not yarn.problem and "--spark.authenticate=true" in yarn.fix
    forced = auth.describe({"spark.authenticate": "False"})
    assert not forced.on and forced.problem and "spark.authenticate=false" in forced.fix
