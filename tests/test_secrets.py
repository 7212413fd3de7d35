"""Which settings and variables hold secrets: by whole segments of their names, as Spark's own
spark.redaction.regex, plus cloud credentials; and values that are secrets whatever their name.
Keys from the Hadoop-AWS (S3A), Azure (ABFS/WASB), Google Cloud Storage, Hive metastore/JDBC,
Kafka and Spark security and Kubernetes docs."""

import pytest

from pyspark_kernel.runtime.options import REDACTED, is_secret, shown_value

SECRETS = [
    # Hadoop-AWS (S3A)
    "spark.hadoop.fs.s3a.access.key", "spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.session.token",
    "spark.hadoop.fs.s3a.bucket.nightly.secret.key", "spark.hadoop.fs.s3a.bucket.nightly.access.key", "spark.hadoop.fs.s3a.encryption.key",
    # Azure
    "spark.hadoop.fs.azure.account.key.myaccount.dfs.core.windows.net", "spark.hadoop.fs.azure.account.key.myaccount.blob.core.windows.net",
    "spark.hadoop.fs.azure.account.oauth2.client.secret.myaccount.dfs.core.windows.net", "spark.hadoop.fs.azure.sas.mycontainer.myaccount.blob.core.windows.net",
    "spark.hadoop.fs.azure.sas.fixed.token.myaccount.dfs.core.windows.net",
    # Google Cloud Storage
    "spark.hadoop.fs.gs.auth.service.account.private.key", "spark.hadoop.fs.gs.auth.service.account.private.key.id",
    # Hive metastore, JDBC
    "spark.hadoop.javax.jdo.option.ConnectionPassword", "spark.sql.catalog.pg.password",
    # Kafka
    "spark.kafka.clusters.c1.ssl.truststore.password", "spark.kafka.clusters.c1.ssl.keystore.password", "spark.kafka.clusters.c1.ssl.key.password",
    # Spark security, Kubernetes, Connect, other stores
    "spark.ssl.keyStorePassword", "spark.ssl.trustStorePassword", "spark.ssl.keyPassword", "spark.authenticate.secret",
    "spark.kubernetes.authenticate.oauthToken", "spark.kubernetes.authenticate.driver.oauthToken", "spark.connect.authenticate.token",
    "spark.hadoop.fs.cosn.userinfo.secretKey", "spark.hadoop.fs.oss.accessKeySecret",
    # environment variables
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET", "GITHUB_TOKEN", "DB_PASSWORD", "PGPASSWORD", "GOOGLE_APPLICATION_CREDENTIALS_JSON", "OPENAI_API_KEY",
]

NOT_SECRETS = [
    "spark.hadoop.fs.s3a.aws.credentials.provider", "spark.hadoop.fs.s3a.assumed.role.credentials.provider",
    "spark.hadoop.fs.s3a.bucket.nightly.aws.credentials.provider", "spark.security.credentials.hive.enabled",
    "spark.hadoop.hadoop.security.credential.provider.path", "spark.hadoop.fs.s3a.endpoint", "spark.hadoop.fs.s3a.server-side-encryption-algorithm",
    "spark.hadoop.fs.s3a.encryption.algorithm", "spark.hadoop.fs.azure.account.auth.type.myaccount.dfs.core.windows.net",
    "spark.hadoop.fs.azure.account.oauth.provider.type.myaccount.dfs.core.windows.net",
    "spark.hadoop.fs.azure.account.oauth2.client.id.myaccount.dfs.core.windows.net",
    "spark.hadoop.fs.azure.account.oauth2.client.endpoint.myaccount.dfs.core.windows.net", "spark.hadoop.fs.azure.account.keyprovider.myaccount",
    "spark.hadoop.google.cloud.auth.service.account.json.keyfile", "spark.hadoop.fs.gs.auth.service.account.enable",
    "spark.hadoop.javax.jdo.option.ConnectionUserName", "spark.hadoop.javax.jdo.option.ConnectionDriverName",
    "spark.kafka.clusters.c1.ssl.truststore.location", "spark.kafka.clusters.c1.auth.bootstrap.servers", "spark.kafka.clusters.c1.security.protocol",
    "spark.ssl.keyStore", "spark.ssl.enabled", "spark.authenticate", "spark.authenticate.enableSaslEncryption", "spark.io.encryption.keySizeBits",
    "spark.io.encryption.enabled", "spark.kubernetes.authenticate.driver.oauthTokenFile", "spark.kubernetes.authenticate.caCertFile",
    "spark.kubernetes.driver.secrets.spark-secret", "spark.kubernetes.driver.secretKeyRef.DB_PASS", "spark.yarn.keytab", "spark.kerberos.keytab",
    "spark.yarn.principal", "spark.sql.shuffle.partitions", "spark.executor.memory",
    "HADOOP_CONF_DIR", "GOOGLE_APPLICATION_CREDENTIALS", "KUBECONFIG", "AWS_REGION", "AWS_PROFILE", "JAVA_HOME",
]


@pytest.mark.parametrize("name", SECRETS)
def test_a_secret_is_known_by_its_name(name):
    assert is_secret(name, "anything")
    assert shown_value(name, "s3cr3t") == REDACTED


@pytest.mark.parametrize("name", NOT_SECRETS)
def test_a_setting_about_secrets_is_not_one(name):
    assert not is_secret(name, "/some/path/or/value")
    assert shown_value(name, "plain") == "plain"


@pytest.mark.parametrize("value", [
    "postgres://etl:hunter2@db.internal:5432/warehouse", "jdbc:mysql://u:p@h/db", "https://user:token@git.example/repo.git",
    'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";',
    "-----BEGIN PRIVATE KEY-----\nMIIE...", '{"type": "service_account", "private_key": "..."}',
])
def test_a_value_that_is_a_secret_whatever_its_name(value):
    assert is_secret("DATABASE_URL", value) and is_secret("spark.sql.catalog.x.uri", value)


@pytest.mark.parametrize("value", ["postgres://db.internal:5432/warehouse", "https://example.org/a:b", "s3a://bucket/path", "local[*]"])
def test_a_url_without_a_password_is_not_a_secret(value):
    assert not is_secret("DATABASE_URL", value)


def test_the_tables_cover_the_docs():
    assert len(SECRETS) >= 30 and len(NOT_SECRETS) >= 30


# That smoke's artifacts never hold a secret's value (a variable from the server's environment, a
# ${env:...} setting): tests/test_e2e.py::test_nasty_values_arrive_in_spark_unchanged_and_smokes_artifacts_hold_no_secret,
# on the kernel that smoke starts there anyway.
