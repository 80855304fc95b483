"""`AnalyticsStream`: the Kinesis stream every event goes through (S1-S5).

The API puts `job.requested` on it, workers put `video.processed`; the EventBridge Pipe in
`components/jobs.py` forwards the jobs to SQS. Records are encrypted with the stream CMK, so
every producer needs `kms:GenerateDataKey` and every consumer `kms:Decrypt` on that key as
well as the Kinesis actions (without them writes fail and readers hang) — the grant helpers
here hand out exactly that pair and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import Grant, attach_grants
from components.naming import NameKind, Namer, name_tag
from components.observability import metric_alarm
from components.protection import data_store_options
from components.settings import StreamMode

MAX_SHARDS = 500
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


def stream_write_grants(stream_arn: pulumi.Input[str],
                        key_arn: pulumi.Input[str]) -> list[Grant]:
    """What a producer needs: put records and encrypt them with the stream key (S4)."""
    return [
        Grant("StreamWrite", WRITE_ACTIONS, (stream_arn,)),
        Grant("StreamKeyEncrypt", ("kms:GenerateDataKey",), (key_arn,),
              _key_use_condition(stream_arn)),
    ]


def stream_read_grants(stream_arn: pulumi.Input[str],
                       key_arn: pulumi.Input[str]) -> list[Grant]:
    """What a shared-throughput consumer (no enhanced fan-out) needs (S4)."""
    return [
        Grant("StreamRead", READ_ACTIONS, (stream_arn,)),
        Grant("StreamKeyDecrypt", ("kms:Decrypt",), (key_arn,),
              _key_use_condition(stream_arn)),
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
class AnalyticsStreamArgs:
    """Inputs of `AnalyticsStream`."""

    namer: Namer
    """Stack namer; the stream is `{prefix}-kinesis-{suffix}` (required)."""
    kms_key_arn: pulumi.Input[str]
    """ARN of the stream CMK used for server-side encryption (required, S3)."""
    alarm_topic_arn: pulumi.Input[str]
    """SNS topic the lag and throttling alarms notify (required, S5)."""
    mode: StreamMode = StreamMode.ON_DEMAND
    """Capacity mode; default ON_DEMAND (AWS scales shards for upload bursts)."""
    shard_count: int | None = None
    """Shards, 1-500, required with PROVISIONED and not allowed with ON_DEMAND; default None."""
    retention_hours: int = 24
    """How long records stay readable, 24-8760 hours; default 24 (S2)."""
    iterator_age_alarm_ms: int = 60_000
    """Consumer lag (GetRecords.IteratorAgeMilliseconds maximum) that alarms; default 60000."""
    enforce_consumer_deletion: bool = True
    """Deregister enhanced fan-out consumers on destroy (G3); default True."""
    protect_data: bool = False
    """False (default): the stream is deleted on destroy. True: the engine refuses to delete
    or replace it and it is retained on delete, with the records still in it (G3)."""

    def validate(self) -> None:
        problems = []
        if self.mode is StreamMode.PROVISIONED and not (
                isinstance(self.shard_count, int) and 1 <= self.shard_count <= MAX_SHARDS):
            problems.append(f"shard_count={self.shard_count}: allowed 1..{MAX_SHARDS} when "
                            "mode is PROVISIONED")
        if self.mode is StreamMode.ON_DEMAND and self.shard_count is not None:
            problems.append(f"shard_count={self.shard_count}: allowed only None when mode is "
                            "ON_DEMAND (AWS sizes on-demand streams itself)")
        if not MIN_RETENTION_HOURS <= self.retention_hours <= MAX_RETENTION_HOURS:
            problems.append(f"retention_hours={self.retention_hours}: allowed "
                            f"{MIN_RETENTION_HOURS}..{MAX_RETENTION_HOURS} (hours, not days)")
        if self.iterator_age_alarm_ms < 1000:
            problems.append(f"iterator_age_alarm_ms={self.iterator_age_alarm_ms}: allowed "
                            ">= 1000")
        if problems:
            raise ValueError("AnalyticsStreamArgs: " + "; ".join(problems))


class AnalyticsStream(pulumi.ComponentResource):
    """A CMK-encrypted Kinesis stream with lag and throttling alarms and grant helpers."""

    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    key_arn: pulumi.Input[str]

    def __init__(self, name: str, args: AnalyticsStreamArgs,
                 opts: pulumi.ResourceOptions | None = None):
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
            enforce_consumer_deletion=args.enforce_consumer_deletion,
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
