"""`JobQueue`: the SQS jobs queue, its dead-letter queue and the Pipe that feeds it (W5, W6).

Kinesis ──EventBridge Pipe (filter: job.requested)──▶ jobs queue ──maxReceiveCount──▶ DLQ
                    └─ records the pipe cannot deliver ──▶ pipe-failures queue

Three queues, all encrypted with the messaging CMK, each with an alarm where a message could
otherwise be lost silently: a job that failed `max_receive_count` times (DLQ), a stream
record the pipe could not deliver after its bounded retries (pipe-failures), and a job that
waits too long (oldest-message age). Pipe failures get their own queue so "the platform
could not hand the job over" and "the job itself failed" stay distinguishable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import Grant, attach_grants, service_role
from components.kms import AwsContext
from components.logs import encrypted_log_group, retention_problems
from components.naming import NameKind, Namer, name_tag
from components.observability import metric_alarm
from components.protection import data_store_options
from components.tunables import Tunables, tunable

JOB_REQUESTED = "job.requested"
JOBS_RETENTION_SECONDS = 4 * 24 * 3600
# Standard queues keep a message's original enqueue time in the DLQ, so the DLQ must keep
# messages longer than the source queue or they expire there early: SQS's maximum.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
LONG_POLL_SECONDS = 20
# Pipes cannot batch more records than the target's batch API takes (SendMessageBatch: 10).
MAX_SQS_TARGET_BATCH = 10
DATA_KEY_REUSE_SECONDS = 3600
# Pipes parses a Kinesis record's data when it is JSON and applies the template per record,
# so `<$.data>` makes each SQS body the event itself.
EVENT_BODY_TEMPLATE = "<$.data>"
CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
SEND_ACTIONS = ("sqs:SendMessage",)
MESSAGING_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class StartingPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"


def filter_pattern(event_types: Sequence[str]) -> str:
    """Pipe filter on the record's JSON payload (Pipes decodes Kinesis `data` to match it)."""
    return json.dumps({"data": {"type": list(event_types)}}, separators=(",", ":"))


def deny_insecure_transport(queue_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Queue policy refusing any request not made over TLS.

    Access itself comes from identity policies (pipe role, worker task role): all callers
    live in this account, where an IAM policy alone is enough, so the queue policy only
    denies and never widens who may use the queue.
    """
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    # A deny must cover every action, so here (and only here) the wildcard is right.
                    "Action": "sqs:*",
                    "Resource": queue_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def redrive_policy(
    dead_letter_arn: pulumi.Input[str], max_receive_count: int
) -> pulumi.Output[str]:
    # An integer: a quoted count is accepted by some tools and rejected by others.
    return pulumi.Output.json_dumps(
        {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": int(max_receive_count)}
    )


def redrive_allow_policy(source_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps(
        {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]}
    )


def consume_grants(
    queue_arn: pulumi.Input[str], dead_letter_arn: pulumi.Input[str], key_arn: pulumi.Input[str]
) -> list[Grant]:
    """What a worker needs: take jobs, park poison jobs in the DLQ itself, use the key."""
    return [
        Grant("ConsumeJobs", CONSUME_ACTIONS, (queue_arn,)),
        Grant("DeadLetterJobs", (*SEND_ACTIONS, "sqs:GetQueueAttributes"), (dead_letter_arn,)),
        Grant("MessagingKey", MESSAGING_KEY_ACTIONS, (key_arn,)),
    ]


def pipe_target_grants(
    queue_arn: pulumi.Input[str],
    failure_arn: pulumi.Input[str],
    key_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
) -> list[Grant]:
    """What the pipe needs besides reading the stream."""
    return [
        Grant("SendJobsAndFailures", SEND_ACTIONS, (queue_arn, failure_arn)),
        Grant("MessagingKey", MESSAGING_KEY_ACTIONS, (key_arn,)),
        # Pipes writes its own log records with the execution role.
        Grant(
            "PipeLogs",
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            (pulumi.Output.concat(log_group_arn, ":*"),),
        ),
    ]


SQS_MAX_VISIBILITY_SECONDS = 43200
SQS_MAX_RECEIVE_COUNT = 1000


@dataclass(frozen=True, kw_only=True)
class JobQueueSettings(Tunables):
    """The job queue's tunables (W5, W6)."""

    TIER = "queue"

    max_receive_count: int = tunable(
        "queueMaxReceiveCount",
        5,
        "Receives before a job message moves to the dead-letter queue (W6).",
        range=(1, SQS_MAX_RECEIVE_COUNT),
    )
    # No longer tied to the job timeout (derived by the worker tier from the source limits):
    # a worker extends its lease every third of this while a job runs, so a lease survives
    # two missed extensions, and a crashed worker's job is back on the queue this soon.
    visibility_timeout_seconds: int = tunable(
        "queueVisibilityTimeoutSeconds",
        1200,
        "Jobs-queue visibility timeout: how soon a crashed worker's job is redelivered; a "
        "running worker extends its lease every third of it (M4).",
        range=(60, SQS_MAX_VISIBILITY_SECONDS),
    )
    oldest_message_alarm_seconds: int = tunable(
        "alarmQueueOldestMessageSeconds",
        1800,
        "Age in seconds of the oldest job that alarms.",
        range=(60, DEAD_LETTER_RETENTION_SECONDS),
    )


@dataclass(frozen=True, kw_only=True)
class JobQueueArgs(JobQueueSettings):
    """Inputs of `JobQueue`: its settings plus what the stack wires in."""

    namer: Namer
    """Stack namer for queues, pipe, role, log group and alarms (required)."""
    context: AwsContext
    """Account facts for the pipe role's trust policy (required)."""
    kms_key_arn: pulumi.Input[str]
    """Messaging CMK ARN encrypting all three queues (required)."""
    alarm_topic_arn: pulumi.Input[str]
    """SNS topic the DLQ, pipe-failure and queue-age alarms notify (required, O2)."""
    source_stream_arn: pulumi.Input[str]
    """Kinesis stream the pipe reads (required)."""
    source_read_grants: tuple[Grant, ...]
    """Grants to read that stream, e.g. `stream.read_grants()` (required)."""
    logs_key_arn: pulumi.Input[str]
    """Logs CMK ARN for the pipe's log group (required, O1)."""
    log_retention_days: int = 30
    """Pipe log retention, an allowed CloudWatch value; default 30."""
    event_types: tuple[str, ...] = (JOB_REQUESTED,)
    """Event `type` values the pipe forwards; default ("job.requested",)."""
    starting_position: StartingPosition = StartingPosition.TRIM_HORIZON
    """Where a new pipe starts reading. Default TRIM_HORIZON: jobs put on the stream before
    the pipe runs (first deploy, pipe replaced) are not lost; the replayed duplicates are
    harmless because workers move each job through its states once (R3)."""
    batch_size: int = 10
    """Records per pipe batch, 1-10 (an SQS target takes at most 10 per batch); default 10."""
    maximum_retry_attempts: int = 3
    """Pipe retries of a failed batch, 0-10000 (finite: an infinite retry blocks the shard
    until the record expires); default 3."""
    maximum_record_age_seconds: int = 3600
    """Records older than this go to the pipe-failure queue, 60-604800; default 3600."""
    protect_data: bool = False
    """False (default): every queue is deleted on destroy. True: the two dead-letter queues
    (failed jobs, undeliverable stream records — the only evidence of a failure) are
    protected and retained on delete; the jobs queue holds only work in flight (G3)."""

    def validate(self) -> None:
        problems = self.tunable_problems()

        def check(field: str, value: int, low: int, high: int, note: str = "") -> None:
            if not low <= value <= high:
                problems.append(f"{field}={value}: allowed {low}..{high}{note}")

        check(
            "batch_size",
            self.batch_size,
            1,
            MAX_SQS_TARGET_BATCH,
            " (an SQS target takes at most 10 messages per batch)",
        )
        check(
            "maximum_retry_attempts",
            self.maximum_retry_attempts,
            0,
            10000,
            " (finite; -1 would retry forever)",
        )
        check(
            "maximum_record_age_seconds",
            self.maximum_record_age_seconds,
            60,
            604800,
            " (finite; -1 would keep a record forever)",
        )
        problems += retention_problems("log_retention_days", self.log_retention_days)
        if not self.event_types or not all(isinstance(t, str) and t for t in self.event_types):
            problems.append(
                f"event_types={list(self.event_types)}: allowed one or more "
                "non-empty event type names"
            )
        if not self.source_read_grants:
            problems.append(
                "source_read_grants=(): allowed the stream's read grants, e.g. stream.read_grants()"
            )
        if problems:
            raise ValueError("JobQueueArgs: " + "; ".join(problems))


class JobQueue(pulumi.ComponentResource):
    """Encrypted jobs queue with DLQ and alarms, fed from the stream by an EventBridge Pipe."""

    queue_url: pulumi.Output[str]
    queue_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    dlq_url: pulumi.Output[str]
    dlq_arn: pulumi.Output[str]
    dlq_name: pulumi.Output[str]
    failure_queue_url: pulumi.Output[str]
    max_receive_count: int
    pipe_arn: pulumi.Output[str]

    def __init__(self, name: str, args: JobQueueArgs, opts: pulumi.ResourceOptions | None = None):
        args.validate()
        super().__init__("media:jobs:JobQueue", name, None, opts)
        self._name, self._args = name, args
        self.dlq = self._queue(
            "dlq", "jobs-dlq", DEAD_LETTER_RETENTION_SECONDS, keep=args.protect_data
        )
        self.queue = self._queue(
            "queue",
            "jobs",
            JOBS_RETENTION_SECONDS,
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
        )
        self.failures = self._queue(
            "pipe-failures", "pipe-failures", DEAD_LETTER_RETENTION_SECONDS, keep=args.protect_data
        )
        self._redrive()
        self.max_receive_count = args.max_receive_count
        (self.queue_url, self.queue_arn, self.queue_name) = (
            self.queue.url,
            self.queue.arn,
            self.queue.name,
        )
        (self.dlq_url, self.dlq_arn, self.dlq_name) = (self.dlq.url, self.dlq.arn, self.dlq.name)
        self.failure_queue_url = self.failures.url
        self.pipe = self._pipe()
        self.pipe_arn = self.pipe.arn
        self._alarms()
        self.register_outputs(
            {
                "queue_url": self.queue_url,
                "queue_arn": self.queue_arn,
                "queue_name": self.queue_name,
                "dlq_url": self.dlq_url,
                "dlq_arn": self.dlq_arn,
                "dlq_name": self.dlq_name,
                "failure_queue_url": self.failure_queue_url,
                "max_receive_count": self.max_receive_count,
                "pipe_arn": self.pipe_arn,
            }
        )

    def consume_grants(self) -> list[Grant]:
        return consume_grants(self.queue_arn, self.dlq_arn, self._args.kms_key_arn)

    def grant_consume(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let `role` (the worker task role) take jobs and dead-letter poison jobs (W5, W6)."""
        return attach_grants(resource_name, role, self.consume_grants(), parent=self)

    def _child(self, **extra: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **extra)

    def _queue(
        self, role: str, resource: str, retention: int, *, keep: bool = False, **extra: Any
    ) -> aws.sqs.Queue:
        physical = self._args.namer.name(resource, NameKind.SQS_QUEUE)
        queue = aws.sqs.Queue(
            f"{self._name}-{role}",
            name=physical,
            message_retention_seconds=retention,
            kms_master_key_id=self._args.kms_key_arn,
            kms_data_key_reuse_period_seconds=DATA_KEY_REUSE_SECONDS,
            tags=name_tag(physical),
            opts=data_store_options(self, keep),
            **extra,
        )
        aws.sqs.QueuePolicy(
            f"{self._name}-{role}-policy",
            queue_url=queue.url,
            policy=deny_insecure_transport(queue.arn),
            opts=self._child(),
        )
        return queue

    def _redrive(self) -> None:
        # Separate resources, not the inline `redrive_policy`: the DLQ's allow-list needs
        # the jobs ARN and the jobs redrive needs the DLQ ARN.
        aws.sqs.RedrivePolicy(
            f"{self._name}-redrive",
            queue_url=self.queue.url,
            redrive_policy=redrive_policy(self.dlq.arn, self._args.max_receive_count),
            opts=self._child(),
        )
        aws.sqs.RedriveAllowPolicy(
            f"{self._name}-redrive-allow",
            queue_url=self.dlq.url,
            redrive_allow_policy=redrive_allow_policy(self.queue.arn),
            opts=self._child(),
        )

    def _pipe(self) -> aws.pipes.Pipe:
        args, name = self._args, self._name
        log_group = encrypted_log_group(
            f"{name}-pipe-logs",
            name=args.namer.path("/aws/vendedlogs/pipes/", "jobs-pipe"),
            kms_key_arn=args.logs_key_arn,
            retention_days=args.log_retention_days,
            parent=self,
        )
        self.pipe_role = service_role(
            f"{name}-pipe-role",
            role="jobs-pipe",
            service="pipes.amazonaws.com",
            ctx=args.context,
            namer=args.namer,
            parent=self,
        )
        source_policy = attach_grants(
            f"{name}-pipe-source", self.pipe_role, args.source_read_grants, parent=self
        )
        target_policy = attach_grants(
            f"{name}-pipe-target",
            self.pipe_role,
            pipe_target_grants(self.queue.arn, self.failures.arn, args.kms_key_arn, log_group.arn),
            parent=self,
        )
        physical = args.namer.name("jobs-pipe", NameKind.PIPE)
        return aws.pipes.Pipe(
            f"{name}-pipe",
            name=physical,
            description=f"Forwards {', '.join(args.event_types)} events from the stream to "
            "the jobs queue",
            role_arn=self.pipe_role.arn,
            source=args.source_stream_arn,
            source_parameters={
                "filter_criteria": {"filters": [{"pattern": filter_pattern(args.event_types)}]},
                "kinesis_stream_parameters": {
                    "starting_position": args.starting_position.value,
                    "batch_size": args.batch_size,
                    "maximum_retry_attempts": args.maximum_retry_attempts,
                    "maximum_record_age_in_seconds": args.maximum_record_age_seconds,
                    "on_partial_batch_item_failure": "AUTOMATIC_BISECT",
                    "dead_letter_config": {"arn": self.failures.arn},
                },
            },
            target=self.queue.arn,
            target_parameters={"input_template": EVENT_BODY_TEMPLATE},
            # Error records only: execution data would copy job payloads into the logs.
            log_configuration={
                "level": "ERROR",
                "cloudwatch_logs_log_destination": {"log_group_arn": log_group.arn},
            },
            tags=name_tag(physical),
            # A pipe created before its role may read and send fails to create (pitfall 91).
            opts=self._child(depends_on=[source_policy, target_policy]),
        )

    def _alarms(self) -> None:
        args, name, namer = self._args, self._name, self._args.namer
        common = {
            "namespace": "AWS/SQS",
            "statistic": "Maximum",
            "comparison": "GreaterThanThreshold",
            "topic_arn": args.alarm_topic_arn,
            "parent": self,
        }
        # Any message in a failure queue is a job or a record that needs a look.
        for label, stem, queue, description in (
            (
                "dlq",
                "jobs-dlq",
                self.dlq,
                f"Jobs failed {args.max_receive_count} times and wait in the dead-letter queue "
                "(W6).",
            ),
            (
                "pipe-failures",
                "pipe-failures",
                self.failures,
                "Stream records the pipe could not deliver to the jobs queue wait in the "
                "pipe-failure queue (W6).",
            ),
        ):
            metric_alarm(
                f"{name}-{label}-depth",
                alarm_name=namer.name(f"{stem}-not-empty"),
                description=description,
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": queue.name},
                threshold=0,
                **common,
            )
        metric_alarm(
            f"{name}-oldest-job",
            alarm_name=namer.name("jobs-oldest-message"),
            description=f"A job has waited more than {args.oldest_message_alarm_seconds} s "
            "for a worker.",
            metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": self.queue.name},
            threshold=args.oldest_message_alarm_seconds,
            **common,
        )
