"""`EncryptedAurora` (D1-D7) and the database config checks: exact inputs under mocks."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.database import (
    EncryptedAurora,
    EncryptedAuroraArgs,
    connections_alarm_threshold,
    default_max_connections,
    instance_zones,
)
from components.firewall import RoleSecurityGroup
from components.windows import window_span, windows_overlap
from offline.engine import ACCOUNT_ID, AURORA_NEWEST_MINORS, run_components, run_stack
from stack_config import ConfigError
from tests.infra import expect
from tests.infra.expect import REGION, SUBNETS, TOPIC, ZONES, key

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
# The mocks name the RDS-managed secret after the cluster id, as RDS does (rds!cluster-...).
SECRET_ARN = (
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:rds!cluster-media-aurora-test-XyZ012"
)


def aurora_args(namer, context, **overrides: Any) -> EncryptedAuroraArgs:
    return EncryptedAuroraArgs(**{**expect.placement(namer, context, "database"), **overrides})


def build(namer, context, *, peers: int = 0, grant: bool = False, **overrides: Any):
    made: dict[str, Any] = {}

    def program():
        db = EncryptedAurora("db", aurora_args(namer, context, **overrides))
        made["db"] = db
        if peers:
            peer = expect.Peer(namer, "worker")
            made["peer"] = peer
            db.allow_from(peer.sg)
        if grant:
            role = aws.iam.Role("reader-role", assume_role_policy="{}")
            made["policy"] = db.grant_secret_read("reader-db-secret", role)

    run = run_components(program, region=REGION)
    return run, made


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    """The default build, shared by the tests that only read it."""
    return build(module_namer, module_context)[0]


def cluster_of(run):
    return run.one(CLUSTER, "db-cluster").inputs


def instances_of(run):
    return sorted(run.of_type(INSTANCE), key=lambda r: r.inputs["identifier"])


# -- D1 Serverless v2 ----------------------------------------------------------------------


def test_d1_cluster_is_aurora_postgresql_serverless_v2_with_explicit_identifier(run):
    cluster = cluster_of(run)
    assert cluster["clusterIdentifier"] == "media-aurora-test"
    assert cluster["engine"] == "aurora-postgresql"
    assert cluster["engineMode"] == "provisioned"
    # The default names a major: RDS's newest minor of it (the mocks offer 16.9).
    assert cluster["engineVersion"] == AURORA_NEWEST_MINORS["16"] == "16.9"
    assert cluster["serverlessv2ScalingConfiguration"] == {"minCapacity": 0.5, "maxCapacity": 4}
    assert cluster["databaseName"] == "media"
    assert cluster["masterUsername"] == "dbadmin"
    assert cluster["port"] == 5432
    # Pitfall 43: RDS always picks three zones; naming fewer replaces the cluster later.
    assert "availabilityZones" not in cluster


def test_d1_capacity_and_version_come_from_args(namer, context):
    run, _ = build(namer, context, engine_version="15.8", min_capacity=2, max_capacity=32)
    cluster = cluster_of(run)
    assert cluster["engineVersion"] == "15.8"
    assert cluster["serverlessv2ScalingConfiguration"] == {"minCapacity": 2, "maxCapacity": 32}
    assert (
        run.one("aws:rds/clusterParameterGroup:ClusterParameterGroup").inputs["family"]
        == "aurora-postgresql15"
    )


def test_d1_minimum_of_zero_pauses_the_idle_cluster_after_the_configured_delay(namer, context):
    """Issue "Operate" item 2: dev may scale to 0 ACUs; the delay is sent only then."""
    run, _ = build(namer, context, min_capacity=0, max_capacity=2, auto_pause_seconds=1800)
    assert cluster_of(run)["serverlessv2ScalingConfiguration"] == {
        "minCapacity": 0,
        "maxCapacity": 2,
        "secondsUntilAutoPause": 1800,
    }


def test_d1_pinned_minor_with_auto_pause_is_accepted_from_its_first_minor(namer, context):
    run, _ = build(namer, context, engine_version="16.3", min_capacity=0)
    assert cluster_of(run)["serverlessv2ScalingConfiguration"]["secondsUntilAutoPause"] == 3600


# -- D2 multi-AZ ---------------------------------------------------------------------------


def test_d2_writer_in_first_zone_reader_in_next_with_promotion_tiers(run):
    writer, reader = instances_of(run)
    assert (writer.name, writer.inputs["availabilityZone"], writer.inputs["promotionTier"]) == (
        "db-writer",
        "eu-central-1a",
        0,
    )
    assert (reader.name, reader.inputs["availabilityZone"], reader.inputs["promotionTier"]) == (
        "db-reader-1",
        "eu-central-1b",
        1,
    )
    # The first instance up becomes the writer, so readers are created after it.
    assert writer.urn in reader.dependencies


def test_d2_three_zones_two_readers_each_in_its_own_zone(namer, context):
    run, _ = build(namer, context, subnet_ids=SUBNETS, availability_zones=ZONES, reader_count=2)
    placed = [
        (i.inputs["identifier"], i.inputs["availabilityZone"], i.inputs["promotionTier"])
        for i in instances_of(run)
    ]
    assert placed == [
        ("media-aurora-1-test", "eu-central-1a", 0),
        ("media-aurora-2-test", "eu-central-1b", 1),
        ("media-aurora-3-test", "eu-central-1c", 1),
    ]


def test_d2_more_readers_than_zones_go_round_robin():
    assert instance_zones(["a", "b"], 3) == ["a", "b", "a", "b"]
    assert instance_zones(["a", "b", "c"], 1) == ["a", "b"]


def test_d2_instances_are_serverless_private_and_in_the_cluster(run):
    for instance in instances_of(run):
        inputs = instance.inputs
        assert inputs["instanceClass"] == "db.serverless"
        assert inputs["engine"] == "aurora-postgresql"
        assert inputs["engineVersion"] == "16.9"
        assert inputs["clusterIdentifier"] == "media-aurora-test"
        assert inputs["publiclyAccessible"] is False


# -- D3 backups ----------------------------------------------------------------------------


def test_d3_backups_and_windows_from_args(namer, context):
    run, _ = build(
        namer,
        context,
        backup_retention_days=35,
        backup_window="04:00-05:00",
        maintenance_window="mon:01:00-mon:02:00",
    )
    cluster = cluster_of(run)
    assert cluster["backupRetentionPeriod"] == 35
    assert cluster["preferredBackupWindow"] == "04:00-05:00"
    assert cluster["preferredMaintenanceWindow"] == "mon:01:00-mon:02:00"
    assert cluster["copyTagsToSnapshot"] is True


# -- D4 storage encryption -----------------------------------------------------------------


def test_d4_storage_encrypted_with_the_database_key_arn(run):
    cluster = cluster_of(run)
    assert cluster["storageEncrypted"] is True
    assert cluster["kmsKeyId"] == key("database")


def test_d7_performance_insights_encrypted_with_database_key_seven_days(run):
    for instance in instances_of(run):
        assert instance.inputs["performanceInsightsEnabled"] is True
        assert instance.inputs["performanceInsightsKmsKeyId"] == key("database")
        assert instance.inputs["performanceInsightsRetentionPeriod"] == 7


def test_d7_enhanced_monitoring_on_every_instance_with_its_own_role(run):
    """FSBP RDS.6: OS metrics every 60 s, published by a role only RDS monitoring of this
    account can assume, attached before any instance is created (pitfall 146)."""
    role = run.one("aws:iam/role:Role", "db-monitoring-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert [(s["Principal"], s["Condition"]) for s in trust] == [
        (
            {"Service": "monitoring.rds.amazonaws.com"},
            {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}},
        )
    ]
    attachment = run.one(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "db-monitoring-policy"
    )
    assert attachment.inputs["policyArn"] == (
        "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
    )
    for instance in instances_of(run):
        assert instance.inputs["monitoringInterval"] == 60
        assert instance.inputs["monitoringRoleArn"] == role.state["arn"]
        assert attachment.urn in instance.dependencies


def test_d7_enhanced_monitoring_can_be_turned_off_explicitly(namer, context):
    run, _ = build(namer, context, monitoring_interval_seconds=0)
    assert run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    for instance in instances_of(run):
        assert instance.inputs["monitoringInterval"] == 0
        assert "monitoringRoleArn" not in instance.inputs


def test_d7_slow_statement_threshold_from_settings(namer, context):
    run, _ = build(namer, context, slow_statement_ms=250)
    group = run.one("aws:rds/clusterParameterGroup:ClusterParameterGroup", "db-cluster-params")
    assert {p["name"]: p["value"] for p in group.inputs["parameters"]}[
        "log_min_duration_statement"
    ] == "250"


# -- D5 credentials ------------------------------------------------------------------------


def test_d5_master_password_generated_by_rds_into_secret_with_secrets_key(run):
    cluster = cluster_of(run)
    assert cluster["manageMasterUserPassword"] is True
    assert cluster["masterUserSecretKmsKeyId"] == key("secrets")
    assert "masterPassword" not in cluster


def test_d5_secret_rotates_every_30_days_without_lambda_after_the_writer(run):
    rotation = run.one(ROTATION, "db-secret-rotation")
    assert rotation.inputs["secretId"] == SECRET_ARN
    assert rotation.inputs["rotationRules"] == {"automaticallyAfterDays": 30}
    assert rotation.inputs["rotateImmediately"] is False
    assert "rotationLambdaArn" not in rotation.inputs
    assert run.one(INSTANCE, "db-writer").urn in rotation.dependencies


def test_d5_rotation_period_from_args(namer, context):
    run, _ = build(namer, context, secret_rotation_days=7)
    assert run.one(ROTATION).inputs["rotationRules"] == {"automaticallyAfterDays": 7}


def test_d5_grant_secret_read_is_exact_secret_and_key_via_secrets_manager(namer, context):
    run, made = build(namer, context, grant=True)
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "reader-db-secret")
    assert isinstance(made["policy"], aws.iam.RolePolicy)
    assert expect.policy_document(run, "reader-db-secret") == expect.secret_read_policy(
        "Database", SECRET_ARN, key("secrets"), REGION
    )
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "reader-role").id


def test_d6_services_log_in_with_iam_tokens_not_the_master_password(run):
    assert cluster_of(run)["iamDatabaseAuthenticationEnabled"] is True


def test_d6_grant_connect_is_rds_db_connect_on_exactly_one_database_user(namer, context):
    made: dict[str, Any] = {}

    def program():
        db = EncryptedAurora("db", aurora_args(namer, context))
        role = aws.iam.Role("app-role", assume_role_policy="{}")
        made["policy"] = db.grant_connect("app-db-connect", role, "media_worker")

    run = run_components(program, region=REGION)
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "app-db-connect")
    resource_id = run.one(CLUSTER, "db-cluster").state["clusterResourceId"]
    assert resource_id.startswith("cluster-")
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {
            "Sid": "ConnectAsMediaWorker",
            "Effect": "Allow",
            "Action": ["rds-db:connect"],
            # Aurora scopes IAM auth by the cluster's resource id, not its name or ARN.
            "Resource": [f"arn:aws:rds-db:{REGION}:{ACCOUNT_ID}:dbuser:{resource_id}/media_worker"],
        }
    ]
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "app-role").id


@pytest.mark.parametrize("db_user", ["", "Media", "media-api", "x" * 64, "1media", "*"])
def test_d6_grant_connect_refuses_a_user_that_is_not_a_plain_role_name(namer, context, db_user):
    def program():
        db = EncryptedAurora("db", aurora_args(namer, context))
        role = aws.iam.Role("app-role", assume_role_policy="{}")
        db.grant_connect("app-db-connect", role, db_user)

    with pytest.raises(Exception, match=r"db_user=.*allowed a PostgreSQL role name"):
        run_components(program, region=REGION)


# -- D6 TLS, private subnets, security group -----------------------------------------------


def test_d6_d7_cluster_parameter_group_forces_tls_and_logs_ddl_and_slow_statements(run):
    group = run.one("aws:rds/clusterParameterGroup:ClusterParameterGroup", "db-cluster-params")
    assert group.inputs["family"] == "aurora-postgresql16"
    assert group.inputs["parameters"] == [
        {"name": "rds.force_ssl", "value": "1", "applyMethod": "pending-reboot"},
        {"name": "log_statement", "value": "ddl", "applyMethod": "immediate"},
        {"name": "log_min_duration_statement", "value": "1000", "applyMethod": "immediate"},
    ]
    assert (
        cluster_of(run)["dbClusterParameterGroupName"]
        == group.inputs["name"]
        == "media-aurora-postgresql16-cluster-test"
    )


def test_d6_instance_parameter_group_same_family_on_every_instance(run):
    group = run.one("aws:rds/parameterGroup:ParameterGroup", "db-instance-params")
    assert group.inputs["family"] == "aurora-postgresql16"
    assert {i.inputs["dbParameterGroupName"] for i in instances_of(run)} == {group.inputs["name"]}


def test_d6_private_data_subnet_group_shared_by_cluster_and_instances(run):
    group = run.one("aws:rds/subnetGroup:SubnetGroup", "db-subnets")
    assert group.inputs["subnetIds"] == SUBNETS[:2]
    assert group.inputs["name"] == "media-aurora-subnets-test"
    assert cluster_of(run)["dbSubnetGroupName"] == "media-aurora-subnets-test"
    assert {i.inputs["dbSubnetGroupName"] for i in instances_of(run)} == {
        "media-aurora-subnets-test"
    }


def test_d6_own_security_group_admits_nothing_until_granted(run):
    group = run.one("aws:ec2/securityGroup:SecurityGroup", "db-sg")
    assert group.inputs["name"] == "media-database-sg-test"
    assert cluster_of(run)["vpcSecurityGroupIds"] == [group.id]
    expect.assert_admits_nothing(run)


def test_d6_allow_from_admits_5432_only_from_the_peer_group(namer, context):
    run, _ = build(namer, context, peers=1)
    expect.assert_admits_only(run, "db-sg", "worker-sg", 5432)


def test_d6_allowing_the_same_peer_twice_is_an_error(namer, context):
    expect.assert_same_peer_twice_fails(
        lambda: EncryptedAurora("db", aurora_args(namer, context)),
        namer,
        store="db",
        peer_role="worker",
    )


# -- D7 logs and alarms --------------------------------------------------------------------


def test_d7_postgresql_log_exported_to_pre_created_encrypted_group(namer, context):
    run, _ = build(namer, context, log_retention_days=90)
    group = run.one("aws:cloudwatch/logGroup:LogGroup", "db-postgresql-logs")
    assert group.inputs == {
        "name": "/aws/rds/cluster/media-aurora-test/postgresql",
        "kmsKeyId": key("logs"),
        "retentionInDays": 90,
    }
    cluster = run.one(CLUSTER)
    assert cluster.inputs["enabledCloudwatchLogsExports"] == ["postgresql"]
    assert group.urn in cluster.dependencies


def alarm(run, label):
    return run.one(ALARM, f"db-{label}-alarm").inputs


def test_d7_cpu_alarm_from_threshold_sustained_15_minutes(namer, context):
    run, _ = build(namer, context, cpu_alarm_percent=65)
    assert alarm(run, "cpu") == {
        "name": "media-aurora-cpu-test",
        "alarmDescription": "Aurora CPU above 65% for 15 minutes",
        "namespace": "AWS/RDS",
        "metricName": "CPUUtilization",
        "dimensions": {"DBClusterIdentifier": "media-aurora-test"},
        "statistic": "Average",
        "comparisonOperator": "GreaterThanThreshold",
        "threshold": 65,
        "period": 300,
        "evaluationPeriods": 3,
        "treatMissingData": "notBreaching",
        "alarmActions": [TOPIC],
        "okActions": [TOPIC],
    }


def test_d7_capacity_alarm_near_maximum_acus(namer, context):
    run, _ = build(namer, context, max_capacity=32)
    capacity = alarm(run, "capacity")
    assert (
        capacity["metricName"],
        capacity["statistic"],
        capacity["comparisonOperator"],
        capacity["threshold"],
        capacity["dimensions"],
        capacity["alarmActions"],
    ) == (
        "ServerlessDatabaseCapacity",
        "Maximum",
        "GreaterThanOrEqualToThreshold",
        28.8,
        {"DBClusterIdentifier": "media-aurora-test"},
        [TOPIC],
    )


def test_d7_connections_alarm_at_80_percent_of_default_max_connections(run):
    connections = alarm(run, "connections")
    # 4 ACUs = 8 GiB -> 901 connections by default; 80 % is 720.
    assert (
        connections["metricName"],
        connections["statistic"],
        connections["threshold"],
        connections["evaluationPeriods"],
        connections["okActions"],
    ) == ("DatabaseConnections", "Maximum", 720, 2, [TOPIC])


def test_d7_connections_alarm_threshold_can_be_set(namer, context):
    run, _ = build(namer, context, connections_alarm=150)
    assert alarm(run, "connections")["threshold"] == 150


@pytest.mark.parametrize(
    ("max_acu", "default", "threshold"),
    [(0.5, 112, 89), (2, 450, 360), (4, 901, 720), (32, 5000, 4000), (256, 5000, 4000)],
)
def test_d7_connection_limit_follows_max_capacity(max_acu, default, threshold):
    assert default_max_connections(max_acu) == default
    assert connections_alarm_threshold(max_acu) == threshold


# -- G3 destroyable versus protected --------------------------------------------------------


def test_g3_destroyable_by_default(run):
    cluster = cluster_of(run)
    assert cluster["skipFinalSnapshot"] is True
    assert cluster["deletionProtection"] is False
    assert cluster["applyImmediately"] is True
    assert cluster["deleteAutomatedBackups"] is True
    assert "finalSnapshotIdentifier" not in cluster
    assert all(i.inputs["applyImmediately"] is True for i in instances_of(run))
    assert run.of_type("random:index/randomString:RandomString") == []


def test_g3_protected_keeps_a_uniquely_named_final_snapshot(namer, context):
    run, _ = build(namer, context, protect_data=True)
    cluster = cluster_of(run)
    suffix = expect.final_snapshot_suffix(run, "db")
    assert cluster["deletionProtection"] is True
    assert cluster["skipFinalSnapshot"] is False
    assert cluster["finalSnapshotIdentifier"] == f"media-aurora-test-final-{suffix}"
    assert cluster["deleteAutomatedBackups"] is False
    assert cluster["applyImmediately"] is False
    assert all(i.inputs["applyImmediately"] is False for i in instances_of(run))


# -- exposed attributes ----------------------------------------------------------------------


def test_exposes_what_consumers_wire(namer, context):
    _, made = build(namer, context)
    db = made["db"]
    assert (db.port, db.database_name, db.cluster_identifier) == (
        5432,
        "media",
        "media-aurora-test",
    )
    assert db.secret_kms_key_arn == key("secrets")
    assert isinstance(db.security_group, RoleSecurityGroup)
    assert isinstance(db.secret_arn, pulumi.Output)


# -- validation (G8) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        *expect.PLACEMENT_REJECTIONS,
        (
            {"engine_version": "12.9"},
            'engine_version="12.9": allowed major or major.minor with major in 13, 14, 15, 16, 17',
        ),
        ({"min_capacity": 0.25}, "min_capacity=0.25: allowed 0..256 in steps of 0.5"),
        (
            {"min_capacity": 0, "engine_version": "16.2"},
            "min_capacity=0: allowed >= 0.5 on engine 16.2 (0 from 16.3)",
        ),
        (
            {"min_capacity": 0, "engine_version": "15.6"},
            "min_capacity=0: allowed >= 0.5 on engine 15.6 (0 from 15.7)",
        ),
        ({"auto_pause_seconds": 299}, "auto_pause_seconds=299: allowed 300..86400"),
        (
            {"monitoring_interval_seconds": 2},
            "monitoring_interval_seconds=2: allowed one of 0, 1, 5, 10, 15, 30, 60",
        ),
        ({"slow_statement_ms": -2}, "slow_statement_ms=-2: allowed -1..3600000"),
        ({"max_capacity": 300}, "max_capacity=300: allowed 0.5..256 in steps of 0.5"),
        ({"min_capacity": 8, "max_capacity": 4}, "max_capacity=4: allowed >= min_capacity (8)"),
        ({"reader_count": 0}, "reader_count=0: allowed 1..15"),
        ({"reader_count": 16}, "reader_count=16: allowed 1..15"),
        ({"database_name": "Media"}, 'database_name="Media": allowed a lowercase letter'),
        (
            {"database_name": "template1"},
            'database_name="template1": allowed a lowercase letter '
            "then letters, digits, _ (<= 63), not rdsadmin, template0, template1",
        ),
        (
            {"master_username": "admin"},
            "master_username='admin': allowed 1-16 letters, digits or _ "
            "starting with a letter, not admin, rdsadmin",
        ),
        ({"master_username": "a" * 17}, f"master_username='{'a' * 17}': allowed 1-16"),
        ({"backup_retention_days": 0}, "backup_retention_days=0: allowed 1..35"),
        ({"backup_window": "2am"}, 'backup_window="2am": allowed hh:mm-hh:mm (UTC)'),
        (
            {"backup_window": "02:00-02:20"},
            'backup_window="02:00-02:20": allowed a window of at least 30 minutes (RDS minimum)',
        ),
        (
            {"maintenance_window": "sun:03:30"},
            'maintenance_window="sun:03:30": allowed ddd:hh:mm-ddd:hh:mm (UTC',
        ),
        (
            {"maintenance_window": "sun:03:30-sun:03:40"},
            'maintenance_window="sun:03:30-sun:03:40": allowed a window of at least 30 minutes (RDS minimum)',
        ),
        (
            {"maintenance_window": "wed:02:30-wed:03:30"},
            'maintenance_window="wed:02:30-wed:03:30": allowed a window that does not overlap '
            "backup_window (02:00-03:00); RDS rejects overlapping windows",
        ),
        ({"secret_rotation_days": 0}, "secret_rotation_days=0: allowed 1..365"),
        ({"cpu_alarm_percent": 0}, "cpu_alarm_percent=0: allowed 1..100"),
        ({"capacity_alarm_ratio": 1.5}, "capacity_alarm_ratio=1.5: allowed > 0 and <= 1"),
        ({"connections_alarm": 0}, "connections_alarm=0: allowed None (derived) or >= 1"),
    ],
)
def test_g8_bad_args_are_rejected_with_the_field_and_allowed_values(
    namer, context, overrides, message
):
    expect.assert_rejected(aurora_args(namer, context, **overrides), message)


def test_g8_every_problem_in_one_error_before_any_resource(namer, context):
    def program():
        EncryptedAurora("db", aurora_args(namer, context, reader_count=0, secret_rotation_days=0))

    with pytest.raises(ValueError) as caught:
        run_components(program, region=REGION)
    assert "reader_count=0" in str(caught.value)
    assert "secret_rotation_days=0" in str(caught.value)
    assert caught.value.registered == []


# -- config keys of the database (G8) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"dbBackupWindow": "02:00-02:15"},
            'dbBackupWindow="02:00-02:15": allowed a window of at least 30 minutes (RDS minimum)',
        ),
        (
            {"dbMaintenanceWindow": "sun:03:30-sun:03:50"},
            'dbMaintenanceWindow="sun:03:30-sun:03:50": allowed a window of at least 30 minutes '
            "(RDS minimum)",
        ),
        (
            {"dbBackupWindow": "03:00-04:00"},
            'dbMaintenanceWindow="sun:03:30-sun:04:30": allowed a window that does not overlap '
            "dbBackupWindow (03:00-04:00); RDS rejects overlapping windows",
        ),
        (
            {"dbBackupWindow": "23:30-00:30", "dbMaintenanceWindow": "mon:00:00-mon:01:00"},
            'dbMaintenanceWindow="mon:00:00-mon:01:00": allowed a window that does not overlap '
            "dbBackupWindow (23:30-00:30); RDS rejects overlapping windows",
        ),
        (
            {"dbName": "rdsadmin"},
            'dbName="rdsadmin": allowed a lowercase letter then letters, digits, _ (<= 63), not '
            "rdsadmin, template0, template1 (they exist in every cluster)",
        ),
    ],
)
def test_g8_database_config_rejected_with_key_and_allowed(raw, message):
    assert expect.config_problems(**raw) == [message]


def test_windows_are_measured_across_midnight_and_the_week():
    assert window_span("23:30-00:30") == (1410, 60)
    assert window_span("sun:23:00-mon:01:00") == (6 * 1440 + 1380, 120)
    assert windows_overlap("02:00-03:00", "sun:03:30-sun:04:30") is False
    assert windows_overlap("02:00-03:00", "sun:03:00-sun:04:00") is False  # touching is fine
    assert windows_overlap("23:30-00:30", "sat:23:59-sun:00:10") is True


def test_g8_bad_database_config_fails_the_program_before_any_resource():
    with pytest.raises(ConfigError, match="dbName") as caught:
        run_stack("dev", {"dbName": "template0"})
    assert caught.value.registered == []


# -- whole program -----------------------------------------------------------------------------


def test_program_dev_database_two_zones_destroyable(dev_run):
    cluster = dev_run.one(CLUSTER).inputs
    assert cluster["clusterIdentifier"] == "media-aurora-dev"
    # Dev pauses when idle (issue "Operate" item 2).
    assert cluster["serverlessv2ScalingConfiguration"] == {
        "minCapacity": 0,
        "maxCapacity": 2,
        "secondsUntilAutoPause": 3600,
    }
    assert cluster["backupRetentionPeriod"] == 1
    assert (cluster["deletionProtection"], cluster["skipFinalSnapshot"]) == (False, True)
    keys = {r.name: r.state["arn"] for r in dev_run.of_type("aws:kms/key:Key")}
    assert cluster["kmsKeyId"] == keys["keys-database-key"]
    assert cluster["masterUserSecretKmsKeyId"] == keys["keys-secrets-key"]
    zones = dev_run.outputs["availabilityZones"]
    assert [
        i.inputs["availabilityZone"]
        for i in sorted(dev_run.of_type(INSTANCE), key=lambda r: r.inputs["identifier"])
    ] == zones
    group = dev_run.one("aws:rds/subnetGroup:SubnetGroup")
    assert group.inputs["subnetIds"] == dev_run.outputs["dataSubnetIds"]
    assert dev_run.one(ALARM, "database-cpu-alarm").inputs["threshold"] == 80


def test_program_prod_database_three_zones_protected(prod_run):
    cluster = prod_run.one(CLUSTER).inputs
    assert (cluster["deletionProtection"], cluster["skipFinalSnapshot"]) == (True, False)
    assert cluster["finalSnapshotIdentifier"].startswith("media-aurora-prod-final-")
    assert cluster["backupRetentionPeriod"] == 35
    assert [
        i.inputs["availabilityZone"]
        for i in sorted(prod_run.of_type(INSTANCE), key=lambda r: r.inputs["identifier"])
    ] == prod_run.outputs["availabilityZones"]
    assert (
        prod_run.one("aws:cloudwatch/logGroup:LogGroup", "database-postgresql-logs").inputs[
            "retentionInDays"
        ]
        == 365
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_g6_database_outputs_are_the_cluster_endpoints_and_secret(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    cluster = run.one(CLUSTER).state
    assert run.outputs["databaseEndpoint"] == cluster["endpoint"]
    assert run.outputs["databaseReaderEndpoint"] == cluster["readerEndpoint"]
    assert run.outputs["databaseSecretArn"] == cluster["masterUserSecrets"][0]["secretArn"]
    assert (
        run.one(ROTATION, "database-secret-rotation").inputs["secretId"]
        == run.outputs["databaseSecretArn"]
    )


@pytest.mark.parametrize("region", ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"])
def test_g1_database_in_every_region_without_warnings(region_runs, region):
    run = region_runs["dev", region]
    assert run.warnings == []
    assert run.outputs["databaseEndpoint"].endswith(f".{region}.rds.amazonaws.com")
    assert (
        run.one(ROTATION, "database-secret-rotation")
        .inputs["secretId"]
        .startswith(f"arn:aws:secretsmanager:{region}:")
    )


# -- G3 engine-level protection, D1 explicit minor upgrades ------------------------------------


def test_g3_nothing_is_protected_or_retained_by_default(run):
    assert expect.guarded(run) == set()


def test_g3_data_protection_protects_and_retains_the_cluster_only(namer, context):
    run, _ = build(namer, context, protect_data=True)
    assert expect.guarded(run) == {(CLUSTER, "db-cluster", True, True)}
    # The explicit depends_on on the log group survives the protection options.
    log_group = run.one("aws:cloudwatch/logGroup:LogGroup")
    assert log_group.urn in run.one(CLUSTER, "db-cluster").dependencies


@pytest.mark.parametrize("protect_data", [False, True])
def test_d1_minor_upgrades_are_explicit_so_a_pinned_version_never_drifts(
    namer, context, protect_data
):
    """RDS would patch 16.6 to a newer minor and the next `up` would ask for a downgrade."""
    run, _ = build(namer, context, engine_version="16.6", protect_data=protect_data)
    cluster = cluster_of(run)
    assert cluster["engineVersion"] == "16.6"
    assert cluster["autoMinorVersionUpgrade"] is False
    assert "engineVersion" not in run.one(CLUSTER, "db-cluster").ignore_changes
    assert [i.inputs["autoMinorVersionUpgrade"] for i in instances_of(run)] == [False, False]


@pytest.mark.parametrize("protect_data", [False, True])
def test_d1_a_major_alone_resolves_the_newest_minor_and_takes_aws_minor_upgrades(
    namer, context, protect_data
):
    """Deploy-ready: AWS retires minors after about a year, so a major alone resolves the
    newest minor RDS offers at create time; automatic minor upgrades keep it current and the
    version they leave is ignored, so the next `up` never asks for a downgrade."""
    run, _ = build(namer, context, engine_version="15", protect_data=protect_data)
    cluster = run.one(CLUSTER, "db-cluster")
    assert cluster.inputs["engineVersion"] == AURORA_NEWEST_MINORS["15"] == "15.13"
    assert cluster.inputs["autoMinorVersionUpgrade"] is True
    assert cluster.ignore_changes == ["engineVersion"]
    assert cluster.inputs["dbClusterParameterGroupName"] == "media-aurora-postgresql15-cluster-test"
    for instance in instances_of(run):
        assert instance.inputs["engineVersion"] == "15.13"
        assert instance.inputs["autoMinorVersionUpgrade"] is True
        assert instance.ignore_changes == ["engineVersion"]
