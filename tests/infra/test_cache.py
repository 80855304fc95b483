"""`RedisReplicationGroup` (C1-C4) and the cache config checks: exact inputs under mocks."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from components.aws_limits import cache_parameter_group_family
from components.cache import (
    RedisReplicationGroup,
    RedisReplicationGroupArgs,
    TokenRotationPlacement,
    node_zones,
)
from components.firewall import RoleSecurityGroup
from components.naming import member_cluster_ids
from offline.engine import ACCOUNT_ID, run_components, run_stack
from services.common.settings import load_cache_token_rotation_settings
from services.contract import CACHE_TOKEN_ROTATION_ENVIRONMENT
from stack_config import parse_settings
from tests.infra import expect
from tests.infra.expect import REGION, SUBNETS, TOPIC, ZONES, key

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
PASSWORD = "random:index/randomPassword:RandomPassword"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SECRET_ARN = (
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:media-cache-auth-token-test-AbCdEf"
)
ROTATION_WARNING = (
    "cache: cacheAuthTokenRotationDays is 0 — the cache's AUTH token never rotates (issue 14, "
    "item 7 opt-out); anyone who once read it keeps access while the network lets them reach "
    "the cache."
)
APP_SUBNETS = ["subnet-app-a", "subnet-app-b"]
ROTATION_CODE = "build/lambda/rotation.zip"
TLS_WARNING = (
    "cache: cacheTransitEncryption is false — the cache accepts plaintext connections "
    "without an AUTH token (C3 opt-out; development only). Changing it later "
    "replaces or migrates the replication group."
)


def rotation_placement(**overrides: Any) -> TokenRotationPlacement:
    return TokenRotationPlacement(
        **{
            "subnet_ids": APP_SUBNETS,
            "code_path": ROTATION_CODE,
            "code_sha256": "cm90YXRpb24=",
            **overrides,
        }
    )


def cache_args(namer, context, **overrides: Any) -> RedisReplicationGroupArgs:
    return RedisReplicationGroupArgs(
        **{
            **expect.placement(namer, context, "cache"),
            "token_rotation": rotation_placement(),
            **overrides,
        }
    )


def build(namer, context, *, peer: bool = False, grant: bool = False, **overrides: Any):
    made: dict[str, Any] = {}

    def program():
        cache = RedisReplicationGroup("cache", cache_args(namer, context, **overrides))
        made["cache"] = cache
        if peer:
            made["peer"] = expect.Peer(namer, "api")
            cache.allow_from(made["peer"].sg)
        if grant:
            role = aws.iam.Role("api-role", assume_role_policy="{}")
            made["policy"] = cache.grant_secret_read("api-cache-secret", role)

    return run_components(program, region=REGION), made


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    """The default build, shared by the tests that only read it."""
    return build(module_namer, module_context)[0]


def group_of(run):
    return run.one(GROUP, "cache-group").inputs


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_special_sig_key) == _special_secret_sig


# -- C1 replication group across zones -----------------------------------------------------


def test_c1_valkey_by_default_lowercase_cluster_mode_off_with_explicit_id(run):
    group = group_of(run)
    assert group["replicationGroupId"] == "media-cache-test"
    assert group["engine"] == "valkey"
    assert group["engineVersion"] == "8.0"
    assert group["nodeType"] == "cache.t4g.micro"
    assert group["clusterMode"] == "disabled"
    assert group["port"] == 6379
    assert "numNodeGroups" not in group and "replicasPerNodeGroup" not in group


def test_c1_two_nodes_in_distinct_zones_with_multi_az_failover(run):
    group = group_of(run)
    assert group["numCacheClusters"] == 2
    assert group["preferredCacheClusterAzs"] == ["eu-central-1a", "eu-central-1b"]
    assert group["multiAzEnabled"] is True
    assert group["automaticFailoverEnabled"] is True


def test_c1_node_count_type_and_version_from_args(namer, context):
    run, _ = build(
        namer,
        context,
        engine="redis",
        engine_version="7.1",
        node_type="cache.r7g.large",
        node_count=3,
        subnet_ids=SUBNETS,
        availability_zones=ZONES,
    )
    group = group_of(run)
    assert (
        group["engine"],
        group["engineVersion"],
        group["nodeType"],
        group["numCacheClusters"],
    ) == ("redis", "7.1", "cache.r7g.large", 3)
    assert group["preferredCacheClusterAzs"] == ZONES


def test_c1_more_nodes_than_zones_go_round_robin(namer, context):
    run, _ = build(namer, context, node_count=5)
    assert group_of(run)["preferredCacheClusterAzs"] == [
        "eu-central-1a",
        "eu-central-1b",
        "eu-central-1a",
        "eu-central-1b",
        "eu-central-1a",
    ]
    assert node_zones(["a", "b", "c"], 2) == ["a", "b"]


def test_c1_parameter_group_family_follows_engine_major(run):
    params = run.one("aws:elasticache/parameterGroup:ParameterGroup", "cache-params")
    assert params.inputs["family"] == "valkey8"
    assert params.inputs["name"] == "media-cache-valkey8-test"
    assert group_of(run)["parameterGroupName"] == "media-cache-valkey8-test"


def test_c1_redis6_family_is_redis6x(namer, context):
    """Redis 6.2 runs only without TLS: its transit-encryption mode needs 7.0.5 (C3)."""
    run, _ = build(namer, context, engine="redis", engine_version="6.2", transit_encryption=False)
    params = run.one("aws:elasticache/parameterGroup:ParameterGroup").inputs
    assert (params["family"], params["name"]) == ("redis6.x", "media-cache-redis6-x-test")


@pytest.mark.parametrize(
    ("engine", "version", "family"),
    [
        ("valkey", "7.2", "valkey7"),
        ("valkey", "8.1", "valkey8"),
        ("redis", "7.1", "redis7"),
        ("redis", "6.2", "redis6.x"),
    ],
)
def test_c1_parameter_group_families(engine, version, family):
    assert cache_parameter_group_family(engine, version) == family


# -- C2 encryption at rest, private subnets --------------------------------------------------


def test_c2_encrypted_at_rest_with_the_cache_key_arn(run):
    group = group_of(run)
    assert group["atRestEncryptionEnabled"] is True
    assert group["kmsKeyId"] == key("cache")


def test_c2_subnet_group_over_the_data_subnets(run):
    subnets = run.one("aws:elasticache/subnetGroup:SubnetGroup", "cache-subnets").inputs
    assert subnets["subnetIds"] == SUBNETS[:2]
    assert group_of(run)["subnetGroupName"] == subnets["name"] == "media-cache-subnets-test"


# -- C3 TLS and AUTH token -------------------------------------------------------------------


def test_c3_tls_required_with_a_secret_auth_token_rotated_on_change(run):
    group = group_of(run)
    assert group["transitEncryptionEnabled"] is True
    assert group["transitEncryptionMode"] == "required"
    assert group["authTokenUpdateStrategy"] == "ROTATE"
    assert is_secret(group["authToken"])
    password = run.one(PASSWORD, "cache-auth-token")
    assert password.inputs == {"length": 64, "special": True, "overrideSpecial": "!&#$^<>-"}
    assert group["authToken"]["value"] == password.state["result"]


def test_c3_token_kept_in_secrets_manager_with_the_secrets_key(run):
    secret = run.one(SECRET, "cache-auth-secret")
    assert secret.inputs["name"] == "media-cache-auth-token-test"
    assert secret.inputs["kmsKeyId"] == key("secrets")
    assert secret.inputs["recoveryWindowInDays"] == 0
    version = run.one(SECRET_VERSION, "cache-auth-secret-value").inputs
    assert version["secretId"] == secret.id
    # The secret holds the raw token (what the services read), and stays secret in state.
    assert is_secret(version["secretString"])
    assert version["secretString"]["value"] == run.one(PASSWORD).state["result"]


def test_c3_secret_recovery_window_follows_data_protection_g3(namer, context):
    assert build(namer, context)[0].one(SECRET).inputs["recoveryWindowInDays"] == 0
    run, _ = build(namer, context, protect_data=True)
    assert run.one(SECRET).inputs["recoveryWindowInDays"] == 30


def test_c3_no_warning_when_tls_is_on(run):
    assert run.warnings == []


def test_c3_turning_tls_off_warns_and_drops_token_and_secret(namer, context):
    run, made = build(namer, context, transit_encryption=False, grant=True)
    assert run.warnings == [TLS_WARNING]
    group = group_of(run)
    assert group["transitEncryptionEnabled"] is False
    for absent in ("authToken", "authTokenUpdateStrategy", "transitEncryptionMode"):
        assert absent not in group
    assert run.of_type(PASSWORD) == [] and run.of_type(SECRET) == []
    assert run.of_type(SECRET_VERSION) == []
    cache = made["cache"]
    assert (cache.transit_encryption, cache.auth_secret_arn, made["policy"]) == (False, None, None)
    assert run.of_type("aws:iam/rolePolicy:RolePolicy") == []
    # At rest stays encrypted either way.
    assert group["atRestEncryptionEnabled"] is True


def test_c3_grant_secret_read_is_exact_secret_and_key_via_secrets_manager(namer, context):
    run, made = build(namer, context, grant=True)
    assert isinstance(made["policy"], aws.iam.RolePolicy)
    assert expect.policy_document(run, "api-cache-secret") == expect.secret_read_policy(
        "CacheAuth", SECRET_ARN, key("secrets"), REGION
    )
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "api-cache-secret")
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "api-role").id


# -- C4 access, snapshots, maintenance, logs ---------------------------------------------------


def test_c4_security_group_admits_only_its_token_rotation_until_granted(run):
    sg = run.one("aws:ec2/securityGroup:SecurityGroup", "cache-sg")
    assert sg.inputs["name"] == "media-cache-sg-test"
    assert group_of(run)["securityGroupIds"] == [sg.id]
    # Issue 14, item 7: the rotation function tests each new token on the cache port.
    expect.assert_admits_only(run, "cache-sg", "cache-rotation-sg", 6379)


def test_c4_without_token_rotation_the_group_admits_nothing_until_granted(namer, context):
    run, _ = build(namer, context, auth_token_rotation_days=0)
    expect.assert_admits_nothing(run)


def test_c4_allow_from_admits_6379_only_from_the_peer_group(namer, context):
    run, _ = build(namer, context, peer=True, auth_token_rotation_days=0)
    expect.assert_admits_only(run, "cache-sg", "api-sg", 6379)


def test_c4_allowing_the_same_peer_twice_is_an_error(namer, context):
    expect.assert_same_peer_twice_fails(
        lambda: RedisReplicationGroup("cache", cache_args(namer, context)),
        namer,
        store="cache",
        peer_role="api",
    )


def test_c4_snapshots_and_maintenance_from_args(namer, context):
    run, _ = build(
        namer,
        context,
        snapshot_retention_days=7,
        snapshot_window="03:00-04:00",
        maintenance_window="tue:05:00-tue:06:30",
    )
    group = group_of(run)
    assert (
        group["snapshotRetentionLimit"],
        group["snapshotWindow"],
        group["maintenanceWindow"],
    ) == (7, "03:00-04:00", "tue:05:00-tue:06:30")


def test_c4_slow_and_engine_logs_as_json_to_encrypted_groups(namer, context):
    run, _ = build(namer, context, log_retention_days=90)
    for log_type in ("slow-log", "engine-log"):
        group = run.one("aws:cloudwatch/logGroup:LogGroup", f"cache-{log_type}").inputs
        assert group == {
            "name": f"/aws/vendedlogs/elasticache/media-cache-test/{log_type}",
            "kmsKeyId": key("logs"),
            "retentionInDays": 90,
        }
    assert group_of(run)["logDeliveryConfigurations"] == [
        {
            "destination": "/aws/vendedlogs/elasticache/media-cache-test/slow-log",
            "destinationType": "cloudwatch-logs",
            "logFormat": "json",
            "logType": "slow-log",
        },
        {
            "destination": "/aws/vendedlogs/elasticache/media-cache-test/engine-log",
            "destinationType": "cloudwatch-logs",
            "logFormat": "json",
            "logType": "engine-log",
        },
    ]


def test_c4_alarms_per_node_on_cpu_memory_and_evictions(namer, context):
    run, _ = build(namer, context, cpu_alarm_percent=60, memory_alarm_percent=85)
    alarms = {a.inputs["name"]: a.inputs for a in run.of_type(ALARM)}
    # Beside the token rotation's own failure alarm (tests/infra/test_rotation.py).
    assert sorted(alarms) == sorted(
        [
            f"media-cache-{n}-{m}-test"
            for n in ("001", "002")
            for m in ("cpu", "memory", "evictions")
        ]
        + ["media-cache-rotation-failed-test"]
    )
    expected = {
        "cpu": ("EngineCPUUtilization", "Average", 60),
        "memory": ("DatabaseMemoryUsagePercentage", "Average", 85),
        "evictions": ("Evictions", "Sum", 0),
    }
    for node in ("001", "002"):
        for label, (metric, statistic, threshold) in expected.items():
            alarm = alarms[f"media-cache-{node}-{label}-test"]
            assert (
                alarm["namespace"],
                alarm["metricName"],
                alarm["statistic"],
                alarm["threshold"],
                alarm["comparisonOperator"],
                alarm["evaluationPeriods"],
                alarm["dimensions"],
                alarm["alarmActions"],
                alarm["okActions"],
            ) == (
                "AWS/ElastiCache",
                metric,
                statistic,
                threshold,
                "GreaterThanThreshold",
                3,
                {"CacheClusterId": f"media-cache-test-{node}"},
                [TOPIC],
                [TOPIC],
            )


def test_c4_member_ids_are_numbered_as_elasticache_does():
    assert member_cluster_ids("media-cache-dev", 3) == [
        "media-cache-dev-001",
        "media-cache-dev-002",
        "media-cache-dev-003",
    ]


# -- G3 destroyable versus protected ----------------------------------------------------------


def test_g3_destroyable_by_default_no_final_snapshot(run):
    group = group_of(run)
    assert "finalSnapshotIdentifier" not in group
    assert group["applyImmediately"] is True
    assert run.of_type("random:index/randomString:RandomString") == []


def test_g3_protected_takes_a_uniquely_named_final_snapshot(namer, context):
    run, _ = build(namer, context, protect_data=True)
    group = group_of(run)
    suffix = expect.final_snapshot_suffix(run, "cache")
    assert group["finalSnapshotIdentifier"] == f"media-cache-test-final-{suffix}"
    assert group["applyImmediately"] is False


# -- exposed attributes ------------------------------------------------------------------------


def test_exposes_what_consumers_wire(namer, context):
    _, made = build(namer, context)
    cache = made["cache"]
    assert (cache.port, cache.transit_encryption, cache.replication_group_id) == (
        6379,
        True,
        "media-cache-test",
    )
    assert isinstance(cache.security_group, RoleSecurityGroup)
    assert isinstance(cache.auth_secret_arn, pulumi.Output)
    assert isinstance(cache.primary_endpoint, pulumi.Output)


# -- validation (G8) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        *expect.PLACEMENT_REJECTIONS,
        ({"engine": "Redis"}, 'engine="Redis": allowed one of valkey, redis'),
        ({"engine": "memcached"}, 'engine="memcached": allowed one of valkey, redis'),
        ({"engine_version": "7.1"}, 'engine_version="7.1": allowed for valkey: 7.2, 8.0, 8.1'),
        (
            {"engine": "redis", "engine_version": "8.0"},
            'engine_version="8.0": allowed for redis: 6.2, 7.0, 7.1',
        ),
        (
            {"node_type": "t4g.micro"},
            'node_type="t4g.micro": allowed an ElastiCache node type like cache.t4g.micro',
        ),
        ({"node_count": 1}, "node_count=1: allowed 2..6"),
        ({"node_count": 7}, "node_count=7: allowed 2..6"),
        ({"snapshot_retention_days": 36}, "snapshot_retention_days=36: allowed 0..35"),
        ({"snapshot_window": "1am"}, 'snapshot_window="1am": allowed hh:mm-hh:mm (UTC)'),
        (
            {"snapshot_window": "01:00-01:30"},
            'snapshot_window="01:00-01:30": allowed a window of at least 60 minutes (ElastiCache minimum)',
        ),
        (
            {"maintenance_window": "sun:05:00"},
            'maintenance_window="sun:05:00": allowed ddd:hh:mm-ddd:hh:mm (UTC',
        ),
        (
            {"maintenance_window": "sun:05:00-sun:05:30"},
            'maintenance_window="sun:05:00-sun:05:30": allowed a window of at least 60 minutes (ElastiCache minimum)',
        ),
        (
            {"maintenance_window": "sun:01:30-sun:02:30"},
            'maintenance_window="sun:01:30-sun:02:30": allowed a window that does not overlap '
            "snapshot_window (01:00-02:00); ElastiCache rejects overlapping windows",
        ),
        ({"cpu_alarm_percent": 101}, "cpu_alarm_percent=101: allowed 1..100"),
        ({"memory_alarm_percent": 0}, "memory_alarm_percent=0: allowed 1..100"),
    ],
)
def test_g8_bad_args_are_rejected_with_the_field_and_allowed_values(
    namer, context, overrides, message
):
    expect.assert_rejected(cache_args(namer, context, **overrides), message)


def test_g8_every_problem_in_one_error_before_any_resource(namer, context):
    def program():
        RedisReplicationGroup(
            "cache", cache_args(namer, context, node_count=1, snapshot_retention_days=-1)
        )

    with pytest.raises(ValueError) as caught:
        run_components(program, region=REGION)
    assert "node_count=1" in str(caught.value)
    assert "snapshot_retention_days=-1" in str(caught.value)
    assert caught.value.registered == []


# -- config keys of the cache (G8) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"cacheSnapshotWindow": "01:00-01:30"},
            'cacheSnapshotWindow="01:00-01:30": allowed a window of at least 60 minutes '
            "(ElastiCache minimum)",
        ),
        (
            {"cacheMaintenanceWindow": "sun:05:00-sun:05:45"},
            'cacheMaintenanceWindow="sun:05:00-sun:05:45": allowed a window of at least 60 minutes '
            "(ElastiCache minimum)",
        ),
        (
            {"cacheSnapshotWindow": "05:30-06:30"},
            'cacheMaintenanceWindow="sun:05:00-sun:06:00": allowed a window that does not overlap '
            "cacheSnapshotWindow (05:30-06:30); ElastiCache rejects overlapping windows",
        ),
        (
            {"cacheTransitEncryption": "false", "dataProtection": "true"},
            "cacheTransitEncryption=false: allowed true when dataProtection is true (turning TLS off "
            "is a development convenience only)",
        ),
    ],
)
def test_g8_cache_config_rejected_with_key_and_allowed(raw, message):
    assert expect.config_problems(**raw) == [message]


def test_c3_tls_off_is_accepted_config_without_data_protection():
    settings = parse_settings(
        {"cacheTransitEncryption": "false"},
        project="media-pipeline",
        stack="test",
        region=REGION,
    )
    assert settings.cache.transit_encryption is False


def test_six_nodes_over_two_zones_is_valid_config():
    settings = parse_settings(
        {"cacheNodeCount": "6"}, project="media-pipeline", stack="test", region=REGION
    )
    assert settings.cache.node_count == 6


# -- issue 14, item 7: the AUTH token rotates (PITFALLS 147, 148) ------------------------------

FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def test_i14_7_rotation_function_in_the_app_subnets_with_its_own_group(run):
    function = run.one(FUNCTION, "cache-rotation-function").inputs
    group = run.one("aws:ec2/securityGroup:SecurityGroup", "cache-rotation-sg")
    assert group.inputs["name"] == "media-cache-rotation-sg-test"
    assert function["name"] == "media-cache-rotation-test"
    assert function["handler"] == "services.rotation.cache_token.handler"
    assert function["code"].path == ROTATION_CODE
    assert function["vpcConfig"] == {"subnetIds": APP_SUBNETS, "securityGroupIds": [group.id]}
    assert function["timeout"] == 300
    assert function["kmsKeyArn"] == key("secrets")
    state = run.one(GROUP).state
    secret = run.one(SECRET, "cache-auth-secret").state["arn"]
    assert function["environment"] == {
        "variables": {
            "REDIS_HOST": state["primaryEndpointAddress"],
            "REDIS_PORT": "6379",
            "REDIS_TLS": "true",
            "REDIS_AUTH_SECRET_ARN": secret,
            "CACHE_REPLICATION_GROUP_ID": "media-cache-test",
            "LOG_LEVEL": "INFO",
        }
    }


def test_i14_7_rotation_may_change_exactly_this_groups_token(run):
    expect.assert_role_policy(
        run,
        "cache-rotation-elasticache",
        "cache-rotation-role",
        [
            {
                "Sid": "ChangeOwnAuthToken",
                "Effect": "Allow",
                "Action": [
                    "elasticache:DescribeReplicationGroups",
                    "elasticache:ModifyReplicationGroup",
                ],
                "Resource": [run.one(GROUP).state["arn"]],
            }
        ],
    )


def test_i14_7_rotation_may_rotate_exactly_the_token_secret(run):
    secret = run.one(SECRET, "cache-auth-secret").state["arn"]
    expect.assert_role_policy(
        run,
        "cache-rotation-rotation",
        "cache-rotation-role",
        expect.rotation_statements(secret, key("secrets"), REGION),
    )


def test_i14_7_secrets_manager_invokes_it_for_this_secret_every_30_days(run):
    secret = run.one(SECRET, "cache-auth-secret").state["arn"]
    function = run.one(FUNCTION, "cache-rotation-function")
    permission = run.one(PERMISSION, "cache-rotation-invoke")
    assert permission.inputs == {
        "action": "lambda:InvokeFunction",
        "function": "media-cache-rotation-test",
        "principal": "secretsmanager.amazonaws.com",
        "sourceArn": secret,
        "sourceAccount": ACCOUNT_ID,
    }
    rotation = run.one(ROTATION, "cache-rotation-schedule")
    assert rotation.inputs == {
        "secretId": secret,
        "rotationLambdaArn": function.state["arn"],
        "rotationRules": {"automaticallyAfterDays": 30},
        "rotateImmediately": False,
    }
    assert permission.urn in rotation.dependencies


def test_i14_7_the_function_waits_for_its_flows_and_the_subnets(namer, context):
    def program():
        ready = aws.ec2.Route("app-route", route_table_id="rtb-1")
        opened: list[str] = []

        def grant(group: RoleSecurityGroup) -> None:
            opened.append(group.physical_name)
            group.allow_https_egress()

        RedisReplicationGroup(
            "cache",
            cache_args(
                namer,
                context,
                token_rotation=rotation_placement(
                    network_grants=(grant,), placement_ready=(ready,), log_level="DEBUG"
                ),
            ),
        )
        assert opened == ["media-cache-rotation-sg-test"]

    run = run_components(program, region=REGION)
    function = run.one(FUNCTION, "cache-rotation-function")
    assert function.inputs["environment"]["variables"]["LOG_LEVEL"] == "DEBUG"
    rules = [r.urn for r in run.of_type(expect.INGRESS) + run.of_type(expect.EGRESS)]
    assert len(rules) == 3  # into the cache (both sides) and HTTPS to the AWS APIs
    assert set(rules) | {run.one("aws:ec2/route:Route").urn} <= set(function.dependencies)


def test_i14_7_pulumi_never_sets_the_token_back(run):
    """PITFALLS 147: after the first token the group's token and the secret's versions are
    the rotation's; the first version keeps a label so it is never deleted and rewritten."""
    assert run.one(GROUP).ignore_changes == ["authToken"]
    version = run.one(SECRET_VERSION, "cache-auth-secret-value")
    assert version.inputs["versionStages"] == ["AWSCURRENT", "DEPLOYED"]
    assert sorted(version.ignore_changes) == ["secretString", "versionStages"]


def test_i14_7_zero_days_builds_no_rotation_and_warns(namer, context):
    run, made = build(namer, context, auth_token_rotation_days=0, token_rotation=None)
    assert run.warnings == [ROTATION_WARNING]
    assert made["cache"].token_rotation is None
    assert run.of_type(FUNCTION) == [] and run.of_type(ROTATION) == []
    assert run.of_type(PERMISSION) == [] and run.of_type(ROLE_POLICY) == []
    # The token the stack may have rotated before is kept all the same.
    assert run.one(GROUP).ignore_changes == ["authToken"]


def test_i14_7_no_token_no_rotation(namer, context):
    run, made = build(namer, context, transit_encryption=False, token_rotation=None)
    assert run.warnings == [TLS_WARNING]
    assert made["cache"].token_rotation is None and run.of_type(FUNCTION) == []
    assert run.one(GROUP).ignore_changes == []


def test_i14_7_custom_days(namer, context):
    run, _ = build(namer, context, auth_token_rotation_days=7)
    rules = run.one(ROTATION).inputs["rotationRules"]
    assert rules == {"automaticallyAfterDays": 7}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"token_rotation": None},
            "token_rotation: required while the AUTH token rotates (the rotation function's "
            "subnets and code; cacheAuthTokenRotationDays 0 turns rotation off)",
        ),
        (
            {"token_rotation": rotation_placement(subnet_ids=["subnet-app-a"])},
            "token_rotation.subnet_ids: 1 given, allowed at least 2",
        ),
        (
            {"token_rotation": rotation_placement(code_sha256="")},
            "token_rotation.code_path/code_sha256: allowed a built package "
            "(components.packaging.build_rotation_package)",
        ),
        (
            {"auth_token_rotation_days": 1001},
            "auth_token_rotation_days=1001: allowed 0 or 1..1000",
        ),
    ],
)
def test_i14_7_bad_rotation_args_are_rejected(namer, context, overrides, message):
    expect.assert_rejected(cache_args(namer, context, **overrides), message)


def test_i14_7_rotation_days_config_key():
    assert expect.config_problems(cacheAuthTokenRotationDays="-1") == [
        "cacheAuthTokenRotationDays=-1: allowed 0 or 1..1000"
    ]
    settings = parse_settings(
        {"cacheAuthTokenRotationDays": "0"}, project="media-pipeline", stack="test", region=REGION
    )
    assert settings.cache.auth_token_rotation_days == 0
    assert settings.cache.rotates_token is False


# -- whole program -------------------------------------------------------------------------------


def test_program_dev_cache_two_nodes_tls_destroyable(dev_run):
    group = dev_run.one(GROUP).inputs
    zones = dev_run.outputs["availabilityZones"]
    assert (
        group["replicationGroupId"],
        group["numCacheClusters"],
        group["preferredCacheClusterAzs"],
    ) == ("media-cache-dev", 2, zones)
    keys = {r.name: r.state["arn"] for r in dev_run.of_type("aws:kms/key:Key")}
    assert group["kmsKeyId"] == keys["keys-cache-key"]
    assert group["transitEncryptionEnabled"] is True and is_secret(group["authToken"])
    assert "finalSnapshotIdentifier" not in group
    secret = dev_run.one(SECRET, "cache-auth-secret").inputs
    assert (secret["kmsKeyId"], secret["recoveryWindowInDays"]) == (
        keys["keys-secrets-key"],
        0,
    )
    subnets = dev_run.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"]
    assert subnets == dev_run.outputs["dataSubnetIds"]
    assert dev_run.one(ALARM, "cache-001-cpu-alarm").inputs["threshold"] == 75


def test_program_prod_cache_three_nodes_protected(prod_run):
    group = prod_run.one(GROUP).inputs
    assert (group["numCacheClusters"], group["nodeType"], group["snapshotRetentionLimit"]) == (
        3,
        "cache.r7g.large",
        7,
    )
    assert group["preferredCacheClusterAzs"] == prod_run.outputs["availabilityZones"]
    assert group["finalSnapshotIdentifier"].startswith("media-cache-prod-final-")
    assert prod_run.one(SECRET, "cache-auth-secret").inputs["recoveryWindowInDays"] == 30


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_i14_7_both_stacks_rotate_the_token_from_the_app_subnets(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    function = run.one(FUNCTION, "cache-rotation-function").inputs
    assert function["vpcConfig"]["subnetIds"] == run.outputs["appSubnetIds"]
    assert function["name"] == f"media-cache-rotation-{stack}"
    rotation = run.one(ROTATION, "cache-rotation-schedule").inputs
    assert rotation["rotationRules"] == {"automaticallyAfterDays": 30}
    assert rotation["rotateImmediately"] is False
    assert rotation["secretId"] == run.outputs["cacheAuthSecretArn"]
    # Into the cache on its port from the function's own group, and HTTPS to the AWS APIs.
    own = run.one("aws:ec2/securityGroup:SecurityGroup", "cache-rotation-sg").id
    cache_sg = run.one("aws:ec2/securityGroup:SecurityGroup", "cache-sg").id
    into_cache = [
        (r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"])
        for r in run.of_type(expect.INGRESS)
        if r.inputs["securityGroupId"] == cache_sg
        and r.inputs.get("referencedSecurityGroupId") == own
    ]
    assert into_cache == [("tcp", 6379, 6379)]
    out = {
        (r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId") == cache_sg)
        for r in run.of_type(expect.EGRESS)
        if r.inputs["securityGroupId"] == own
    }
    assert (6379, True) in out and (443, False) in out
    assert {port for port, _ in out} == {6379, 443}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_i14_7_the_rotation_function_reads_exactly_the_environment_it_is_given(
    stack, dev_run, prod_run
):
    """The contract round trip (services/contract.py): what the component writes is what
    `load_cache_token_rotation_settings` reads, value for value, and nothing else."""
    run = {"dev": dev_run, "prod": prod_run}[stack]
    written = dict(run.one(FUNCTION, "cache-rotation-function").inputs["environment"]["variables"])
    read: set[str] = set()

    class Recording(dict):
        def get(self, name, default=None):
            read.add(name)
            return super().get(name, default)

    settings = load_cache_token_rotation_settings(Recording(written, AWS_REGION=REGION))
    assert set(written) <= read <= CACHE_TOKEN_ROTATION_ENVIRONMENT.variables
    assert (
        read
        >= CACHE_TOKEN_ROTATION_ENVIRONMENT.required | CACHE_TOKEN_ROTATION_ENVIRONMENT.optional
    )
    assert CACHE_TOKEN_ROTATION_ENVIRONMENT.required <= set(written)
    assert (settings.redis.host, settings.redis.port, settings.redis.tls) == (
        run.outputs["cacheEndpoint"],
        6379,
        True,
    )
    assert settings.redis.auth_secret_arn == run.outputs["cacheAuthSecretArn"]
    assert settings.replication_group_id == f"media-cache-{stack}"


def test_i14_7_prod_reaches_the_elasticache_api_through_an_interface_endpoint(prod_run):
    endpoints = {
        r.inputs["serviceName"]
        for r in prod_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if r.inputs["vpcEndpointType"] == "Interface"
    }
    assert {
        "com.amazonaws.eu-central-1.elasticache",
        "com.amazonaws.eu-central-1.secretsmanager",
    } <= endpoints


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_g6_cache_outputs(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    state = run.one(GROUP).state
    assert run.outputs["cacheEndpoint"] == state["primaryEndpointAddress"]
    assert run.outputs["cacheReaderEndpoint"] == state["readerEndpointAddress"]
    assert run.outputs["cacheAuthSecretArn"] == run.one(SECRET, "cache-auth-secret").state["arn"]


def test_g6_no_cache_secret_output_when_tls_is_off():
    run = run_stack("dev", {"cacheTransitEncryption": False})
    assert run.warnings == [TLS_WARNING]
    assert "cacheAuthSecretArn" not in run.outputs
    assert run.one(GROUP).inputs["transitEncryptionEnabled"] is False


@pytest.mark.parametrize("region", ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"])
def test_g1_cache_in_every_region_without_warnings(region_runs, region):
    run = region_runs["dev", region]
    assert run.warnings == []
    group = run.one(GROUP).inputs
    assert group["preferredCacheClusterAzs"] == run.outputs["availabilityZones"]
    assert all(z.startswith(region) for z in group["preferredCacheClusterAzs"])
    assert run.outputs["cacheAuthSecretArn"].startswith(f"arn:aws:secretsmanager:{region}:")


# -- G3 decision: the cache is rebuildable; C4 name rules of its own kinds ----------------------


def test_g3_cache_group_is_never_protected_the_final_snapshot_keeps_its_data(namer, context):
    """Unlike Aurora, the group holds sessions and data rebuilt from the database: data
    protection gives it a final snapshot (under the protected cache key) but no `protect`, so
    a change that replaces the group is not blocked."""
    for protect_data in (False, True):
        run, _ = build(namer, context, protect_data=protect_data)
        assert [
            (r.name, r.protect, r.retain_on_delete)
            for r in run.resources
            if r.protect or r.retain_on_delete
        ] == []


def test_subnet_group_and_final_snapshot_names_are_checked_with_elasticache_rules(
    namer, context, monkeypatch
):
    import components.cache as cache_module
    from components.naming import NameKind, check_name

    checked: list[tuple[str, NameKind]] = []

    def recording_check(name, kind):
        checked.append((name, kind))
        check_name(name, kind)

    monkeypatch.setattr(cache_module, "check_name", recording_check)
    monkeypatch.setattr("components.data_tier.check_name", recording_check)
    monkeypatch.setattr("components.naming.check_name", recording_check)
    build(namer, context, protect_data=True)
    kinds = {name: kind for name, kind in checked}
    assert kinds["media-cache-subnets-test"] is NameKind.ELASTICACHE_SUBNET_GROUP
    assert kinds["media-cache-test-final-xxxxxxxx"] is NameKind.ELASTICACHE_SNAPSHOT
