"""AnalyticsStream (S1-S5): capacity mode, retention, CMK, grants, alarms, bad args and config."""

from __future__ import annotations

import json
from dataclasses import replace

import pulumi
import pulumi_aws as aws
import pytest

from components.iam import Grant
from components.stream import (
    AnalyticsStream,
    AnalyticsStreamArgs,
    StreamMode,
    capacity_inputs,
    stream_read_grants,
    stream_write_grants,
)
from offline.engine import ACCOUNT_ID, run_components, run_stack
from stack_config import ConfigError, parse_settings
from tests.infra.expect import assert_rejected, assert_role_policy, guarded

REGION = "eu-central-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-alarms-test"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/media-kinesis-test"
STREAM = "aws:kinesis/stream:Stream"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"

WRITE_STATEMENTS = [
    {
        "Sid": "StreamWrite",
        "Effect": "Allow",
        "Action": ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary"],
        "Resource": [STREAM_ARN],
    },
    {
        "Sid": "StreamKeyEncrypt",
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey"],
        "Resource": [KEY_ARN],
        "Condition": {"StringEquals": {"kms:EncryptionContext:aws:kinesis:arn": STREAM_ARN}},
    },
]
READ_STATEMENTS = [
    {
        "Sid": "StreamRead",
        "Effect": "Allow",
        "Action": [
            "kinesis:GetRecords",
            "kinesis:GetShardIterator",
            "kinesis:DescribeStream",
            "kinesis:DescribeStreamSummary",
            "kinesis:ListShards",
        ],
        "Resource": [STREAM_ARN],
    },
    {
        "Sid": "StreamKeyDecrypt",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": [KEY_ARN],
        "Condition": {"StringEquals": {"kms:EncryptionContext:aws:kinesis:arn": STREAM_ARN}},
    },
]


@pytest.fixture
def base_args(namer) -> AnalyticsStreamArgs:
    return AnalyticsStreamArgs(namer=namer, kms_key_arn=KEY_ARN, alarm_topic_arn=TOPIC_ARN)


def build(args: AnalyticsStreamArgs, *, grants: bool = False):
    def program():
        stream = AnalyticsStream("stream", args)
        if grants:
            role = aws.iam.Role("producer", assume_role_policy="{}")
            stream.grant_write("producer-stream-write", role)
            stream.grant_read("producer-stream-read", role)

    return run_components(program, region=REGION)


# --- S1 capacity mode ---------------------------------------------------------------------


def test_s1_default_is_on_demand_without_shard_count(base_args):
    stream = build(base_args).one(STREAM)
    assert stream.inputs["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert "shardCount" not in stream.inputs


def test_s1_provisioned_sets_mode_and_shard_count(base_args):
    args = replace(base_args, mode=StreamMode.PROVISIONED, shard_count=4)
    stream = build(args).one(STREAM)
    assert stream.inputs["streamModeDetails"] == {"streamMode": "PROVISIONED"}
    assert stream.inputs["shardCount"] == 4


def test_s1_capacity_inputs_pure():
    assert capacity_inputs(StreamMode.ON_DEMAND, None) == {
        "stream_mode_details": {"stream_mode": "ON_DEMAND"}
    }
    assert capacity_inputs(StreamMode.PROVISIONED, 3) == {
        "stream_mode_details": {"stream_mode": "PROVISIONED"},
        "shard_count": 3,
    }


def test_g2_stream_name_from_namer_and_name_tag(base_args):
    stream = build(base_args).one(STREAM)
    assert stream.inputs["name"] == "media-kinesis-test"
    assert stream.inputs["tags"] == {"Name": "media-kinesis-test"}


# --- S2 retention, S3 encryption, G3 destroy ----------------------------------------------


def test_s2_retention_default_24_hours(base_args):
    assert build(base_args).one(STREAM).inputs["retentionPeriod"] == 24


def test_s2_retention_from_args(base_args):
    stream = build(replace(base_args, retention_hours=168)).one(STREAM)
    assert stream.inputs["retentionPeriod"] == 168


def test_s3_encrypted_with_the_stream_cmk_arn(base_args):
    stream = build(base_args).one(STREAM)
    assert stream.inputs["encryptionType"] == "KMS"
    assert stream.inputs["kmsKeyId"] == KEY_ARN


def test_g3_consumers_deregistered_on_destroy_by_default(base_args):
    assert build(base_args).one(STREAM).inputs["enforceConsumerDeletion"] is True


def test_g3_data_protection_keeps_consumers(base_args):
    stream = build(replace(base_args, protect_data=True)).one(STREAM)
    assert stream.inputs["enforceConsumerDeletion"] is False


# --- S4 grants ------------------------------------------------------------------------------


def test_s4_write_grants_are_exact_and_reusable():
    statements = [g.statement() for g in stream_write_grants(STREAM_ARN, KEY_ARN)]
    assert statements == WRITE_STATEMENTS


def test_s4_read_grants_are_exact_and_reusable():
    grants = stream_read_grants(STREAM_ARN, KEY_ARN)
    assert all(isinstance(g, Grant) for g in grants)
    assert [g.statement() for g in grants] == READ_STATEMENTS


def test_s4_grant_write_attaches_exact_producer_policy(base_args):
    run = build(base_args, grants=True)
    assert_role_policy(run, "producer-stream-write", "producer", WRITE_STATEMENTS)


def test_s4_grant_read_attaches_exact_consumer_policy(base_args):
    run = build(base_args, grants=True)
    assert_role_policy(run, "producer-stream-read", "producer", READ_STATEMENTS)


def test_s4_grant_helpers_return_the_role_policy(base_args):
    """Each helper returns the policy it attached (callers `depends_on` it), with its own
    statements: the write helper never hands back the read policy or the reverse."""

    def program():
        stream = AnalyticsStream("stream", base_args)
        role = aws.iam.Role("producer", assume_role_policy="{}")
        for kind, policy in (
            ("write", stream.grant_write("w", role)),
            ("read", stream.grant_read("r", role)),
        ):
            pulumi.export(f"{kind}_urn", policy.urn)
            pulumi.export(f"{kind}_policy", policy.policy)

    run = run_components(program, region=REGION)
    assert run.outputs["write_urn"] == run.one(ROLE_POLICY, "w").urn
    assert run.outputs["read_urn"] == run.one(ROLE_POLICY, "r").urn
    assert json.loads(run.outputs["write_policy"])["Statement"] == WRITE_STATEMENTS
    assert json.loads(run.outputs["read_policy"])["Statement"] == READ_STATEMENTS


# --- S5 alarms ------------------------------------------------------------------------------


def alarm(run, name: str) -> dict:
    return run.one(ALARM, name).inputs


def test_s5_iterator_age_alarm(base_args):
    inputs = alarm(build(replace(base_args, iterator_age_alarm_ms=45000)), "stream-iterator-age")
    assert inputs["namespace"] == "AWS/Kinesis"
    assert inputs["metricName"] == "GetRecords.IteratorAgeMilliseconds"
    assert inputs["dimensions"] == {"StreamName": "media-kinesis-test"}
    assert inputs["statistic"] == "Maximum"
    assert inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert inputs["threshold"] == 45000
    assert inputs["alarmActions"] == [TOPIC_ARN]
    assert inputs["treatMissingData"] == "notBreaching"


@pytest.mark.parametrize("direction", ["write", "read"])
def test_s5_throttling_alarms(base_args, direction):
    inputs = alarm(build(base_args), f"stream-{direction}-throttled")
    assert inputs["metricName"] == f"{direction.title()}ProvisionedThroughputExceeded"
    assert inputs["dimensions"] == {"StreamName": "media-kinesis-test"}
    assert inputs["statistic"] == "Sum"
    assert inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert inputs["threshold"] == 0
    assert inputs["alarmActions"] == [TOPIC_ARN]
    assert inputs["name"] == f"media-kinesis-{direction}-throttled-test"


def test_s5_exactly_three_stream_alarms(base_args):
    assert sorted(a.name for a in build(base_args).of_type(ALARM)) == [
        "stream-iterator-age",
        "stream-read-throttled",
        "stream-write-throttled",
    ]


# --- bad args -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": StreamMode.PROVISIONED, "shard_count": 0}, "shard_count=0: allowed 1..500"),
        ({"mode": StreamMode.PROVISIONED, "shard_count": 501}, "shard_count=501: allowed 1..500"),
        ({"shard_count": 2}, "shard_count=2: allowed unset (default 1) when mode is ON_DEMAND"),
        ({"retention_hours": 23}, "retention_hours=23: allowed 24..8760"),
        ({"retention_hours": 8761}, "retention_hours=8761: allowed 24..8760"),
        ({"iterator_age_alarm_ms": 999}, "iterator_age_alarm_ms=999: allowed 1000..604800000"),
    ],
)
def test_bad_args_rejected_before_any_resource(base_args, changes, message):
    assert_rejected(replace(base_args, **changes), message)


def test_bad_args_report_every_problem_at_once(base_args):
    with pytest.raises(ValueError) as error:
        replace(base_args, shard_count=2, retention_hours=1).validate()
    assert "shard_count=2: allowed unset" in str(error.value)
    assert "retention_hours=1: allowed 24..8760" in str(error.value)


def test_bad_args_register_nothing(base_args):
    with pytest.raises(ValueError, match=r"retention_hours=1: allowed 24\.\.8760") as error:
        build(replace(base_args, retention_hours=1))
    assert error.value.registered == []  # type: ignore[attr-defined]


# --- bad config (G8) --------------------------------------------------------------------------


def settings_problems(raw: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as error:
        parse_settings(raw, project="media-pipeline", stack="test", region=REGION)
    return str(error.value)


@pytest.mark.parametrize("hours", ["23", "8761"])
def test_g8_retention_out_of_range_rejected(hours):
    assert f"streamRetentionHours={hours}: allowed 24..8760" in settings_problems(
        {"streamRetentionHours": hours}
    )


def test_g8_unknown_stream_mode_rejected():
    assert 'streamMode="PAY_PER_USE": allowed one of ON_DEMAND, PROVISIONED' in (
        settings_problems({"streamMode": "PAY_PER_USE"})
    )


def test_g8_whole_program_fails_on_shard_count_with_on_demand():
    with pytest.raises(ConfigError) as error:
        run_stack("prod", {"streamShardCount": 8})
    assert (
        "streamShardCount=8: allowed unset (default 1) when streamMode is ON_DEMAND (AWS "
        "sizes on-demand streams itself)"
    ) in error.value.problems
    assert error.value.registered == []  # type: ignore[attr-defined]


# --- whole program ----------------------------------------------------------------------------


def key_arn(run, purpose: str) -> str:
    return run.one("aws:kms/key:Key", f"keys-{purpose}-key").state["arn"]


def test_program_dev_stream_is_provisioned_one_shard_24h(dev_run):
    stream = dev_run.one(STREAM, "stream-stream")
    assert stream.inputs["streamModeDetails"] == {"streamMode": "PROVISIONED"}
    assert stream.inputs["shardCount"] == 1
    assert stream.inputs["retentionPeriod"] == 24
    assert stream.inputs["enforceConsumerDeletion"] is True
    assert stream.inputs["name"] == "media-kinesis-dev"


def test_program_prod_stream_is_on_demand_168h_and_protected(prod_run):
    stream = prod_run.one(STREAM, "stream-stream")
    assert stream.inputs["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert "shardCount" not in stream.inputs
    assert stream.inputs["retentionPeriod"] == 168
    assert stream.inputs["enforceConsumerDeletion"] is False


@pytest.mark.parametrize("run_name", ["dev_run", "prod_run"])
def test_program_stream_uses_the_stream_key_and_alarm_topic(request, run_name):
    run = request.getfixturevalue(run_name)
    stream = run.one(STREAM, "stream-stream")
    assert stream.inputs["encryptionType"] == "KMS"
    assert stream.inputs["kmsKeyId"] == key_arn(run, "stream")
    topic = run.one("aws:sns/topic:Topic", "alarms-topic").state["arn"]
    iterator = run.one(ALARM, "stream-iterator-age").inputs
    assert iterator["alarmActions"] == [topic]
    assert iterator["threshold"] == 60000  # alarmStreamIteratorAgeMs default


@pytest.mark.parametrize("run_name", ["dev_run", "prod_run"])
def test_g6_stream_outputs(request, run_name):
    run = request.getfixturevalue(run_name)
    stream = run.one(STREAM, "stream-stream")
    assert run.outputs["streamName"] == stream.inputs["name"]
    assert run.outputs["streamArn"] == stream.state["arn"]
    assert run.outputs["streamArn"].startswith(f"arn:aws:kinesis:{run.region}:")


def test_program_iterator_age_threshold_from_config():
    run = run_stack("dev", {"alarmStreamIteratorAgeMs": 120000})
    assert run.one(ALARM, "stream-iterator-age").inputs["threshold"] == 120000


# --- G3 data protection ---------------------------------------------------------------------


def test_g3_stream_is_deleted_on_destroy_by_default(base_args):
    assert guarded(build(base_args, grants=True)) == set()


def test_g3_data_protection_protects_and_retains_only_the_stream(base_args):
    run = build(replace(base_args, protect_data=True), grants=True)
    assert guarded(run) == {(STREAM, "stream-stream", True, True)}
