"""Program-wide checks of the security controls the "Operate" issue names (item 1), by AWS
Foundational Security Best Practices control where one exists, over every resource of both
stacks — not a list of today's resource names."""

from __future__ import annotations

import json

import pytest

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET = "aws:s3/bucket:Bucket"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"


def test_cloudwatch_16_every_prod_log_group_is_kept_a_year_dev_stays_short(dev_run, prod_run):
    prod = {g.name: g.inputs["retentionInDays"] for g in prod_run.of_type(LOG_GROUP)}
    assert len(prod) >= 8
    assert {name: days for name, days in prod.items() if days < 365} == {}
    assert {g.inputs["retentionInDays"] for g in dev_run.of_type(LOG_GROUP)} == {14}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_bucket_aborts_incomplete_uploads_on_every_object(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]

    def aborts_everywhere(rule: dict) -> bool:
        scope = rule.get("filter", {})
        return (
            rule["status"] == "Enabled"
            and scope.get("prefix", "") == ""
            and "tag" not in scope
            and rule.get("abortIncompleteMultipartUpload", {}).get("daysAfterInitiation", 0) >= 1
        )

    buckets = {b.id for b in run.of_type(BUCKET)}
    assert len(buckets) >= 4
    lifecycle_buckets = {
        lifecycle.inputs["bucket"]
        for lifecycle in run.of_type(LIFECYCLE)
        if any(aborts_everywhere(rule) for rule in lifecycle.inputs["rules"])
    }
    assert lifecycle_buckets == buckets


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rds_6_enhanced_monitoring_on_every_instance(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    instances = run.of_type(INSTANCE)
    assert len(instances) >= 2
    role = run.one("aws:iam/role:Role", "database-monitoring-role")
    for instance in instances:
        assert instance.inputs["monitoringInterval"] == 60
        assert instance.inputs["monitoringRoleArn"] == role.state["arn"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_migrations_never_run_twice_at_once_and_the_trail_notifies_an_encrypted_topic(
    stack, dev_run, prod_run
):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    migrate = run.one("aws:lambda/function:Function", "schema-function")
    assert migrate.inputs["reservedConcurrentExecutions"] == 1
    trail = run.one("aws:cloudtrail/trail:Trail")
    topic = next(
        t
        for t in run.of_type("aws:sns/topic:Topic")
        if t.state["arn"] == trail.inputs["snsTopicName"]
    )
    assert topic.inputs["kmsMasterKeyId"] == trail.inputs["kmsKeyId"]


def test_dev_database_pauses_when_idle_prod_keeps_its_floor(dev_run, prod_run):
    """Issue "Operate" item 2: the dev cluster scales to 0 ACUs; prod is unchanged."""
    dev = dev_run.one("aws:rds/cluster:Cluster").inputs["serverlessv2ScalingConfiguration"]
    prod = prod_run.one("aws:rds/cluster:Cluster").inputs["serverlessv2ScalingConfiguration"]
    assert (dev["minCapacity"], dev["secondsUntilAutoPause"]) == (0, 3600)
    assert prod == {"minCapacity": 2, "maxCapacity": 32}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_s3_9_every_bucket_but_the_log_bucket_writes_access_logs_it_admits(
    stack, dev_run, prod_run
):
    """FSBP S3.9: ingest, media and the audit trail's bucket log their requests to the
    access-log bucket, whose policy admits log delivery for exactly those buckets; in prod the
    trail's replica logs to the access-log bucket of its own region (auditReplicaRegion)."""
    run = {"dev": dev_run, "prod": prod_run}[stack]
    logs = run.one(BUCKET, "media-s3-logs")
    logged = {
        entry.inputs["bucket"]: (entry.inputs["targetBucket"], entry.inputs["targetPrefix"])
        for entry in run.of_type("aws:s3/bucketLogging:BucketLogging")
    }
    by_name = {b.name: b.id for b in run.of_type(BUCKET)}
    replica = {}
    if stack == "prod":
        replica_logs = run.one(BUCKET, "audit-replica-logs").inputs["bucket"]
        replica = {by_name["audit-replica-bucket"]: (replica_logs, "audit/")}
    assert logged == {
        by_name["media-ingest"]: (logs.inputs["bucket"], "ingest/"),
        by_name["media-media"]: (logs.inputs["bucket"], "media/"),
        by_name["audit-bucket"]: (logs.inputs["bucket"], "audit/"),
        **replica,
    }
    policy = json.loads(
        next(
            p
            for p in run.of_type("aws:s3/bucketPolicy:BucketPolicy")
            if p.inputs["bucket"] == logs.id
        ).inputs["policy"]
    )
    (delivery,) = [s for s in policy["Statement"] if s.get("Sid") == "S3ServerAccessLogsDelivery"]
    sources = delivery["Condition"]["ArnLike"]["aws:SourceArn"]
    assert sorted(sources) == sorted(
        f"arn:aws:s3:::{run.one(BUCKET, name).inputs['bucket']}"
        for name in ("media-ingest", "media-media", "audit-bucket")
    )
