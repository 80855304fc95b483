"""`AnalyticsStream`: the Kinesis stream every event goes through (S1-S5).

The API puts `job.requested` on it, workers put `video.processed`; the EventBridge Pipe in
`components/jobs.py` forwards the jobs to SQS. Records are encrypted with the stream CMK, so
every producer needs `kms:GenerateDataKey` and every consumer `kms:Decrypt` on that key as
well as the Kinesis actions (without them writes fail and readers hang) — the grant helpers
here hand out exactly that pair and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import Grant, attach_grants
from components.naming import NameKind, Namer, name_tag
from components.observability import metric_alarm
from components.protection import Lifecycle, data_store_options
from components.tunables import Problem, Tunables, tunable

MAX_SHARDS = 500


class StreamMode(StrEnum):
    ON_DEMAND = "ON_DEMAND"
    PROVISIONED = "PROVISIONED"


MIN_RETENTION_HOURS, MAX_RETENTION_HOURS = 24, 8760
WRITE_ACTIONS = ("kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary")
READ_ACTIONS = (
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
)


def _key_use_condition(stream_arn: pulumi.Input[str]) -> dict[str, Any]:
    # Kinesis passes the stream ARN as encryption context on every KMS call, so the key
    # grant is usable for this stream only.
    return {"StringEquals": {"kms:EncryptionContext:aws:kinesis:arn": stream_arn}}


def stream_write_grants(stream_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> list[Grant]:
    """What a producer needs: put records and encrypt them with the stream key (S4)."""
    return [
        Grant("StreamWrite", WRITE_ACTIONS, (stream_arn,)),
        Grant(
            "StreamKeyEncrypt", ("kms:GenerateDataKey",), (key_arn,), _key_use_condition(stream_arn)
        ),
    ]


def stream_read_grants(stream_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> list[Grant]:
    """What a shared-throughput consumer (no enhanced fan-out) needs (S4)."""
    return [
        Grant("StreamRead", READ_ACTIONS, (stream_arn,)),
        Grant("StreamKeyDecrypt", ("kms:Decrypt",), (key_arn,), _key_use_condition(stream_arn)),
    ]


def capacity_inputs(mode: StreamMode, shard_count: int | None) -> dict[str, Any]:
    """`stream_mode_details` (a single object in v7) and, for PROVISIONED only, `shard_count`.

    AWS rejects a shard count on an ON_DEMAND stream and requires one on a PROVISIONED one.
    """
    inputs: dict[str, Any] = {"stream_mode_details": {"stream_mode": mode.value}}
    if mode is StreamMode.PROVISIONED:
        inputs["shard_count"] = shard_count
    return inputs


@dataclass(frozen=True, kw_only=True)
class AnalyticsStreamSettings(Tunables):
    """The stream's tunables (S1, S2, S5)."""

    TIER = "stream"

    mode: StreamMode = tunable(
        "streamMode",
        StreamMode.ON_DEMAND,
        "Kinesis capacity mode; ON_DEMAND lets AWS scale shards for upload bursts (S1).",
        choices=StreamMode,
    )
    shard_count: int = tunable(
        "streamShardCount", 1, "Shards when streamMode is PROVISIONED (S1).", range=(1, MAX_SHARDS)
    )
    retention_hours: int = tunable(
        "streamRetentionHours",
        MIN_RETENTION_HOURS,
        "How long records stay readable, in hours (S2).",
        range=(MIN_RETENTION_HOURS, MAX_RETENTION_HOURS),
    )
    iterator_age_alarm_ms: int = tunable(
        "alarmStreamIteratorAgeMs",
        60_000,
        "Consumer lag (GetRecords.IteratorAgeMilliseconds maximum) that alarms (S5).",
        range=(1000, 604_800_000),
    )

    def rules(self) -> list[Problem]:
        if self.mode is StreamMode.ON_DEMAND and self.shard_count != 1:
            return [
                Problem(
                    "shard_count",
                    self.shard_count,
                    "unset (default 1) when {mode} is ON_DEMAND (AWS sizes on-demand "
                    "streams itself)",
                )
            ]
        return []


@dataclass(frozen=True, kw_only=True)
class AnalyticsStreamArgs(AnalyticsStreamSettings):
    """Inputs of `AnalyticsStream`: its settings plus what the stack wires in."""

    namer: Namer
    """Stack namer; the stream is `{prefix}-kinesis-{suffix}` (required)."""
    kms_key_arn: pulumi.Input[str]
    """ARN of the stream CMK used for server-side encryption (required, S3)."""
    alarm_topic_arn: pulumi.Input[str]
    """SNS topic the lag and throttling alarms notify (required, S5)."""
    protect_data: bool = False
    """False (default): the stream is deleted on destroy, its enhanced fan-out consumers
    deregistered first. True: the engine refuses to delete or replace it and it is retained
    on delete, with the records still in it (G3)."""

    def validate(self) -> None:
        if problems := self.tunable_problems():
            raise ValueError("AnalyticsStreamArgs: " + "; ".join(problems))


class AnalyticsStream(pulumi.ComponentResource):
    """A CMK-encrypted Kinesis stream with lag and throttling alarms and grant helpers."""

    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    key_arn: pulumi.Input[str]

    def __init__(
        self, name: str, args: AnalyticsStreamArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:stream:AnalyticsStream", name, None, opts)
        physical = args.namer.name("kinesis", NameKind.KINESIS_STREAM)
        self.stream = aws.kinesis.Stream(
            f"{name}-stream",
            name=physical,
            **capacity_inputs(args.mode, args.shard_count),
            retention_period=args.retention_hours,
            encryption_type="KMS",
            kms_key_id=args.kms_key_arn,
            enforce_consumer_deletion=Lifecycle(args.protect_data).destroyable,
            tags=name_tag(physical),
            opts=data_store_options(self, args.protect_data),
        )
        self.name = self.stream.name
        self.arn = self.stream.arn
        self.key_arn = args.kms_key_arn
        self._alarms(name, args)
        self.register_outputs({"name": self.name, "arn": self.arn, "key_arn": self.key_arn})

    def write_grants(self) -> list[Grant]:
        return stream_write_grants(self.arn, self.key_arn)

    def read_grants(self) -> list[Grant]:
        return stream_read_grants(self.arn, self.key_arn)

    def grant_write(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let `role` put records on this stream (producers: the API, the workers)."""
        return attach_grants(resource_name, role, self.write_grants(), parent=self)

    def grant_read(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let `role` read this stream through shared-throughput GetRecords."""
        return attach_grants(resource_name, role, self.read_grants(), parent=self)

    def _alarms(self, name: str, args: AnalyticsStreamArgs) -> None:
        namer = args.namer
        common = {
            "namespace": "AWS/Kinesis",
            "dimensions": {"StreamName": self.stream.name},
            "topic_arn": args.alarm_topic_arn,
            "parent": self,
        }
        metric_alarm(
            f"{name}-iterator-age",
            alarm_name=namer.name("kinesis-iterator-age"),
            description="Stream consumers lag behind: records wait longer than "
            f"{args.iterator_age_alarm_ms} ms to be read (S5).",
            metric_name="GetRecords.IteratorAgeMilliseconds",
            statistic="Maximum",
            comparison="GreaterThanThreshold",
            threshold=args.iterator_age_alarm_ms,
            **common,
        )
        for direction in ("Write", "Read"):
            metric_alarm(
                f"{name}-{direction.lower()}-throttled",
                alarm_name=namer.name(f"kinesis-{direction.lower()}-throttled"),
                description=f"{direction}s to the stream are throttled (S5).",
                metric_name=f"{direction}ProvisionedThroughputExceeded",
                statistic="Sum",
                comparison="GreaterThanThreshold",
                threshold=0,
                **common,
            )
