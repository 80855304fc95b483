"""AuditTrail (O3): CloudTrail to an encrypted, versioned, private bucket and CloudWatch Logs."""

from __future__ import annotations

import json
from dataclasses import replace

import pulumi
import pulumi_aws as aws
import pytest

from components.audit import (
    AuditTrail,
    AuditTrailArgs,
    AuditTrailMode,
    cloudtrail_key_grants,
    trail_bucket_name,
)
from components.media_storage import AccessLogTarget
from components.naming import Namer
from offline.engine import ACCOUNT_ID, run_components, run_stack
from stack_config import ConfigError, parse_settings
from tests.infra.expect import cloudtrail_key_statements, guarded

REGION = "eu-central-1"
LOGS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555"
TRAIL_NAME = "media-trail-test"
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL_NAME}"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-trail-notifications-test"
BUCKET = f"media-trail-{ACCOUNT_ID}-test"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
GROUP_NAME = "/aws/cloudtrail/media-trail-test"
GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{GROUP_NAME}"
EXISTING = "arn:aws:cloudtrail:eu-central-1:999988887777:trail/org-trail"
TRAIL = "aws:cloudtrail/trail:Trail"


@pytest.fixture
def base_args(namer, context) -> AuditTrailArgs:
    return AuditTrailArgs(namer=namer, context=context, logs_key_arn=LOGS_KEY)


def build(args: AuditTrailArgs):
    return run_components(lambda: AuditTrail("audit", args), region=REGION)


@pytest.fixture(scope="module")
def created(module_namer, module_context):
    """The default trail, shared by the tests that only read it."""
    return build(AuditTrailArgs(namer=module_namer, context=module_context, logs_key_arn=LOGS_KEY))


def audit_key(run):
    alias = run.one("aws:kms/alias:Alias")
    assert alias.inputs["name"] == "alias/media-audit-key-test"
    return next(
        k for k in run.of_type("aws:kms/key:Key") if k.state["keyId"] == alias.inputs["targetKeyId"]
    )


def statements(policy_json: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(policy_json)["Statement"]}


# --- the trail -------------------------------------------------------------------------------


def test_o3_trail_validates_files_covers_all_regions_and_global_services(created):
    trail = created.one(TRAIL)
    inputs = trail.inputs
    assert inputs["name"] == TRAIL_NAME
    assert inputs["enableLogFileValidation"] is True
    assert inputs["isMultiRegionTrail"] is True
    assert inputs["includeGlobalServiceEvents"] is True
    assert inputs["s3BucketName"] == BUCKET
    assert inputs["kmsKeyId"] == audit_key(created).state["arn"]
    assert inputs["tags"] == {"Name": TRAIL_NAME}


def test_o3_trail_delivers_to_cloudwatch_with_the_log_stream_wildcard(created):
    trail = created.one(TRAIL).inputs
    assert trail["cloudWatchLogsGroupArn"] == GROUP_ARN + ":*"
    assert trail["cloudWatchLogsRoleArn"] == (
        f"arn:aws:iam::{ACCOUNT_ID}:role/media-trail-logs-test"
    )


def test_o3_trail_waits_for_the_bucket_topic_and_role_policies(created):
    trail = created.one(TRAIL)
    assert created.one("aws:s3/bucketPolicy:BucketPolicy").urn in trail.dependencies
    assert created.one("aws:iam/rolePolicy:RolePolicy").urn in trail.dependencies
    assert created.one("aws:sns/topicPolicy:TopicPolicy").urn in trail.dependencies


def test_o3_trail_notifies_an_encrypted_topic_only_it_may_publish_to(created):
    """Issue "Operate" item 1: a CloudTrail SNS notification topic, encrypted."""
    topic = created.one("aws:sns/topic:Topic")
    assert topic.inputs["name"] == "media-trail-notifications-test"
    assert topic.inputs["kmsMasterKeyId"] == audit_key(created).state["arn"]
    assert created.one(TRAIL).inputs["snsTopicName"] == topic.state["arn"]
    policy = json.loads(created.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    assert policy["Statement"] == [
        {
            "Sid": "CloudTrailPublishesForThisTrail",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic.state["arn"],
            "Condition": {"StringEquals": {"aws:SourceArn": TRAIL_ARN}},
        }
    ]


def test_o3_trail_log_group_uses_the_logs_key_and_retention(created):
    group = created.one("aws:cloudwatch/logGroup:LogGroup").inputs
    assert (group["name"], group["kmsKeyId"], group["retentionInDays"]) == (
        GROUP_NAME,
        LOGS_KEY,
        90,
    )


def test_o3_log_role_is_trusted_by_this_trail_only(created):
    role = created.one("aws:iam/role:Role").inputs
    assert role["name"] == "media-trail-logs-test"
    trust = json.loads(role["assumeRolePolicy"])["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": TRAIL_ARN},
            },
        }
    ]


def test_o3_log_role_writes_streams_of_exactly_its_group(created):
    policy = json.loads(created.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    assert policy["Statement"] == [
        {
            "Sid": "TrailWritesItsLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{GROUP_ARN}:log-stream:*"],
        }
    ]


# --- the audit key ---------------------------------------------------------------------------


def test_o3_audit_key_rotates_and_follows_the_deletion_window(created, base_args):
    key = audit_key(created).inputs
    assert key["enableKeyRotation"] is True
    assert key["deletionWindowInDays"] == 7
    protected = build(replace(base_args, protect_data=True))
    assert audit_key(protected).inputs["deletionWindowInDays"] == 30


def test_o3_audit_key_policy_has_the_cloudtrail_statements_k2(created):
    policy = statements(audit_key(created).inputs["policy"])
    assert set(policy) == {
        "EnableAccountIamPolicies",
        "CloudTrailEncryptLogs",
        "CloudTrailDescribeKeyAndBucketKey",
        "CloudTrailNotifyEncryptedTopic",
    }
    assert [
        policy["CloudTrailEncryptLogs"],
        policy["CloudTrailDescribeKeyAndBucketKey"],
        policy["CloudTrailNotifyEncryptedTopic"],
    ] == cloudtrail_key_statements(TRAIL_ARN, TOPIC_ARN)


def test_o3_key_grants_use_the_partition(context):
    """G1: in aws-cn the principal and the trail ARNs follow the partition and DNS suffix."""
    china = replace(context, partition="aws-cn", region="cn-north-1", dns_suffix="amazonaws.com.cn")
    trail = f"arn:aws-cn:cloudtrail:cn-north-1:{ACCOUNT_ID}:trail/media-trail-test"
    topic = f"arn:aws-cn:sns:cn-north-1:{ACCOUNT_ID}:media-trail-notifications-test"

    def program():
        grants = cloudtrail_key_grants(china, trail, topic)
        pulumi.export("statements", pulumi.Output.json_dumps([g.statement() for g in grants]))

    run = run_components(program, region="cn-north-1")
    assert json.loads(run.outputs["statements"]) == cloudtrail_key_statements(
        trail, topic, partition="aws-cn", dns_suffix="amazonaws.com.cn"
    )


# --- the bucket ------------------------------------------------------------------------------


def test_o3_bucket_name_carries_account_and_suffix_g2(created):
    bucket = created.one("aws:s3/bucket:Bucket").inputs
    assert bucket["bucket"] == BUCKET
    assert bucket["tags"] == {"Name": BUCKET}
    assert bucket["forceDestroy"] is True


def test_o3_bucket_kept_on_destroy_with_data_protection_g3(base_args):
    run = build(replace(base_args, protect_data=True))
    assert run.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is False


def test_o3_bucket_is_sse_kms_with_the_audit_key(created):
    sse = created.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs
    assert sse["bucket"] == BUCKET
    assert sse["rules"] == [
        {
            "applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms",
                "kmsMasterKeyId": audit_key(created).state["arn"],
            },
            "bucketKeyEnabled": True,
        }
    ]


def test_o3_bucket_is_versioned_private_and_owner_enforced(created):
    versioning = created.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning == {"bucket": BUCKET, "versioningConfiguration": {"status": "Enabled"}}
    block = created.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert block == {
        "bucket": BUCKET,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    ownership = created.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership == {"bucket": BUCKET, "rule": {"objectOwnership": "BucketOwnerEnforced"}}


def test_o3_bucket_policy_is_tls_only_and_scoped_to_the_trail(created):
    policy_resource = created.one("aws:s3/bucketPolicy:BucketPolicy")
    policy = statements(policy_resource.inputs["policy"])
    assert policy == {
        "DenyInsecureTransport": {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [BUCKET_ARN, f"{BUCKET_ARN}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        "CloudTrailAclCheck": {
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": BUCKET_ARN,
            "Condition": {"StringEquals": {"aws:SourceArn": TRAIL_ARN}},
        },
        "CloudTrailWrite": {
            "Sid": "CloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{BUCKET_ARN}/AWSLogs/{ACCOUNT_ID}/*",
            "Condition": {
                "StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    "aws:SourceArn": TRAIL_ARN,
                }
            },
        },
    }
    block = created.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.urn in policy_resource.dependencies


def test_o3_lifecycle_moves_to_glacier_ir_then_expires_noncurrent_too(base_args):
    run = build(replace(base_args, transition_days=90, expiration_days=2557))
    lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs
    assert lifecycle["rules"] == [
        {
            "id": "audit-log-retention",
            "status": "Enabled",
            "filter": {"prefix": "AWSLogs/"},
            "transitions": [{"days": 90, "storageClass": "GLACIER_IR"}],
            "expiration": {"days": 2557},
            "noncurrentVersionTransitions": [{"noncurrentDays": 90, "storageClass": "GLACIER_IR"}],
            "noncurrentVersionExpiration": {"noncurrentDays": 2557},
        },
        # Issue "Operate" item 1: abandoned uploads are aborted everywhere in the bucket.
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7},
        },
    ]


def test_o3_created_mode_exposes_trail_bucket_key_and_group(created):
    component = created.one("media:audit:AuditTrail")
    assert component.type == "media:audit:AuditTrail"
    kinds = sorted(r.type for r in created.resources if r.custom)
    assert kinds == sorted(
        [
            "aws:kms/key:Key",
            "aws:kms/alias:Alias",
            "aws:s3/bucket:Bucket",
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketVersioning:BucketVersioning",
            "aws:s3/bucketServerSideEncryptionConfiguration:"
            "BucketServerSideEncryptionConfiguration",
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "aws:s3/bucketPolicy:BucketPolicy",
            "aws:cloudwatch/logGroup:LogGroup",
            "aws:iam/role:Role",
            "aws:iam/rolePolicy:RolePolicy",
            "aws:sns/topic:Topic",
            "aws:sns/topicPolicy:TopicPolicy",
            TRAIL,
        ]
    )
    assert created.warnings == []


# --- EXISTING and OFF ------------------------------------------------------------------------


def test_o3_existing_mode_creates_nothing_and_exposes_the_arn(base_args):
    def program():
        audit = AuditTrail(
            "audit", replace(base_args, mode=AuditTrailMode.EXISTING, existing_trail_arn=EXISTING)
        )
        assert audit.bucket_name is None and audit.key_arn is None
        pulumi.export("arn", audit.trail_arn)

    run = run_components(program, region=REGION)
    assert [r.type for r in run.resources] == ["media:audit:AuditTrail"]
    assert run.outputs["arn"] == EXISTING
    assert run.warnings == []


def test_o3_off_mode_creates_nothing_and_warns(base_args):
    run = build(replace(base_args, mode=AuditTrailMode.OFF))
    assert [r.type for r in run.resources] == ["media:audit:AuditTrail"]
    assert run.warnings == [
        "auditTrailMode=OFF: this stack creates no CloudTrail trail; API activity is audited "
        "only if the account has another trail (O3)"
    ]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"mode": AuditTrailMode.EXISTING},
            'existing_trail_arn="": allowed a CloudTrail trail ARN (arn:<partition>:cloudtrail:'
            "<region>:<account>:trail/<name>) when mode is EXISTING",
        ),
        (
            {"mode": AuditTrailMode.EXISTING, "existing_trail_arn": "arn:aws:s3:::bucket"},
            'existing_trail_arn="arn:aws:s3:::bucket": allowed a CloudTrail trail ARN',
        ),
        (
            {"existing_trail_arn": EXISTING},
            f'existing_trail_arn="{EXISTING}": allowed empty unless mode is EXISTING (create or bring your own, not both)',
        ),
        (
            {"mode": AuditTrailMode.OFF, "existing_trail_arn": EXISTING},
            "allowed empty unless mode is EXISTING",
        ),
        ({"logs_key_arn": None}, "logs_key_arn=None: required with mode CREATE"),
        ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3, 5"),
        ({"transition_days": 0}, "transition_days=0: allowed 1..3650"),
        ({"transition_days": 400}, "expiration_days=365: allowed more than transition_days (400)"),
    ],
)
def test_o3_bad_args_are_named(base_args, changes, message):
    with pytest.raises(ValueError, match=r"^AuditTrailArgs: ") as error:
        replace(base_args, **changes).validate()
    assert message in str(error.value)


def test_o3_bucket_name_too_long_is_caught_before_anything_exists_g2(context):
    args = AuditTrailArgs(namer=Namer("p" * 15, "s" * 30), context=context, logs_key_arn=LOGS_KEY)
    with pytest.raises(ValueError) as error:
        build(args)
    assert "namer: name 'ppppppppppppppp-trail-000000000000-" in str(error.value)
    assert "S3_BUCKET names allow at most 63" in str(error.value)
    assert error.value.registered == []


def test_o3_bucket_name_helper_checks_the_s3_rule():
    assert trail_bucket_name(Namer("", "dev"), ACCOUNT_ID) == f"trail-{ACCOUNT_ID}-dev"


def test_o3_existing_mode_needs_no_logs_key(context, namer):
    """Only CREATE makes a log group, so only CREATE requires the logs key."""
    existing = AuditTrailArgs(
        namer=namer, context=context, mode=AuditTrailMode.EXISTING, existing_trail_arn=EXISTING
    )
    off = AuditTrailArgs(namer=namer, context=context, mode=AuditTrailMode.OFF)
    assert (existing.logs_key_arn, off.logs_key_arn) == (None, None)
    assert (existing.validate(), off.validate()) == (None, None)
    with pytest.raises(ValueError) as error:
        replace(existing, mode=AuditTrailMode.CREATE, existing_trail_arn="").validate()
    assert str(error.value) == "AuditTrailArgs: logs_key_arn=None: required with mode CREATE"
    run = build(existing)
    assert [r.type for r in run.resources] == ["media:audit:AuditTrail"]


# --- config (G8) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"auditTrailMode": "SOMETIMES"},
            'auditTrailMode="SOMETIMES": allowed one of CREATE, EXISTING, OFF',
        ),
        (
            {"auditLogTransitionDays": "400"},
            "auditLogExpirationDays=365: allowed more than auditLogTransitionDays (400)",
        ),
    ],
)
def test_o3_bad_audit_config_fails_with_the_key_named_g8(raw, message):
    """A missing or misplaced existing-trail ARN are rows of test_settings.BAD_CONFIGURATIONS."""
    with pytest.raises(ConfigError) as error:
        parse_settings(raw, project="media-pipeline", stack="dev", region=REGION)
    assert error.value.problems == [message]


# --- whole program ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_o3_stacks_create_the_trail_and_export_it_g6(stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    trail = run.one(TRAIL)
    assert trail.inputs["name"] == f"media-trail-{stack}"
    assert run.outputs["auditTrailArn"] == (
        f"arn:aws:cloudtrail:eu-central-1:{ACCOUNT_ID}:trail/media-trail-{stack}"
    )
    assert run.outputs["auditBucketName"] == f"media-trail-{ACCOUNT_ID}-{stack}"
    audit_alias = next(
        a
        for a in run.of_type("aws:kms/alias:Alias")
        if a.inputs["name"] == f"alias/media-audit-key-{stack}"
    )
    audit_key = next(
        k
        for k in run.of_type("aws:kms/key:Key")
        if k.state["keyId"] == audit_alias.inputs["targetKeyId"]
    )
    assert audit_key.name == "audit-key-key"
    assert trail.inputs["kmsKeyId"] == audit_key.state["arn"]
    group = next(
        g
        for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g.inputs["name"] == f"/aws/cloudtrail/media-trail-{stack}"
    )
    assert group.inputs["kmsKeyId"] == run.one("aws:kms/key:Key", "keys-logs-key").state["arn"]


@pytest.mark.parametrize(
    ("stack", "transition", "expiration", "retention", "destroy", "window"),
    [
        ("dev", 30, 90, 14, True, 7),
        ("prod", 90, 2557, 365, False, 30),
    ],
)
def test_o3_stack_config_reaches_the_trail_g3(
    stack, transition, expiration, retention, destroy, window, dev_run, prod_run
):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    rule = run.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "audit-bucket-lifecycle"
    ).inputs["rules"][0]
    assert (rule["transitions"][0]["days"], rule["expiration"]["days"]) == (transition, expiration)
    group = next(
        g
        for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g.inputs["name"].startswith("/aws/cloudtrail/")
    )
    assert group.inputs["retentionInDays"] == retention
    assert run.one("aws:s3/bucket:Bucket", "audit-bucket").inputs["forceDestroy"] is destroy
    alias = next(
        a
        for a in run.of_type("aws:kms/alias:Alias")
        if a.inputs["name"] == f"alias/media-audit-key-{stack}"
    )
    key = next(
        k for k in run.of_type("aws:kms/key:Key") if k.state["keyId"] == alias.inputs["targetKeyId"]
    )
    assert key.inputs["deletionWindowInDays"] == window


def test_o3_existing_trail_from_config_is_exported_without_a_bucket():
    run = run_stack("dev", {"auditTrailMode": "EXISTING", "auditTrailExistingArn": EXISTING})
    assert run.of_type(TRAIL) == []
    # Only the media path's buckets remain.
    assert [b.name for b in run.of_type("aws:s3/bucket:Bucket") if b.name.startswith("audit")] == []
    assert run.outputs["auditTrailArn"] == EXISTING
    assert "auditBucketName" not in run.outputs
    assert run.warnings == []


def test_o3_trail_off_from_config_is_a_visible_opt_out():
    run = run_stack("dev", {"auditTrailMode": "OFF"})
    assert run.of_type(TRAIL) == []
    assert "auditTrailArn" not in run.outputs
    assert any(w.startswith("auditTrailMode=OFF") for w in run.warnings)


@pytest.mark.parametrize("region", ["us-east-1", "ca-central-1", "ap-northeast-1"])
def test_o3_trail_arn_follows_the_region_g1(region_runs, region):
    run = region_runs["prod", region]
    assert run.outputs["auditTrailArn"] == (
        f"arn:aws:cloudtrail:{region}:{ACCOUNT_ID}:trail/media-trail-prod"
    )
    policy = json.loads(
        run.one("aws:s3/bucketPolicy:BucketPolicy", "audit-bucket-policy").inputs["policy"]
    )
    conditions = [
        s.get("Condition", {}).get("StringEquals", {}).get("aws:SourceArn")
        for s in policy["Statement"]
    ]
    assert conditions[1:] == [run.outputs["auditTrailArn"]] * 2
    assert run.warnings == []


# --- G3 data protection ---------------------------------------------------------------------


def test_g3_bucket_and_key_are_deleted_on_destroy_by_default(created):
    assert guarded(created) == set()


def test_g3_data_protection_protects_and_retains_the_log_bucket_and_the_audit_key(base_args):
    run = build(replace(base_args, protect_data=True))
    assert guarded(run) == {
        ("aws:s3/bucket:Bucket", "audit-bucket", True, True),
        ("aws:kms/key:Key", "audit-key-key", True, True),
    }
    assert audit_key(run).protect is True


def test_s3_9_trail_bucket_logs_its_requests_after_the_target_admits_them(base_args):
    """FSBP S3.9: with an access-log target the trail bucket's server access logs go there
    under `audit/`, once the target's policy admits log delivery."""

    def program():
        ready = aws.s3.BucketPolicy("logs-policy", bucket="media-s3-logs-test", policy="{}")
        target = AccessLogTarget(bucket_name="media-s3-logs-test", ready=ready)
        AuditTrail("audit", replace(base_args, access_log_target=target))

    run = run_components(program, region=REGION)
    logging = run.one("aws:s3/bucketLogging:BucketLogging")
    assert logging.inputs["bucket"] == run.one("aws:s3/bucket:Bucket", "audit-bucket").id
    assert (logging.inputs["targetBucket"], logging.inputs["targetPrefix"]) == (
        "media-s3-logs-test",
        "audit/",
    )
    assert run.one("aws:s3/bucketPolicy:BucketPolicy", "logs-policy").urn in logging.dependencies
