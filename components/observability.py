"""Operations tier: the alarm topic every tier publishes to and the operations dashboard (O2).

Tiers create their own alarms with `metric_alarm`, always pointing at this topic. The
dashboard shows each tier's key signals side by side from plain identifiers (names, ids),
so it can be built before, and without, the tier components themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import pulumi
import pulumi_aws as aws

from components.kms import AwsContext
from components.naming import NameKind, Namer, member_cluster_ids, name_tag
from components.tunables import Tunables, tunable


@dataclass(frozen=True, kw_only=True)
class AlarmTopicSettings(Tunables):
    """The alarm topic's tunables (O2)."""

    TIER = "alarms"

    email: str = tunable(
        "alarmEmail",
        "",
        "Address subscribed to the alarm topic (O2); empty for none.",
        pattern=r"(?i)^$|^[^@\s]+@[^@\s]+\.[a-z]{2,}$",
        allowed="empty or an e-mail address",
    )


@dataclass(frozen=True, kw_only=True)
class AlarmTopicArgs(AlarmTopicSettings):
    """Inputs of `AlarmTopic`: its settings plus what the stack wires in."""

    namer: Namer
    """Stack namer (required)."""
    context: AwsContext
    """Account facts for the topic policy (required)."""
    kms_key_arn: pulumi.Input[str]
    """CMK for the topic; its policy must let cloudwatch.amazonaws.com use it (required)."""
    stem: str = "alarms"
    """Physical name stem: the topic is `{prefix}-{stem}-{suffix}`; default `alarms`."""
    region: str | None = None
    """Region of the topic: alarms publish only to a topic in their own region. Default None
    (the stack's); CloudFront's alarms live in `CLOUDFRONT_REGION`."""

    def validate(self) -> None:
        if problems := self.tunable_problems():
            raise ValueError("AlarmTopicArgs: " + "; ".join(problems))


class AlarmTopic(pulumi.ComponentResource):
    """Encrypted SNS topic that CloudWatch alarms of this account may publish to."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlarmTopicArgs, opts: pulumi.ResourceOptions | None = None):
        args.validate()
        super().__init__("media:observability:AlarmTopic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        physical = args.namer.name(args.stem, NameKind.SNS_TOPIC)
        self.topic = aws.sns.Topic(
            f"{name}-topic",
            name=physical,
            kms_master_key_id=args.kms_key_arn,
            tags=name_tag(physical),
            region=args.region,
            opts=child,
        )
        self.arn = self.topic.arn
        aws.sns.TopicPolicy(
            f"{name}-policy",
            arn=self.topic.arn,
            policy=self._policy(args.context),
            region=args.region,
            opts=child,
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.email,
                region=args.region,
                opts=child,
            )
        self.register_outputs({"arn": self.arn})

    def _policy(self, ctx: AwsContext) -> pulumi.Output[str]:
        # A topic policy replaces the default one, so the account owner keeps its rights here.
        account_root = pulumi.Output.concat(
            "arn:", ctx.partition, ":iam::", ctx.account_id, ":root"
        )
        return pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AccountManagesTopic",
                        "Effect": "Allow",
                        "Principal": {"AWS": account_root},
                        "Action": [
                            "sns:GetTopicAttributes",
                            "sns:SetTopicAttributes",
                            "sns:Subscribe",
                            "sns:ListSubscriptionsByTopic",
                            "sns:Publish",
                        ],
                        "Resource": self.topic.arn,
                    },
                    {
                        "Sid": "CloudWatchAlarmsPublish",
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudwatch.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
                    },
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ],
            }
        )


def metric_alarm(
    resource_name: str,
    *,
    alarm_name: str,
    description: str,
    namespace: str,
    metric_name: str,
    dimensions: dict[str, Any],
    statistic: str,
    comparison: str,
    threshold: float,
    topic_arn: pulumi.Input[str],
    parent: pulumi.Resource,
    period: int = 300,
    evaluation_periods: int = 1,
    treat_missing_data: str = "notBreaching",
    region: str | None = None,
) -> aws.cloudwatch.MetricAlarm:
    """A CloudWatch alarm on one metric that notifies (and clears) through the alarm topic.

    Missing data counts as not breaching by default: idle queues and streams publish no
    datapoints. Pass `treat_missing_data="breaching"` where silence itself is the failure.
    `region` is the metric's where it is not the stack's (CloudFront's, with a topic there).
    """
    extended = statistic.startswith("p")
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=alarm_name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dimensions,
        statistic=None if extended else statistic,
        extended_statistic=statistic if extended else None,
        comparison_operator=comparison,
        threshold=threshold,
        period=period,
        evaluation_periods=evaluation_periods,
        treat_missing_data=treat_missing_data,
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        region=region,
        opts=pulumi.ResourceOptions(parent=parent),
    )


# ---------------------------------------------------------------------------------------
# Operations dashboard
# ---------------------------------------------------------------------------------------

DASHBOARD_COLUMNS = 24  # CloudWatch dashboards are a 24-unit grid
WIDGET_WIDTH = 8
WIDGET_HEIGHT = 6
DASHBOARD_PERIODS = (60, 300, 900, 3600)
MAX_CACHE_NODES = 6


def cache_member_ids(
    replication_group_id: pulumi.Input[str], node_count: int
) -> list[pulumi.Output[str]]:
    """`naming.member_cluster_ids` for a group id that may still be an Output."""
    group = pulumi.Output.from_input(replication_group_id)
    return [
        group.apply(lambda gid, i=index: member_cluster_ids(gid, node_count)[i])
        for index in range(node_count)
    ]


@dataclass(frozen=True, kw_only=True)
class OperationsDashboardArgs:
    """Inputs of `OperationsDashboard`. Every tier is optional: give a tier's identifiers and
    its widgets appear; pairs (API name + stage, cluster + service, cache id + node count)
    come together."""

    namer: Namer
    """Names the dashboard `{prefix}-operations-{suffix}` (required)."""
    region: pulumi.Input[str]
    """Region of every metric (required)."""
    period_seconds: int = 300
    """Aggregation period of every widget: 60, 300, 900 or 3600; default 300."""
    api_name: pulumi.Input[str] | None = None
    """REST API name (the `ApiName` dimension); default none."""
    api_stage: pulumi.Input[str] | None = None
    """REST API stage name; default none."""
    queue_name: pulumi.Input[str] | None = None
    """Jobs queue name; default none."""
    dead_letter_queue_name: pulumi.Input[str] | None = None
    """Dead-letter queue name; default none."""
    cluster_name: pulumi.Input[str] | None = None
    """ECS cluster of the worker service; default none."""
    service_name: pulumi.Input[str] | None = None
    """ECS worker service name; default none."""
    stream_name: pulumi.Input[str] | None = None
    """Kinesis stream name; default none."""
    db_cluster_identifier: pulumi.Input[str] | None = None
    """Aurora cluster identifier; default none."""
    cache_replication_group_id: pulumi.Input[str] | None = None
    """ElastiCache replication group id; default none."""
    cache_node_count: int = 0
    """Nodes in the replication group (1-6) when the cache is shown; default 0."""

    @classmethod
    def of_tiers(
        cls,
        *,
        namer: Namer,
        region: pulumi.Input[str],
        api: Any,
        jobs: Any,
        worker: Any,
        stream: Any,
        database: Any,
        cache: Any,
    ) -> Self:
        """The dashboard of the platform's own tier components."""
        return cls(
            namer=namer,
            region=region,
            api_name=api.rest_api.name,
            api_stage=api.stage_name,
            queue_name=jobs.queue_name,
            dead_letter_queue_name=jobs.dlq_name,
            cluster_name=worker.cluster_name,
            service_name=worker.service_name,
            stream_name=stream.name,
            db_cluster_identifier=database.cluster_identifier,
            cache_replication_group_id=cache.replication_group_id,
            cache_node_count=cache.node_count,
        )

    def validate(self) -> None:
        problems = []
        if self.period_seconds not in DASHBOARD_PERIODS:
            problems.append(
                f"period_seconds={self.period_seconds}: allowed one of "
                + ", ".join(map(str, DASHBOARD_PERIODS))
            )
        for first, second in (("api_name", "api_stage"), ("cluster_name", "service_name")):
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                problems.append(
                    f"{first}={getattr(self, first)!r}, "
                    f"{second}={getattr(self, second)!r}: give both or neither"
                )
        has_cache = self.cache_replication_group_id is not None
        if has_cache and not 1 <= self.cache_node_count <= MAX_CACHE_NODES:
            problems.append(
                f"cache_node_count={self.cache_node_count}: allowed "
                f"1..{MAX_CACHE_NODES} with cache_replication_group_id"
            )
        if not has_cache and self.cache_node_count:
            problems.append(
                f"cache_node_count={self.cache_node_count}: allowed 0 without "
                "cache_replication_group_id"
            )
        if not problems and not self.tiers():
            problems.append(
                "no tier identifiers given: allowed any of api_name + api_stage, "
                "queue_name, dead_letter_queue_name, cluster_name + service_name, "
                "stream_name, db_cluster_identifier, cache_replication_group_id"
            )
        if problems:
            raise ValueError("OperationsDashboardArgs: " + "; ".join(problems))

    def tiers(self) -> list[str]:
        """The tiers whose identifiers were given, in dashboard order."""
        present = {
            "api": self.api_name is not None,
            "queue": self.queue_name is not None or self.dead_letter_queue_name is not None,
            "worker": self.cluster_name is not None,
            "stream": self.stream_name is not None,
            "database": self.db_cluster_identifier is not None,
            "cache": self.cache_replication_group_id is not None,
        }
        return [tier for tier, given in present.items() if given]


def metric_widget(
    title: str,
    metrics: Sequence[Sequence[Any]],
    *,
    region: pulumi.Input[str],
    period: int,
    stat: str,
) -> dict[str, Any]:
    """A time-series widget; each metric row is `[namespace, name, dim, value, ..., {opts}]`."""
    return {
        "type": "metric",
        "width": WIDGET_WIDTH,
        "height": WIDGET_HEIGHT,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": region,
            "period": period,
            "stat": stat,
            "metrics": [list(row) for row in metrics],
        },
    }


def _api_widgets(a: OperationsDashboardArgs, w) -> list[dict[str, Any]]:
    dims = ("ApiName", a.api_name, "Stage", a.api_stage)
    api = "AWS/ApiGateway"
    return [
        w(
            "API requests and errors",
            [[api, "Count", *dims], [api, "4XXError", *dims], [api, "5XXError", *dims]],
            "Sum",
        ),
        w(
            "API latency (ms)",
            [
                [api, "Latency", *dims, {"stat": "p50"}],
                [api, "Latency", *dims, {"stat": "p99"}],
                [api, "IntegrationLatency", *dims, {"stat": "p99"}],
            ],
            "p99",
        ),
    ]


def _queue_widgets(a: OperationsDashboardArgs, w) -> list[dict[str, Any]]:
    sqs = "AWS/SQS"
    widgets = []
    if a.queue_name is not None:
        queue = ("QueueName", a.queue_name)
        widgets += [
            w(
                "Job queue depth",
                [
                    [sqs, "ApproximateNumberOfMessagesVisible", *queue],
                    [sqs, "ApproximateNumberOfMessagesNotVisible", *queue],
                ],
                "Maximum",
            ),
            w("Oldest job age (s)", [[sqs, "ApproximateAgeOfOldestMessage", *queue]], "Maximum"),
        ]
    if a.dead_letter_queue_name is not None:
        widgets.append(
            w(
                "Dead-letter queue depth",
                [
                    [
                        sqs,
                        "ApproximateNumberOfMessagesVisible",
                        "QueueName",
                        a.dead_letter_queue_name,
                    ]
                ],
                "Maximum",
            )
        )
    return widgets


def _worker_widgets(a: OperationsDashboardArgs, w) -> list[dict[str, Any]]:
    dims = ("ClusterName", a.cluster_name, "ServiceName", a.service_name)
    return [
        w(
            "Worker CPU and memory (%)",
            [["AWS/ECS", "CPUUtilization", *dims], ["AWS/ECS", "MemoryUtilization", *dims]],
            "Average",
        ),
        w(
            "Worker tasks",
            [
                ["ECS/ContainerInsights", "RunningTaskCount", *dims],
                ["ECS/ContainerInsights", "DesiredTaskCount", *dims],
            ],
            "Average",
        ),
    ]


def _stream_widgets(a: OperationsDashboardArgs, w) -> list[dict[str, Any]]:
    kinesis, dims = "AWS/Kinesis", ("StreamName", a.stream_name)
    return [
        w(
            "Stream iterator age (ms)",
            [[kinesis, "GetRecords.IteratorAgeMilliseconds", *dims]],
            "Maximum",
        ),
        w(
            "Stream records and throttling",
            [
                [kinesis, "IncomingRecords", *dims],
                [kinesis, "WriteProvisionedThroughputExceeded", *dims],
                [kinesis, "ReadProvisionedThroughputExceeded", *dims],
            ],
            "Sum",
        ),
    ]


def _database_widgets(a: OperationsDashboardArgs, w) -> list[dict[str, Any]]:
    rds, dims = "AWS/RDS", ("DBClusterIdentifier", a.db_cluster_identifier)
    return [
        w("Database capacity (ACU)", [[rds, "ServerlessDatabaseCapacity", *dims]], "Average"),
        w(
            "Database CPU and ACU use (%)",
            [[rds, "CPUUtilization", *dims], [rds, "ACUUtilization", *dims]],
            "Maximum",
        ),
        w("Database connections", [[rds, "DatabaseConnections", *dims]], "Maximum"),
    ]


def _cache_widgets(a: OperationsDashboardArgs, w) -> list[dict[str, Any]]:
    members = cache_member_ids(a.cache_replication_group_id, a.cache_node_count)

    def per_node(metric: str) -> list[list[Any]]:
        return [["AWS/ElastiCache", metric, "CacheClusterId", member] for member in members]

    return [
        w("Cache engine CPU (%)", per_node("EngineCPUUtilization"), "Average"),
        w("Cache memory used (%)", per_node("DatabaseMemoryUsagePercentage"), "Average"),
        w("Cache evictions", per_node("Evictions"), "Sum"),
    ]


_TIER_WIDGETS = {
    "api": _api_widgets,
    "queue": _queue_widgets,
    "worker": _worker_widgets,
    "stream": _stream_widgets,
    "database": _database_widgets,
    "cache": _cache_widgets,
}


def dashboard_widgets(args: OperationsDashboardArgs) -> list[dict[str, Any]]:
    """Every widget with its grid position, each tier starting a new row of up to three."""

    def widget(title: str, metrics: Sequence[Sequence[Any]], stat: str) -> dict[str, Any]:
        return metric_widget(
            title, metrics, region=args.region, period=args.period_seconds, stat=stat
        )

    return grid([_TIER_WIDGETS[tier](args, widget) for tier in args.tiers()])


def grid(sections: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Place widgets left to right, wrapping at the grid's width; each section starts a row."""
    placed: list[dict[str, Any]] = []
    y = 0
    for section in sections:
        x = 0
        for item in section:
            if x + item["width"] > DASHBOARD_COLUMNS:
                x, y = 0, y + item["height"]
            placed.append({**item, "x": x, "y": y})
            x += item["width"]
        y += max((item["height"] for item in section), default=0)
    return placed


class OperationsDashboard(pulumi.ComponentResource):
    """One CloudWatch dashboard with each tier's key signals (O2)."""

    dashboard_name: str
    widget_count: int

    def __init__(
        self, name: str, args: OperationsDashboardArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:observability:OperationsDashboard", name, None, opts)
        self.dashboard_name = args.namer.name("operations", NameKind.DASHBOARD)
        widgets = dashboard_widgets(args)
        self.widget_count = len(widgets)
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=self.dashboard_name,
            dashboard_body=pulumi.Output.json_dumps({"widgets": widgets}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"dashboard_name": self.dashboard_name})
