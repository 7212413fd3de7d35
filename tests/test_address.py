"""runtime.address: the address a cluster reaches the driver at, where a local driver listens, and
the ResourceManager's addresses read from a Hadoop client configuration as Hadoop does: a host name
alone, full addresses, an HA set, ${...} references (fast: files only)."""

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


def hadoop_conf(directory, **files):
    """``directory`` with one Hadoop configuration file per keyword (yarn_site= -> yarn-site.xml)."""
    directory.mkdir(exist_ok=True)
    for name, properties in files.items():
        entries = "".join(f"<property><name>{key}</name><value>{value}</value></property>\n" for key, value in properties.items())
        (directory / f"{name.replace('_', '-')}.xml").write_text(f"<?xml version='1.0'?>\n<configuration>\n{entries}</configuration>\n")
    return {"HADOOP_CONF_DIR": str(directory)}


def test_a_host_name_alone_gives_yarns_default_ports(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.hostname": "rm.example"})
    assert address.resource_manager(env) == ("rm.example", 8032)
    assert address.resource_manager(env, web=True) == ("rm.example", 8088)
    assert address.web_scheme(env) == "http"


def test_full_addresses_win_over_the_host_name(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.hostname": "rm.example", "yarn.resourcemanager.address": "rpc.example:9032",
                                                    "yarn.resourcemanager.webapp.address": "web.example:9088"})
    assert address.resource_manager(env) == ("rpc.example", 9032)
    assert address.resource_manager(env, web=True) == ("web.example", 9088)


def test_a_wildcard_address_takes_the_host_name_and_keeps_its_port(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.hostname": "rm.example", "yarn.resourcemanager.webapp.address": "0.0.0.0:18088"})
    assert address.resource_manager(env, web=True) == ("rm.example", 18088)


def test_https_only_uses_the_https_web_address(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.hostname": "rm.example", "yarn.http.policy": "HTTPS_ONLY"})
    assert address.web_scheme(env) == "https"
    assert address.resource_manager(env, web=True) == ("rm.example", 8090)


def test_an_ha_set_gives_each_resource_manager_in_rm_ids_order(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={
        "yarn.resourcemanager.ha.enabled": "true", "yarn.resourcemanager.ha.rm-ids": "rm2, rm1",
        "yarn.resourcemanager.hostname.rm1": "one.example", "yarn.resourcemanager.hostname.rm2": "two.example",
        "yarn.resourcemanager.webapp.address.rm1": "one.example:8188",
    })
    assert address.resource_managers(env) == [("two.example", 8032), ("one.example", 8032)]
    assert address.resource_managers(env, web=True) == [("two.example", 8088), ("one.example", 8188)]
    assert address.resource_manager(env) == ("two.example", 8032)  # the first one, for the driver's route


def test_ha_ids_without_ha_enabled_are_ignored(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.ha.rm-ids": "rm1,rm2", "yarn.resourcemanager.hostname": "single.example"})
    assert address.resource_managers(env) == [("single.example", 8032)]


def test_references_resolve_within_the_files_and_from_the_environment(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={
        "cluster.domain": "corp.example", "yarn.resourcemanager.hostname": "rm.${cluster.domain}",
        "yarn.resourcemanager.address": "${yarn.resourcemanager.hostname}:${env.RM_PORT}",
        "yarn.resourcemanager.webapp.address": "${yarn.resourcemanager.hostname}:8088",
    })
    env["RM_PORT"] = "7032"
    assert address.resource_manager(env) == ("rm.corp.example", 7032)
    assert address.resource_manager(env, web=True) == ("rm.corp.example", 8088)


def test_an_unresolved_reference_is_not_taken_for_a_host(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.address": "${rm.host}:8032"})
    with pytest.raises(address.Unknown, match=r"names no ResourceManager \(yarn.resourcemanager.hostname\)"):
        address.resource_manager(env)


def test_the_first_directory_wins(tmp_path):
    env = hadoop_conf(tmp_path / "hadoop", yarn_site={"yarn.resourcemanager.hostname": "hadoop.example"})
    env.update({"YARN_CONF_DIR": hadoop_conf(tmp_path / "yarn", yarn_site={"yarn.resourcemanager.hostname": "yarn.example"})["HADOOP_CONF_DIR"]})
    assert address.resource_manager(env)[0] == "hadoop.example"
    assert address.resource_manager({"YARN_CONF_DIR": env["YARN_CONF_DIR"]})[0] == "yarn.example"


def test_what_is_missing_is_said(tmp_path):
    with pytest.raises(address.Unknown, match="neither HADOOP_CONF_DIR nor YARN_CONF_DIR is set"):
        address.resource_manager({})
    (tmp_path / "empty").mkdir()
    with pytest.raises(address.Unknown, match=f"there is no yarn-site.xml in {tmp_path / 'empty'}"):
        address.resource_manager({"HADOOP_CONF_DIR": str(tmp_path / "empty")})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "yarn-site.xml").write_text("<configuration><property>")
    with pytest.raises(address.Unknown, match="is not readable Hadoop configuration"):
        address.resource_manager({"HADOOP_CONF_DIR": str(tmp_path / "broken")})


def test_ipv6_addresses_keep_their_brackets_off(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.address": "[fd00::1]:8032"})
    assert address.resource_manager(env) == ("fd00::1", 8032)


def test_the_driver_host_is_the_route_source_to_the_resource_manager(tmp_path):
    env = hadoop_conf(tmp_path / "conf", yarn_site={"yarn.resourcemanager.hostname": "127.0.0.1"})
    assert address.driver_host("yarn", {}, env) == "127.0.0.1"  # loopback to a loopback ResourceManager is fine
    assert address.driver_host("yarn", {"spark.driver.host": "10.0.0.5"}, env) is None  # given: Spark's
    assert address.driver_host("yarn", {}, {**env, "SPARK_LOCAL_IP": "10.0.0.5"}) is None
    assert address.driver_host("local[*]", {}, env) is None
    with pytest.raises(address.Unknown, match="does not resolve here"):
        address.driver_host("yarn", {}, hadoop_conf(tmp_path / "bad", yarn_site={"yarn.resourcemanager.hostname": "no-such-host.invalid"}))
