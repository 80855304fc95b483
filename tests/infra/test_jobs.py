"""JobQueue (W5, W6): encrypted queues, redrive, TLS-only policies, the Pipe, alarms, grants."""

from __future__ import annotations

import json
from dataclasses import replace

import pulumi
import pulumi_aws as aws
import pytest

from components.iam import Grant
from components.jobs import (
    JobQueue,
    JobQueueArgs,
    JobQueueSettings,
    StartingPosition,
    consume_grants,
    filter_pattern,
)
from components.stream import stream_read_grants
from offline.engine import ACCOUNT_ID, run_components, run_stack
from stack_config import ConfigError, parse_settings
from tests.infra.expect import assert_rejected, assert_role_policy, guarded

REGION = "eu-central-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/aaaaaaaa-0000-0000-0000-000000000001"
STREAM_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/aaaaaaaa-0000-0000-0000-000000000002"
LOG_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/aaaaaaaa-0000-0000-0000-000000000003"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-alarms-test"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/media-kinesis-test"
SQS_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:"
SQS_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/"
JOBS_ARN, DLQ_ARN, FAILURES_ARN = (
    SQS_ARN + n for n in ("media-jobs-test", "media-jobs-dlq-test", "media-pipe-failures-test")
)
LOG_GROUP_ARN = (
    f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/vendedlogs/pipes/media-jobs-pipe-test"
)
QUEUE = "aws:sqs/queue:Queue"
PIPE = "aws:pipes/pipe:Pipe"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MESSAGING_KEY_STATEMENT = {
    "Sid": "MessagingKey",
    "Effect": "Allow",
    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
    "Resource": [KEY_ARN],
}


def job_queue_args(namer, context) -> JobQueueArgs:
    return JobQueueArgs(
        namer=namer,
        context=context,
        kms_key_arn=KEY_ARN,
        alarm_topic_arn=TOPIC_ARN,
        source_stream_arn=STREAM_ARN,
        source_read_grants=tuple(stream_read_grants(STREAM_ARN, STREAM_KEY_ARN)),
        logs_key_arn=LOG_KEY_ARN,
        log_retention_days=14,
    )


@pytest.fixture
def base_args(namer, context) -> JobQueueArgs:
    return job_queue_args(namer, context)


def build(args: JobQueueArgs, *, worker: bool = False):
    def program():
        jobs = JobQueue("jobs", args)
        if worker:
            role = aws.iam.Role("worker", assume_role_policy="{}")
            jobs.grant_consume("worker-jobs", role)

    return run_components(program, region=REGION)


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    """The default queue, shared by the tests that only read it."""
    return build(job_queue_args(module_namer, module_context))


def queue(run, role: str):
    return run.one(QUEUE, f"jobs-{role}")


def pipe_source(run) -> dict:
    return run.one(PIPE).inputs["sourceParameters"]


# --- queues: encryption, retention, polling (W5, W6, K1) -------------------------------------


@pytest.mark.parametrize(
    ("role", "name"),
    [
        ("queue", "media-jobs-test"),
        ("dlq", "media-jobs-dlq-test"),
        ("pipe-failures", "media-pipe-failures-test"),
    ],
)
def test_k1_every_queue_encrypted_with_the_messaging_cmk(run, role, name):
    inputs = queue(run, role).inputs
    assert inputs["name"] == name
    assert inputs["tags"] == {"Name": name}
    assert inputs["kmsMasterKeyId"] == KEY_ARN
    assert inputs["kmsDataKeyReusePeriodSeconds"] == 3600
    assert "sqsManagedSseEnabled" not in inputs


def test_w5_jobs_queue_visibility_long_polling_and_4_day_retention(base_args):
    inputs = queue(build(replace(base_args, visibility_timeout_seconds=2400)), "queue").inputs
    assert inputs["visibilityTimeoutSeconds"] == 2400
    assert inputs["receiveWaitTimeSeconds"] == 20
    assert inputs["messageRetentionSeconds"] == 345600
    assert "redrivePolicy" not in inputs  # the RedrivePolicy resource owns it


@pytest.mark.parametrize("role", ["dlq", "pipe-failures"])
def test_w6_failure_queues_keep_messages_14_days(run, role):
    assert queue(run, role).inputs["messageRetentionSeconds"] == 1209600


# --- redrive (W6) --------------------------------------------------------------------------


def test_w6_redrive_to_dlq_with_integer_max_receive_count(base_args):
    run = build(replace(base_args, max_receive_count=7))
    redrive = run.one("aws:sqs/redrivePolicy:RedrivePolicy")
    assert redrive.inputs["queueUrl"] == SQS_URL + "media-jobs-test"
    document = json.loads(redrive.inputs["redrivePolicy"])
    assert document == {"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 7}
    assert type(document["maxReceiveCount"]) is int


def test_w6_dlq_accepts_redrive_only_from_the_jobs_queue(run):
    allow = run.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert allow.inputs["queueUrl"] == SQS_URL + "media-jobs-dlq-test"
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [JOBS_ARN],
    }


# --- queue policies: TLS only ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "arn", "name"),
    [
        ("queue", JOBS_ARN, "media-jobs-test"),
        ("dlq", DLQ_ARN, "media-jobs-dlq-test"),
        ("pipe-failures", FAILURES_ARN, "media-pipe-failures-test"),
    ],
)
def test_every_queue_denies_requests_without_tls(run, role, arn, name):
    policy = run.one("aws:sqs/queuePolicy:QueuePolicy", f"jobs-{role}-policy")
    assert policy.inputs["queueUrl"] == SQS_URL + name
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


# --- the pipe (W5) --------------------------------------------------------------------------


def test_w5_pipe_reads_the_stream_and_targets_the_jobs_queue(run):
    pipe = run.one(PIPE, "jobs-pipe").inputs
    assert pipe["name"] == "media-jobs-pipe-test"
    assert pipe["source"] == STREAM_ARN
    assert pipe["target"] == JOBS_ARN
    assert pipe["roleArn"] == run.one("aws:iam/role:Role", "jobs-pipe-role").state["arn"]
    assert "kmsKeyIdentifier" not in pipe


def test_w5_pipe_forwards_only_job_requested(run):
    filters = pipe_source(run)["filterCriteria"]["filters"]
    assert [json.loads(f["pattern"]) for f in filters] == [{"data": {"type": ["job.requested"]}}]


def test_w5_filter_pattern_pure():
    assert json.loads(filter_pattern(["a.b", "c.d"])) == {"data": {"type": ["a.b", "c.d"]}}


def test_w5_sqs_body_is_the_event_json(run):
    assert run.one(PIPE).inputs["targetParameters"] == {"inputTemplate": "<$.data>"}


def test_w6_pipe_retries_are_bounded_and_failures_go_to_own_queue(run):
    assert pipe_source(run)["kinesisStreamParameters"] == {
        "startingPosition": "TRIM_HORIZON",
        "batchSize": 10,
        "maximumRetryAttempts": 3,
        "maximumRecordAgeInSeconds": 3600,
        "onPartialBatchItemFailure": "AUTOMATIC_BISECT",
        "deadLetterConfig": {"arn": FAILURES_ARN},
    }


def test_w6_pipe_limits_from_args(base_args):
    args = replace(
        base_args,
        starting_position=StartingPosition.LATEST,
        batch_size=5,
        maximum_retry_attempts=5,
        maximum_record_age_seconds=7200,
    )
    kinesis = pipe_source(build(args))["kinesisStreamParameters"]
    assert (
        kinesis["startingPosition"],
        kinesis["batchSize"],
        kinesis["maximumRetryAttempts"],
        kinesis["maximumRecordAgeInSeconds"],
    ) == ("LATEST", 5, 5, 7200)


def test_o1_pipe_logs_errors_to_an_encrypted_log_group(run):
    group = run.one("aws:cloudwatch/logGroup:LogGroup", "jobs-pipe-logs").inputs
    assert group["name"] == "/aws/vendedlogs/pipes/media-jobs-pipe-test"
    assert group["kmsKeyId"] == LOG_KEY_ARN
    assert group["retentionInDays"] == 14
    assert run.one(PIPE).inputs["logConfiguration"] == {
        "level": "ERROR",
        "cloudwatchLogsLogDestination": {"logGroupArn": LOG_GROUP_ARN},
    }


def test_pipe_role_trusts_pipes_for_this_account_only(run):
    role = run.one("aws:iam/role:Role", "jobs-pipe-role").inputs
    assert role["name"] == "media-jobs-pipe-test"
    assert json.loads(role["assumeRolePolicy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pipes.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}},
            }
        ],
    }


def test_pipe_source_policy_is_the_streams_read_grants(run):
    policy = json.loads(run.one(ROLE_POLICY, "jobs-pipe-source").inputs["policy"])
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [g.statement() for g in stream_read_grants(STREAM_ARN, STREAM_KEY_ARN)],
    }


def test_pipe_target_policy_sends_to_jobs_and_failures_only(run):
    policy = json.loads(run.one(ROLE_POLICY, "jobs-pipe-target").inputs["policy"])
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SendJobsAndFailures",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [JOBS_ARN, FAILURES_ARN],
            },
            MESSAGING_KEY_STATEMENT,
            {
                "Sid": "PipeLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [LOG_GROUP_ARN + ":*"],
            },
        ],
    }


def test_pipe_policies_attach_to_the_pipe_role(run):
    role_id = run.one("aws:iam/role:Role", "jobs-pipe-role").id
    for name in ("jobs-pipe-source", "jobs-pipe-target"):
        assert run.one(ROLE_POLICY, name).inputs["role"] == role_id


def test_pipe_depends_on_both_role_policies(run):
    """Pitfall 91: a pipe created before its policies exist fails to create."""
    dependencies = run.one(PIPE).dependencies
    for name in ("jobs-pipe-source", "jobs-pipe-target"):
        assert run.one(ROLE_POLICY, name).urn in dependencies


# --- alarms (W6, O2) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alarm", "queue_name", "metric", "threshold"),
    [
        ("jobs-dlq-depth", "media-jobs-dlq-test", "ApproximateNumberOfMessagesVisible", 0),
        (
            "jobs-pipe-failures-depth",
            "media-pipe-failures-test",
            "ApproximateNumberOfMessagesVisible",
            0,
        ),
        ("jobs-oldest-job", "media-jobs-test", "ApproximateAgeOfOldestMessage", 900),
    ],
)
def test_w6_o2_queue_alarms(base_args, alarm, queue_name, metric, threshold):
    run = build(replace(base_args, oldest_message_alarm_seconds=900))
    inputs = run.one(ALARM, alarm).inputs
    assert inputs["namespace"] == "AWS/SQS"
    assert inputs["metricName"] == metric
    assert inputs["dimensions"] == {"QueueName": queue_name}
    assert inputs["statistic"] == "Maximum"
    assert inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert inputs["threshold"] == threshold
    assert inputs["alarmActions"] == [TOPIC_ARN]
    assert inputs["okActions"] == [TOPIC_ARN]


def test_exactly_three_queue_alarms(run):
    assert sorted(a.name for a in run.of_type(ALARM)) == [
        "jobs-dlq-depth",
        "jobs-oldest-job",
        "jobs-pipe-failures-depth",
    ]


# --- grant_consume (W5, W6) ----------------------------------------------------------------


CONSUME_STATEMENTS = [
    {
        "Sid": "ConsumeJobs",
        "Effect": "Allow",
        "Action": [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        ],
        "Resource": [JOBS_ARN],
    },
    {
        "Sid": "DeadLetterJobs",
        "Effect": "Allow",
        "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
        "Resource": [DLQ_ARN],
    },
    MESSAGING_KEY_STATEMENT,
]


def test_w5_consume_grants_pure():
    grants = consume_grants(JOBS_ARN, DLQ_ARN, KEY_ARN)
    assert all(isinstance(g, Grant) for g in grants)
    assert [g.statement() for g in grants] == CONSUME_STATEMENTS


def test_w5_grant_consume_attaches_exact_worker_policy(base_args):
    assert_role_policy(build(base_args, worker=True), "worker-jobs", "worker", CONSUME_STATEMENTS)


WIRING = (
    "queue_url",
    "queue_arn",
    "queue_name",
    "dlq_url",
    "dlq_arn",
    "dlq_name",
    "failure_queue_url",
    "pipe_arn",
    "max_receive_count",
)


def test_grant_consume_returns_the_role_policy_and_exposes_wiring(base_args):
    """The returned policy is the one attached (callers `depends_on` it); each attribute the
    program wires resolves to its own queue, not a sibling's (W5, W6)."""

    def program():
        jobs = JobQueue("jobs", base_args)
        role = aws.iam.Role("worker", assume_role_policy="{}")
        policy = jobs.grant_consume("worker-jobs", role)
        pulumi.export("policy_urn", policy.urn)
        pulumi.export("policy_document", policy.policy)
        for attribute in WIRING:
            pulumi.export(attribute, getattr(jobs, attribute))

    run = run_components(program, region=REGION)
    assert run.outputs["policy_urn"] == run.one(ROLE_POLICY, "worker-jobs").urn
    assert json.loads(run.outputs["policy_document"]) == {
        "Version": "2012-10-17",
        "Statement": CONSUME_STATEMENTS,
    }
    assert {a: run.outputs[a] for a in WIRING} == {
        "queue_url": SQS_URL + "media-jobs-test",
        "queue_arn": JOBS_ARN,
        "queue_name": "media-jobs-test",
        "dlq_url": SQS_URL + "media-jobs-dlq-test",
        "dlq_arn": DLQ_ARN,
        "dlq_name": "media-jobs-dlq-test",
        "failure_queue_url": SQS_URL + "media-pipe-failures-test",
        "pipe_arn": run.one(PIPE).state["arn"],
        "max_receive_count": 5,
    }
    assert run.outputs["pipe_arn"] == (
        f"arn:aws:pipes:{REGION}:{ACCOUNT_ID}:pipe/media-jobs-pipe-test"
    )


# --- bad args -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"visibility_timeout_seconds": 50000},
            "visibility_timeout_seconds=50000: allowed 60..43200",
        ),
        ({"max_receive_count": 0}, "max_receive_count=0: allowed 1..1000"),
        (
            {"maximum_retry_attempts": -1},
            "maximum_retry_attempts=-1: allowed 0..10000 (finite; -1 would retry forever)",
        ),
        (
            {"maximum_record_age_seconds": -1},
            "maximum_record_age_seconds=-1: allowed 60..604800 (finite",
        ),
        ({"batch_size": 0}, "batch_size=0: allowed 1..10 (an SQS target takes at most 10"),
        ({"batch_size": 11}, "batch_size=11: allowed 1..10 (an SQS target takes at most 10"),
        (
            {"oldest_message_alarm_seconds": 10},
            "oldest_message_alarm_seconds=10: allowed 60..1209600",
        ),
        ({"log_retention_days": 8}, "log_retention_days=8: allowed one of 1, 3, 5, 7, 14"),
        ({"event_types": ()}, "event_types=[]: allowed one or more non-empty event type names"),
        ({"source_read_grants": ()}, "source_read_grants=(): allowed the stream's read grants"),
    ],
)
def test_bad_args_rejected(base_args, changes, message):
    assert_rejected(replace(base_args, **changes), message)


def test_bad_args_report_every_problem_at_once(base_args):
    with pytest.raises(ValueError, match=r"max_receive_count=0.*batch_size=0"):
        replace(base_args, max_receive_count=0, batch_size=0).validate()


def test_bad_args_register_nothing(base_args):
    def program():
        JobQueue("jobs", replace(base_args, max_receive_count=0))

    with pytest.raises(ValueError, match="max_receive_count=0") as error:
        run_components(program, region=REGION)
    assert error.value.registered == []  # type: ignore[attr-defined]


# --- bad config (G8) --------------------------------------------------------------------------


def settings_problems(raw: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as error:
        parse_settings(raw, project="media-pipeline", stack="test", region=REGION)
    return str(error.value)


def test_g8_job_timeout_is_no_queue_setting_any_more_m4():
    """The job timeout is derived from the source limits (worker tier); the visibility no
    longer has to exceed it because the worker extends its lease while a job runs."""
    text = settings_problems({"jobTimeoutSeconds": "900"})
    assert "jobTimeoutSeconds: unknown key in namespace 'media-pipeline'" in text
    assert "jobTimeoutSeconds" not in {d.key for _, d in JobQueueSettings.declarations()}


def test_g8_max_receive_count_above_range_rejected():
    """The lower bound (0) is a row of test_settings.BAD_CONFIGURATIONS; the upper one is
    SQS's own limit (maxReceiveCount 1-1000)."""
    assert "queueMaxReceiveCount=1001: allowed 1..1000" in settings_problems(
        {"queueMaxReceiveCount": "1001"}
    )


def test_g8_whole_program_fails_on_visibility_below_sqs_range():
    with pytest.raises(ConfigError, match="queueVisibilityTimeoutSeconds=59") as error:
        run_stack("dev", {"queueVisibilityTimeoutSeconds": 59})
    assert error.value.registered == []  # type: ignore[attr-defined]


# --- whole program (dev, prod, every supported region) ---------------------------------------


def key_arn(run, purpose: str) -> str:
    return run.one("aws:kms/key:Key", f"keys-{purpose}-key").state["arn"]


@pytest.mark.parametrize("run_name", ["dev_run", "prod_run"])
def test_program_queues_use_the_messaging_key_and_config(request, run_name):
    run = request.getfixturevalue(run_name)
    messaging = key_arn(run, "messaging")
    for role in ("queue", "dlq", "pipe-failures"):
        assert queue(run, role).inputs["kmsMasterKeyId"] == messaging
    assert queue(run, "queue").inputs["visibilityTimeoutSeconds"] == 1200
    redrive = json.loads(run.one("aws:sqs/redrivePolicy:RedrivePolicy").inputs["redrivePolicy"])
    assert redrive["maxReceiveCount"] == 5 and type(redrive["maxReceiveCount"]) is int
    assert run.one(ALARM, "jobs-oldest-job").inputs["threshold"] == 1800


@pytest.mark.parametrize("run_name", ["dev_run", "prod_run"])
def test_program_pipe_reads_the_program_stream_with_its_key(request, run_name):
    run = request.getfixturevalue(run_name)
    stream_arn = run.one("aws:kinesis/stream:Stream", "stream-stream").state["arn"]
    assert run.one(PIPE, "jobs-pipe").inputs["source"] == stream_arn
    source = json.loads(run.one(ROLE_POLICY, "jobs-pipe-source").inputs["policy"])
    assert source["Statement"][0]["Resource"] == [stream_arn]
    assert source["Statement"][1]["Resource"] == [key_arn(run, "stream")]
    log_group = run.one("aws:cloudwatch/logGroup:LogGroup", "jobs-pipe-logs").inputs
    assert log_group["kmsKeyId"] == key_arn(run, "logs")


def test_program_log_retention_follows_stack(dev_run, prod_run):
    group = "aws:cloudwatch/logGroup:LogGroup"
    assert dev_run.one(group, "jobs-pipe-logs").inputs["retentionInDays"] == 14
    assert prod_run.one(group, "jobs-pipe-logs").inputs["retentionInDays"] == 365


def test_program_queue_settings_from_config():
    run = run_stack(
        "dev",
        {
            "queueMaxReceiveCount": 9,
            "queueVisibilityTimeoutSeconds": 600,
            "alarmQueueOldestMessageSeconds": 600,
        },
    )
    redrive = json.loads(run.one("aws:sqs/redrivePolicy:RedrivePolicy").inputs["redrivePolicy"])
    assert redrive["maxReceiveCount"] == 9
    assert queue(run, "queue").inputs["visibilityTimeoutSeconds"] == 600
    assert run.one(ALARM, "jobs-oldest-job").inputs["threshold"] == 600


@pytest.mark.parametrize("run_name", ["dev_run", "prod_run"])
def test_g6_queue_outputs(request, run_name):
    run = request.getfixturevalue(run_name)
    assert run.outputs["jobQueueUrl"] == queue(run, "queue").state["url"]
    assert run.outputs["deadLetterQueueUrl"] == queue(run, "dlq").state["url"]
    suffix = "dev" if run_name == "dev_run" else "prod"
    assert run.outputs["jobQueueUrl"].endswith(f"/media-jobs-{suffix}")
    assert run.outputs["deadLetterQueueUrl"].endswith(f"/media-jobs-dlq-{suffix}")


@pytest.mark.parametrize("region", ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"])
def test_g1_processing_tier_in_every_region_without_warnings(region_runs, region):
    run = region_runs["dev", region]
    assert run.warnings == []
    stream_arn = run.one("aws:kinesis/stream:Stream", "stream-stream").state["arn"]
    assert stream_arn.startswith(f"arn:aws:kinesis:{region}:{ACCOUNT_ID}:stream/")
    pipe = run.one(PIPE, "jobs-pipe").inputs
    assert pipe["source"] == stream_arn
    assert pipe["target"] == f"arn:aws:sqs:{region}:{ACCOUNT_ID}:media-jobs-dev"
    assert run.outputs["jobQueueUrl"] == (
        f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/media-jobs-dev"
    )


# --- G3 data protection ---------------------------------------------------------------------


def test_g3_every_queue_is_deleted_on_destroy_by_default(base_args):
    assert guarded(build(base_args, worker=True)) == set()


def test_g3_data_protection_keeps_both_dead_letter_queues_not_the_jobs_queue(base_args):
    run = build(replace(base_args, protect_data=True), worker=True)
    assert guarded(run) == {
        (QUEUE, "jobs-dlq", True, True),
        (QUEUE, "jobs-pipe-failures", True, True),
    }
    assert queue(run, "queue").protect is False
