"""Stack settings validation (G8): every bad value is reported, together, by key and allowed."""

from __future__ import annotations

import pytest
import yaml

from components.network import NatStrategy
from components.stream import StreamMode
from offline.engine import ROOT, run_stack, stack_config
from offline.schema import render_project_file
from stack_config import KEYS_BY_NAME, ConfigError, parse_settings


def parse(region: str | None = "eu-central-1", **raw: str):
    return parse_settings(raw, project="media-pipeline", stack="test", region=region)


def problems_of(region: str | None = "eu-central-1", **raw: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(region, **raw)
    return caught.value.problems


def test_defaults_are_secure_and_multi_az_g7():
    settings = parse()
    assert settings.stack_wide.az_count == 2
    assert settings.network.nat_strategy is NatStrategy.ONE_PER_AZ
    assert settings.network.vpc_endpoints is True
    assert settings.network.data_subnet_nacls is True
    assert settings.cache.transit_encryption is True
    assert settings.database.reader_count == 1
    assert settings.cache.node_count == 2
    assert settings.worker.min_tasks == 2
    assert settings.stream.mode is StreamMode.ON_DEMAND
    assert settings.protection.protect_data is False
    assert settings.log_retention_days == 30


BAD_CONFIGURATIONS = [
    (
        {"environmentSuffix": "Prod"},
        'environmentSuffix="Prod": allowed 1-10 lowercase letters or digits',
    ),
    ({"environmentSuffix": "averylongsuffix"}, 'environmentSuffix="averylongsuffix": allowed 1-10'),
    ({"environmentSuffix": ""}, 'environmentSuffix="": allowed 1-10 lowercase letters or digits'),
    (
        {"prefix": "Media_Co"},
        'prefix="Media_Co": allowed empty or lowercase letters, digits and single inner hyphens',
    ),
    ({"prefix": "a-very-long-company"}, 'prefix="a-very-long-company": allowed empty or lowercase'),
    (
        {"prefix": "media--x"},
        'prefix="media--x": allowed empty or lowercase letters, digits and single inner hyphens',
    ),
    ({"availabilityZoneCount": "1"}, "availabilityZoneCount=1: allowed 2..3"),
    ({"availabilityZoneCount": "4"}, "availabilityZoneCount=4: allowed 2..3"),
    (
        {"availabilityZoneCount": "two"},
        'availabilityZoneCount="two": allowed a value of type integer',
    ),
    (
        {"vpcCidr": "10.0.0.0/8"},
        'vpcCidr="10.0.0.0/8": allowed a private (RFC 1918) IPv4 network in CIDR form (such as 10.0.0.0/16), /16 to /20',
    ),
    (
        {"vpcCidr": "10.0.0.0/21"},
        'vpcCidr="10.0.0.0/21": allowed a private (RFC 1918) IPv4 network in CIDR form (such as 10.0.0.0/16), /16 to /20',
    ),
    ({"vpcCidr": "8.8.0.0/16"}, 'vpcCidr="8.8.0.0/16": allowed a private (RFC 1918)'),
    (
        {"vpcCidr": "10.0.0.1/16"},
        'vpcCidr="10.0.0.1/16": allowed a private (RFC 1918) IPv4 network in CIDR form',
    ),
    ({"natStrategy": "TWO"}, 'natStrategy="TWO": allowed one of ONE_PER_AZ, SINGLE, NONE'),
    (
        {"natStrategy": "NONE", "vpcEndpoints": "false"},
        'natStrategy="NONE": allowed ONE_PER_AZ or SINGLE unless vpcEndpoints is true',
    ),
    (
        {"natStrategy": "SINGLE", "dataProtection": "true"},
        'natStrategy="SINGLE": allowed ONE_PER_AZ or NONE when dataProtection is true',
    ),
    ({"logRetentionDays": "45"}, "logRetentionDays=45: allowed one of 1, 3, 5, 7, 14, 30, 60, 90"),
    ({"dataProtection": "yes"}, 'dataProtection="yes": allowed a value of type boolean'),
    (
        {"environmentSufix": "dev"},
        "environmentSufix: unknown key in namespace 'media-pipeline' (did you mean 'environmentSuffix'?)",
    ),
    (
        {"dataClassification": "secret"},
        'dataClassification="secret": allowed one of public, internal, confidential, restricted',
    ),
    ({"extraTags": '["Team"]'}, "extraTags=\"Team\": allowed 'Key=Value' with tag-safe characters"),
    (
        {"extraTags": '["aws:owner=x"]'},
        "extraTags=\"aws:owner=x\": allowed keys not starting with 'aws:'",
    ),
    ({"extraTags": '{"a": 1}'}, "allowed a value of type array"),
    ({"dbReaderCount": "0"}, "dbReaderCount=0: allowed 1..15"),
    ({"dbMinCapacity": "0.3"}, "dbMinCapacity=0.3: allowed 0..256 in steps of 0.5"),
    (
        {"dbMinCapacity": "0", "dbEngineVersion": "15.4"},
        "dbMinCapacity=0: allowed >= 0.5 on engine 15.4 (0 from 15.7)",
    ),
    ({"dbMinCapacity": "8", "dbMaxCapacity": "4"}, "dbMaxCapacity=4: allowed >= dbMinCapacity (8)"),
    (
        {"dbEngineVersion": "12.9"},
        'dbEngineVersion="12.9": allowed major or major.minor with major in 13, 14, 15, 16, 17',
    ),
    ({"dbBackupRetentionDays": "36"}, "dbBackupRetentionDays=36: allowed 1..35"),
    ({"dbBackupWindow": "2am"}, 'dbBackupWindow="2am": allowed hh:mm-hh:mm (UTC)'),
    (
        {"dbMaintenanceWindow": "sunday:03:00-sunday:04:00"},
        'dbMaintenanceWindow="sunday:03:00-sunday:04:00": allowed ddd:hh:mm-ddd:hh:mm',
    ),
    ({"cacheNodeCount": "1"}, "cacheNodeCount=1: allowed 2..6"),
    ({"cacheEngine": "memcached"}, 'cacheEngine="memcached": allowed one of valkey, redis'),
    (
        {"cacheEngine": "redis", "cacheEngineVersion": "8.0"},
        'cacheEngineVersion="8.0": allowed for redis: 6.2, 7.0, 7.1',
    ),
    (
        {"cacheEngine": "redis", "cacheEngineVersion": "6.2"},
        'cacheEngineVersion="6.2": allowed redis 7.0 or later while cacheTransitEncryption is true',
    ),
    ({"cacheNodeType": "t4g.micro"}, 'cacheNodeType="t4g.micro": allowed an ElastiCache node type'),
    (
        {"streamMode": "ON_DEMAND", "streamShardCount": "4"},
        "streamShardCount=4: allowed unset (default 1) when streamMode is ON_DEMAND",
    ),
    ({"streamRetentionHours": "12"}, "streamRetentionHours=12: allowed 24..8760"),
    (
        {"uploadMaxBytes": str(60 * 1024**3)},
        "uploadMaxBytes=64424509440: allowed <= 45 % of workerEphemeralStorageGiB (120 GiB = "
        "57982058496 bytes): the source and its renditions share the task's scratch",
    ),
    (
        {"sourceMaxDurationSeconds": "86400"},
        "sourceMaxDurationSeconds=86400: allowed a duration whose job fits SQS's 43200 s lease "
        "ceiling: sourceMaxDurationSeconds x transcodeSecondsPerMediaSecond (1.0) plus the "
        "transfer of uploadMaxBytes (53687091200) gives 88748 s",
    ),
    (
        {"dataProtection": "true", "uploadCorsOrigins": '["*"]'},
        'uploadCorsOrigins=["*"]: allowed explicit origins, no * when dataProtection is true '
        "(any web page could drive uploads)",
    ),
    (
        {"uploadContentTypes": '["video/mp4", "Video/MP4"]'},
        'uploadContentTypes=["video/mp4", "Video/MP4"]: allowed one or more distinct lowercase '
        "media types such as video/mp4",
    ),
    (
        {"uploadCorsOrigins": '["http://app.example.com"]'},
        'uploadCorsOrigins=["http://app.example.com"]: allowed distinct origins '
        "https://host[:port], http://localhost[:port] or *",
    ),
    ({"sourceRetention": "glacier"}, 'sourceRetention="glacier": allowed one of archive, delete'),
    (
        {"transcodeLadder": "1080"},
        'transcodeLadder="1080": allowed 1-8 distinct rungs height:kbps, even heights 144..2160, '
        "100..50000 kb/s",
    ),
    ({"queueMaxReceiveCount": "0"}, "queueMaxReceiveCount=0: allowed 1..100"),
    ({"workerCpu": "300"}, "workerCpu=300: allowed one of 256, 512, 1024, 2048, 4096, 8192, 16384"),
    (
        {"workerCpu": "256", "workerMemory": "4096"},
        "workerMemory=4096: allowed for workerCpu=256: 512..2048",
    ),
    (
        {"workerCpu": "1024", "workerMemory": "1024"},
        "workerMemory=1024: allowed for workerCpu=1024: 2048..8192 in steps of 1024",
    ),
    ({"workerMinTasks": "1"}, "workerMinTasks=1: allowed 0 or 2..200"),
    (
        {"workerMinTasks": "5", "workerMaxTasks": "3"},
        "workerMaxTasks=3: allowed >= workerMinTasks (5)",
    ),
    (
        {"workerSpotWeight": "0", "workerFargateWeight": "0"},
        "workerSpotWeight=0: allowed > 0 or workerFargateWeight > 0",
    ),
    (
        {"workerImage": "not an image"},
        'workerImage="not an image": allowed empty (build from services/worker)',
    ),
    ({"workerStopTimeoutSeconds": "121"}, "workerStopTimeoutSeconds=121: allowed 2..120"),
    ({"apiAuth": "COGNITO"}, 'apiAuth="COGNITO": allowed one of API_KEY, IAM'),
    ({"apiQuotaPeriod": "YEAR"}, 'apiQuotaPeriod="YEAR": allowed one of DAY, WEEK, MONTH'),
    ({"apiReservedConcurrency": "0"}, "apiReservedConcurrency=0: allowed -1 or 1..1000"),
    ({"apiCacheSizeGb": "2"}, 'apiCacheSizeGb="2": allowed empty (no cache) or one of 0.5, 1.6'),
    ({"apiWafRateLimit": "5"}, "apiWafRateLimit=5: allowed 10..2000000000"),
    (
        {"alarmEmail": "ops-at-example"},
        'alarmEmail="ops-at-example": allowed empty or an e-mail address',
    ),
    ({"auditTrailMode": "EXISTING"}, 'auditTrailExistingArn="": allowed a CloudTrail trail ARN'),
    (
        {"auditTrailExistingArn": "arn:aws:cloudtrail:eu-central-1:123456789012:trail/org"},
        "allowed empty unless auditTrailMode is EXISTING",
    ),
    (
        {"auditLogTransitionDays": "90", "auditLogExpirationDays": "60"},
        "auditLogExpirationDays=60: allowed more than auditLogTransitionDays (90)",
    ),
]


@pytest.mark.parametrize(
    ("raw", "message"),
    BAD_CONFIGURATIONS,
    ids=[next(iter(raw)) + f"-{i}" for i, (raw, _) in enumerate(BAD_CONFIGURATIONS)],
)
def test_bad_configuration_is_rejected_with_key_value_and_allowed_g8(raw, message):
    problems = problems_of(**raw)
    assert any(message in p for p in problems), problems


def test_region_must_be_set_g8():
    assert problems_of(region=None) == [
        "aws:region=null: allowed an AWS region name such as eu-central-1 (set it with "
        "`pulumi config set aws:region ...`)"
    ]


def test_every_problem_is_reported_together_in_one_error_g8():
    with pytest.raises(ConfigError) as caught:
        parse(
            environmentSuffix="DEV",
            availabilityZoneCount="5",
            workerCpu="100",
            logRetentionDays="10",
        )
    message = str(caught.value)
    assert message.startswith("invalid configuration for stack (4 problem(s)):")
    for key in ("environmentSuffix", "availabilityZoneCount", "workerCpu", "logRetentionDays"):
        assert f"  - {key}=" in message


def test_az_count_larger_than_the_region_offers_is_rejected_g1():
    settings = parse(availabilityZoneCount="3")
    with pytest.raises(
        ConfigError,
        match=r"availabilityZoneCount=3: region eu-central-1 has "
        r"only 2 available zone\(s\).*allowed: 2..2",
    ):
        settings.require_zones(["eu-central-1a", "eu-central-1b"])


def test_zones_are_taken_in_name_order_g1():
    settings = parse(availabilityZoneCount="2")
    assert settings.require_zones(["x-1c", "x-1a", "x-1b"]) == ["x-1a", "x-1b"]


def test_bad_stack_fails_before_any_resource_is_registered_g8():
    with pytest.raises(ConfigError) as caught:
        run_stack("dev", {"environmentSufix": "dev", "workerMemory": 3})
    assert caught.value.registered == []
    assert len(caught.value.problems) == 2


def test_region_without_enough_zones_fails_before_cloud_resources_g1():
    with pytest.raises(ConfigError, match="region us-west-1 has only 2"):
        run_stack("prod", {"aws:region": "us-west-1"})


def test_data_protection_switches_every_destroy_setting_together_g3():
    off, on = parse().protection, parse(dataProtection="true").protection
    assert (off.key_deletion_window_days, off.secret_recovery_window_days, off.destroyable) == (
        7,
        0,
        True,
    )
    assert (on.key_deletion_window_days, on.secret_recovery_window_days, on.destroyable) == (
        30,
        30,
        False,
    )


def test_pulumi_yaml_declares_every_key_with_type_description_default():
    """Every key has a default there, except those whose default is the stack's own (the
    stack name): a project-wide default would be injected into every stack."""
    assert (ROOT / "Pulumi.yaml").read_text() == render_project_file()
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert list(declared) == list(KEYS_BY_NAME)
    assert all({"type", "description"} <= set(v) for v in declared.values())
    without_default = [key for key, spec in declared.items() if "default" not in spec]
    assert without_default == ["environmentSuffix"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_use_only_declared_keys(stack):
    names = set(KEYS_BY_NAME)
    project_keys = [
        k.split(":", 1)[1] for k in stack_config(stack) if k.startswith("media-pipeline:")
    ]
    assert project_keys and set(project_keys) <= names


def test_readme_config_table_lists_every_key_with_its_default():
    from offline.schema import render_readme

    readme = (ROOT / "README.md").read_text()
    assert readme == render_readme(readme)
    for key in KEYS_BY_NAME:
        assert f"| `{key}` |" in readme


# -- environmentSuffix defaults to the stack name (G2; deploy-ready) ------------------------


def test_g2_suffix_defaults_to_the_stack_name_not_to_dev():
    settings = parse_settings({}, project="media-pipeline", stack="staging", region="eu-west-1")
    assert settings.stack_wide.suffix == "staging"
    assert settings.namer().name("jobs").endswith("-staging")


def test_g2_a_set_suffix_wins_over_the_stack_name():
    settings = parse_settings(
        {"environmentSuffix": "qa"}, project="media-pipeline", stack="staging", region="eu-west-1"
    )
    assert settings.stack_wide.suffix == "qa"


def test_g2_a_stack_name_that_is_no_valid_suffix_says_to_set_one():
    with pytest.raises(ConfigError) as caught:
        parse_settings({}, project="media-pipeline", stack="staging-eu", region="eu-west-1")
    assert caught.value.problems == [
        'environmentSuffix="staging-eu": allowed 1-10 lowercase letters or digits'
        " (the stack name, as environmentSuffix is not set: set environmentSuffix)"
    ]


def test_g2_pulumi_yaml_declares_no_suffix_default_so_the_cli_cannot_inject_dev():
    spec = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]["environmentSuffix"]
    assert "default" not in spec
    assert "each stack's own by default" in spec["description"]
