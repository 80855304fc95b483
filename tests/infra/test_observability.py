"""Operations (O2): the alarm topic, `metric_alarm`, and the operations dashboard's widgets."""

from __future__ import annotations

import json
from dataclasses import replace

import pulumi
import pytest

from components.observability import (
    AlarmTopic,
    AlarmTopicArgs,
    OperationsDashboard,
    OperationsDashboardArgs,
    cache_member_ids,
    grid,
    metric_alarm,
)
from offline.engine import ACCOUNT_ID, run_components

REGION = "eu-central-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-alarms-test"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def build(program):
    return run_components(program, region=REGION)


# --- AlarmTopic ------------------------------------------------------------------------------


def topic_run(context, namer, email=""):
    return build(
        lambda: AlarmTopic(
            "alarms", AlarmTopicArgs(namer=namer, context=context, kms_key_arn=KEY_ARN, email=email)
        )
    )


def test_o2_alarm_topic_is_encrypted_with_the_messaging_key(context, namer):
    topic = topic_run(context, namer).one("aws:sns/topic:Topic")
    assert topic.inputs["name"] == "media-alarms-test"
    assert topic.inputs["kmsMasterKeyId"] == KEY_ARN
    assert topic.inputs["tags"] == {"Name": "media-alarms-test"}


def test_o2_topic_policy_lets_cloudwatch_publish_and_denies_plain_http(context, namer):
    run = topic_run(context, namer)
    policy = json.loads(run.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {
        "AccountManagesTopic",
        "CloudWatchAlarmsPublish",
        "DenyInsecureTransport",
    }
    assert by_sid["CloudWatchAlarmsPublish"] == {
        "Sid": "CloudWatchAlarmsPublish",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": TOPIC_ARN,
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}},
    }
    assert by_sid["DenyInsecureTransport"]["Effect"] == "Deny"
    assert by_sid["DenyInsecureTransport"]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    assert by_sid["AccountManagesTopic"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}


def test_o2_no_subscription_without_email(context, namer):
    assert topic_run(context, namer).of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_o2_email_subscription_from_config(context, namer):
    run = topic_run(context, namer, email="ops@example.com")
    sub = run.one("aws:sns/topicSubscription:TopicSubscription")
    assert (sub.inputs["protocol"], sub.inputs["endpoint"], sub.inputs["topic"]) == (
        "email",
        "ops@example.com",
        TOPIC_ARN,
    )


# --- metric_alarm ----------------------------------------------------------------------------


def alarm_run(**overrides):
    def program():
        parent = pulumi.ComponentResource("test:index:Parent", "parent")
        kwargs = dict(
            alarm_name="media-x-test",
            description="d",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": "q"},
            statistic="Maximum",
            comparison="GreaterThanThreshold",
            threshold=0,
            topic_arn=TOPIC_ARN,
            parent=parent,
        )
        kwargs.update(overrides)
        metric_alarm("alarm", **kwargs)

    return build(program).one(ALARM)


def test_o2_metric_alarm_notifies_and_clears_through_the_topic():
    alarm = alarm_run()
    assert alarm.inputs["alarmActions"] == [TOPIC_ARN]
    assert alarm.inputs["okActions"] == [TOPIC_ARN]
    assert alarm.inputs["treatMissingData"] == "notBreaching"
    assert alarm.inputs["statistic"] == "Maximum"
    assert "extendedStatistic" not in alarm.inputs
    assert (alarm.inputs["period"], alarm.inputs["evaluationPeriods"]) == (300, 1)


def test_o2_metric_alarm_percentiles_use_extended_statistic():
    alarm = alarm_run(statistic="p99", treat_missing_data="breaching")
    assert alarm.inputs["extendedStatistic"] == "p99"
    assert "statistic" not in alarm.inputs
    assert alarm.inputs["treatMissingData"] == "breaching"


# --- OperationsDashboard ---------------------------------------------------------------------


@pytest.fixture
def full_args(namer) -> OperationsDashboardArgs:
    return OperationsDashboardArgs(
        namer=namer,
        region=REGION,
        api_name="media-api-test",
        api_stage="v1",
        queue_name="media-jobs-test",
        dead_letter_queue_name="media-jobs-dlq-test",
        cluster_name="media-workers-test",
        service_name="media-worker-test",
        stream_name="media-kinesis-test",
        db_cluster_identifier="media-aurora-test",
        cache_replication_group_id="media-cache-test",
        cache_node_count=2,
    )


def body_of(args: OperationsDashboardArgs):
    run = build(lambda: OperationsDashboard("operations", args))
    dashboard = run.one(DASHBOARD)
    return dashboard, json.loads(dashboard.inputs["dashboardBody"])


def widgets_by_title(body) -> dict[str, dict]:
    return {w["properties"]["title"]: w for w in body["widgets"]}


API = ("ApiName", "media-api-test", "Stage", "v1")
ECS = ("ClusterName", "media-workers-test", "ServiceName", "media-worker-test")

EXPECTED_METRICS = {
    "API requests and errors": (
        "Sum",
        [
            ["AWS/ApiGateway", "Count", *API],
            ["AWS/ApiGateway", "4XXError", *API],
            ["AWS/ApiGateway", "5XXError", *API],
        ],
    ),
    "API latency (ms)": (
        "p99",
        [
            ["AWS/ApiGateway", "Latency", *API, {"stat": "p50"}],
            ["AWS/ApiGateway", "Latency", *API, {"stat": "p99"}],
            ["AWS/ApiGateway", "IntegrationLatency", *API, {"stat": "p99"}],
        ],
    ),
    "Job queue depth": (
        "Maximum",
        [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "media-jobs-test"],
            ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", "media-jobs-test"],
        ],
    ),
    "Oldest job age (s)": (
        "Maximum",
        [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "media-jobs-test"]],
    ),
    "Dead-letter queue depth": (
        "Maximum",
        [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "media-jobs-dlq-test"]],
    ),
    "Worker CPU and memory (%)": (
        "Average",
        [["AWS/ECS", "CPUUtilization", *ECS], ["AWS/ECS", "MemoryUtilization", *ECS]],
    ),
    "Worker tasks": (
        "Average",
        [
            ["ECS/ContainerInsights", "RunningTaskCount", *ECS],
            ["ECS/ContainerInsights", "DesiredTaskCount", *ECS],
        ],
    ),
    "Stream iterator age (ms)": (
        "Maximum",
        [["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", "media-kinesis-test"]],
    ),
    "Stream records and throttling": (
        "Sum",
        [
            ["AWS/Kinesis", "IncomingRecords", "StreamName", "media-kinesis-test"],
            [
                "AWS/Kinesis",
                "WriteProvisionedThroughputExceeded",
                "StreamName",
                "media-kinesis-test",
            ],
            [
                "AWS/Kinesis",
                "ReadProvisionedThroughputExceeded",
                "StreamName",
                "media-kinesis-test",
            ],
        ],
    ),
    "Database capacity (ACU)": (
        "Average",
        [["AWS/RDS", "ServerlessDatabaseCapacity", "DBClusterIdentifier", "media-aurora-test"]],
    ),
    "Database CPU and ACU use (%)": (
        "Maximum",
        [
            ["AWS/RDS", "CPUUtilization", "DBClusterIdentifier", "media-aurora-test"],
            ["AWS/RDS", "ACUUtilization", "DBClusterIdentifier", "media-aurora-test"],
        ],
    ),
    "Database connections": (
        "Maximum",
        [["AWS/RDS", "DatabaseConnections", "DBClusterIdentifier", "media-aurora-test"]],
    ),
    "Cache engine CPU (%)": (
        "Average",
        [
            ["AWS/ElastiCache", "EngineCPUUtilization", "CacheClusterId", "media-cache-test-001"],
            ["AWS/ElastiCache", "EngineCPUUtilization", "CacheClusterId", "media-cache-test-002"],
        ],
    ),
    "Cache memory used (%)": (
        "Average",
        [
            [
                "AWS/ElastiCache",
                "DatabaseMemoryUsagePercentage",
                "CacheClusterId",
                "media-cache-test-001",
            ],
            [
                "AWS/ElastiCache",
                "DatabaseMemoryUsagePercentage",
                "CacheClusterId",
                "media-cache-test-002",
            ],
        ],
    ),
    "Cache evictions": (
        "Sum",
        [
            ["AWS/ElastiCache", "Evictions", "CacheClusterId", "media-cache-test-001"],
            ["AWS/ElastiCache", "Evictions", "CacheClusterId", "media-cache-test-002"],
        ],
    ),
}


def test_o2_dashboard_is_named_by_the_namer(full_args):
    dashboard, _ = body_of(full_args)
    assert dashboard.inputs["dashboardName"] == "media-operations-test"


def test_o2_dashboard_widgets_show_exactly_each_tiers_key_metrics(full_args):
    _, body = body_of(full_args)
    widgets = widgets_by_title(body)
    assert list(widgets) == list(EXPECTED_METRICS)
    for title, (stat, metrics) in EXPECTED_METRICS.items():
        properties = widgets[title]["properties"]
        assert (properties["stat"], properties["metrics"]) == (stat, metrics), title
        assert (properties["region"], properties["period"], properties["view"]) == (
            REGION,
            300,
            "timeSeries",
        )


def test_o2_dashboard_layout_starts_each_tier_on_a_new_row_of_three(full_args):
    _, body = body_of(full_args)
    positions = [
        (w["properties"]["title"], w["x"], w["y"], w["width"], w["height"]) for w in body["widgets"]
    ]
    assert positions[:5] == [
        ("API requests and errors", 0, 0, 8, 6),
        ("API latency (ms)", 8, 0, 8, 6),
        ("Job queue depth", 0, 6, 8, 6),
        ("Oldest job age (s)", 8, 6, 8, 6),
        ("Dead-letter queue depth", 16, 6, 8, 6),
    ]
    assert positions[-3:] == [
        ("Cache engine CPU (%)", 0, 30, 8, 6),
        ("Cache memory used (%)", 8, 30, 8, 6),
        ("Cache evictions", 16, 30, 8, 6),
    ]
    assert all(x + w <= 24 for _, x, _, w, _ in positions)


def test_o2_grid_wraps_a_full_row_and_skips_empty_sections():
    widget = {"type": "metric", "width": 8, "height": 6}
    placed = grid([[widget] * 4, [], [{**widget, "width": 12}] * 2])
    assert [(w["x"], w["y"]) for w in placed] == [
        (0, 0),
        (8, 0),
        (16, 0),
        (0, 6),
        (0, 12),
        (12, 12),
    ]


def test_o2_dashboard_shows_only_the_tiers_given(namer):
    args = OperationsDashboardArgs(
        namer=namer,
        region=REGION,
        dead_letter_queue_name="media-jobs-dlq-test",
        stream_name="media-kinesis-test",
        period_seconds=60,
    )
    _, body = body_of(args)
    assert list(widgets_by_title(body)) == [
        "Dead-letter queue depth",
        "Stream iterator age (ms)",
        "Stream records and throttling",
    ]
    assert {w["properties"]["period"] for w in body["widgets"]} == {60}


def test_o2_dashboard_accepts_outputs_as_identifiers(namer):
    def program():
        name = pulumi.Output.from_input("media-kinesis-test")
        OperationsDashboard(
            "operations",
            OperationsDashboardArgs(
                namer=namer,
                region=REGION,
                stream_name=name,
                cache_replication_group_id=pulumi.Output.from_input("media-cache-test"),
                cache_node_count=1,
            ),
        )

    body = json.loads(build(program).one(DASHBOARD).inputs["dashboardBody"])
    metrics = [row for w in body["widgets"] for row in w["properties"]["metrics"]]
    assert ["AWS/Kinesis", "IncomingRecords", "StreamName", "media-kinesis-test"] in metrics
    assert ["AWS/ElastiCache", "Evictions", "CacheClusterId", "media-cache-test-001"] in metrics


def test_o2_cache_member_ids_follow_elasticache_numbering():
    def program():
        ids = cache_member_ids("media-cache-prod", 3)
        pulumi.export("ids", pulumi.Output.all(*ids))

    assert build(program).outputs["ids"] == [
        "media-cache-prod-001",
        "media-cache-prod-002",
        "media-cache-prod-003",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"period_seconds": 120}, "period_seconds=120: allowed one of 60, 300, 900, 3600"),
        ({"api_stage": None}, "api_name='media-api-test', api_stage=None: give both or neither"),
        (
            {"service_name": None},
            "cluster_name='media-workers-test', service_name=None: give both or neither",
        ),
        (
            {"cache_node_count": 0},
            "cache_node_count=0: allowed 1..6 with cache_replication_group_id",
        ),
        (
            {"cache_node_count": 7},
            "cache_node_count=7: allowed 1..6 with cache_replication_group_id",
        ),
        (
            {"cache_replication_group_id": None},
            "cache_node_count=2: allowed 0 without cache_replication_group_id",
        ),
    ],
)
def test_o2_dashboard_bad_args_are_named(full_args, changes, message):
    with pytest.raises(ValueError, match="OperationsDashboardArgs: ") as error:
        replace(full_args, **changes).validate()
    assert message in str(error.value)


def test_o2_dashboard_without_any_tier_is_refused(namer):
    with pytest.raises(ValueError) as error:
        OperationsDashboardArgs(namer=namer, region=REGION).validate()
    assert str(error.value) == (
        "OperationsDashboardArgs: no tier identifiers given: allowed any of api_name + "
        "api_stage, queue_name, dead_letter_queue_name, cluster_name + service_name, "
        "stream_name, db_cluster_identifier, cache_replication_group_id"
    )


def test_o2_bad_args_register_nothing(namer):
    with pytest.raises(ValueError) as error:
        build(
            lambda: OperationsDashboard(
                "operations", OperationsDashboardArgs(namer=namer, region=REGION, period_seconds=7)
            )
        )
    assert error.value.registered == []


# --- whole program ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_o2_stack_dashboard_shows_every_tier_of_the_stack(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    dashboard = run.one(DASHBOARD)
    assert dashboard.inputs["dashboardName"] == f"media-operations-{stack}"
    assert run.outputs["operationsDashboardName"] == f"media-operations-{stack}"
    body = json.loads(dashboard.inputs["dashboardBody"])
    metrics = [row for w in body["widgets"] for row in w["properties"]["metrics"]]
    nodes = {"dev": 2, "prod": 3}[stack]
    api_name = run.one("aws:apigateway/restApi:RestApi").inputs["name"]
    stage = run.one("aws:apigateway/stage:Stage").inputs["stageName"]
    expected_rows = [
        ["AWS/ApiGateway", "5XXError", "ApiName", api_name, "Stage", stage],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", f"media-jobs-{stack}"],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f"media-jobs-dlq-{stack}"],
        [
            "AWS/ECS",
            "CPUUtilization",
            "ClusterName",
            f"media-workers-{stack}",
            "ServiceName",
            f"media-worker-{stack}",
        ],
        [
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            "StreamName",
            f"media-kinesis-{stack}",
        ],
        ["AWS/RDS", "DatabaseConnections", "DBClusterIdentifier", f"media-aurora-{stack}"],
        ["AWS/ElastiCache", "Evictions", "CacheClusterId", f"media-cache-{stack}-{nodes:03d}"],
    ]
    for row in expected_rows:
        assert row in metrics, row
    assert len(body["widgets"]) == len(EXPECTED_METRICS)
    assert {w["properties"]["region"] for w in body["widgets"]} == {"eu-central-1"}


@pytest.mark.parametrize("region", ["us-east-1", "ap-northeast-1"])
def test_o2_dashboard_metrics_follow_the_region_g1(region_runs, region):
    run = region_runs["dev", region]
    body = json.loads(run.one(DASHBOARD).inputs["dashboardBody"])
    assert {w["properties"]["region"] for w in body["widgets"]} == {region}
    assert run.warnings == []
