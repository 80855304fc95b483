"""The audit trail's bucket replicated to a second region (issue "Operate", item 1: optional,
prod on; O3, K1, K2, G2, G3, G8, FSBP S3.9)."""

from __future__ import annotations

import json
from dataclasses import replace

import pulumi
import pytest

from components.audit import (
    AuditTrail,
    AuditTrailArgs,
    AuditTrailMode,
    trail_lifecycle_rules,
    trail_replica_bucket_name,
)
from components.naming import Namer
from offline.engine import ACCOUNT_ID, run_components
from stack_config import ConfigError, parse_settings
from tests.infra.expect import guarded

REGION = "eu-central-1"
REPLICA_REGION = "eu-west-1"
LOGS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555"
SOURCE = f"media-trail-{ACCOUNT_ID}-test"
SOURCE_ARN = f"arn:aws:s3:::{SOURCE}"
REPLICA = f"media-trail-{ACCOUNT_ID}-{REPLICA_REGION}-test"
REPLICA_ARN = f"arn:aws:s3:::{REPLICA}"
REPLICA_LOGS = f"media-s3-logs-{ACCOUNT_ID}-{REPLICA_REGION}-test"
ROLE = "media-trail-replication-test"
BUCKET = "aws:s3/bucket:Bucket"
KEY = "aws:kms/key:Key"
REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
ROOT_STATEMENT = {
    "Sid": "EnableAccountIamPolicies",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def replicated_args(namer, context, **changes) -> AuditTrailArgs:
    args = AuditTrailArgs(
        namer=namer, context=context, logs_key_arn=LOGS_KEY, replica_region=REPLICA_REGION
    )
    return replace(args, **changes)


def build(args: AuditTrailArgs):
    """The trail, exporting its replica bucket's name (`replica`) when it has one."""

    def program():
        replica = AuditTrail("audit", args).replica_bucket_name
        if replica is not None:
            pulumi.export("replica", replica)

    return run_components(program, region=REGION)


@pytest.fixture(scope="module")
def replicated(module_namer, module_context):
    """A destroyable trail replicated to eu-west-1, shared by the tests that only read it."""
    return build(replicated_args(module_namer, module_context))


def key_arn(run, name: str) -> str:
    return run.one(KEY, name).state["arn"]


def statements(policy_json: str) -> list[dict]:
    return json.loads(policy_json)["Statement"]


# --- the replication -------------------------------------------------------------------------


def test_the_trail_bucket_replicates_every_object_to_the_replica_under_its_key(replicated):
    config = replicated.one(REPLICATION, "audit-bucket-replication")
    assert "region" not in config.inputs  # configured on the source, in the stack's region
    assert config.inputs["bucket"] == SOURCE
    assert config.inputs["role"] == f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE}"
    assert config.inputs["rules"] == [
        {
            "id": "trail-to-replica",
            "status": "Enabled",
            # The empty prefix: logs and digest files alike.
            "filter": {"prefix": ""},
            # A deletion in the source never reaches the copy.
            "deleteMarkerReplication": {"status": "Disabled"},
            # The log files are SSE-KMS objects, which replicate only when asked.
            "sourceSelectionCriteria": {"sseKmsEncryptedObjects": {"status": "Enabled"}},
            "destination": {
                "bucket": REPLICA_ARN,
                "encryptionConfiguration": {
                    "replicaKmsKeyId": key_arn(replicated, "audit-replica-key-key")
                },
            },
        }
    ]


def test_replication_waits_for_both_buckets_versioning_and_the_roles_policy(replicated):
    """S3 refuses a replication configuration until both buckets are versioned."""
    config = replicated.one(REPLICATION)
    versioning = "aws:s3/bucketVersioning:BucketVersioning"
    assert {
        replicated.one(versioning, "audit-bucket-versioning").urn,
        replicated.one(versioning, "audit-replica-bucket-versioning").urn,
        replicated.one("aws:iam/rolePolicy:RolePolicy", "audit-replication-policy").urn,
    } <= set(config.dependencies)


def test_the_replication_role_is_trusted_by_s3_in_the_documented_form(replicated):
    """The trust AWS documents for S3 replication, without a condition S3 may not send (the
    role cannot be passed to another account's bucket, so it would guard nothing)."""
    role = replicated.one("aws:iam/role:Role", "audit-replication-role").inputs
    assert role["name"] == ROLE
    assert statements(role["assumeRolePolicy"]) == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


def test_k2_the_role_replicates_exactly_the_two_buckets_with_exactly_their_keys(replicated):
    """Replication actions on exactly the two buckets (no ReplicateDelete: delete markers stay
    behind); the audit key only to decrypt through S3 of the stack's region for the source's
    objects, the replica key only through S3 of the replica's region for the replica's."""
    policy = replicated.one("aws:iam/rolePolicy:RolePolicy", "audit-replication-policy")
    role = replicated.one("aws:iam/role:Role", "audit-replication-role")
    assert policy.inputs["role"] == role.id
    assert statements(policy.inputs["policy"]) == [
        {
            "Sid": "ReadReplicationConfiguration",
            "Effect": "Allow",
            "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
            "Resource": [SOURCE_ARN],
        },
        {
            "Sid": "ReadSourceVersions",
            "Effect": "Allow",
            "Action": [
                "s3:GetObjectVersionForReplication",
                "s3:GetObjectVersionAcl",
                "s3:GetObjectVersionTagging",
            ],
            "Resource": [f"{SOURCE_ARN}/*"],
        },
        {
            "Sid": "WriteReplicas",
            "Effect": "Allow",
            "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
            "Resource": [f"{REPLICA_ARN}/*"],
        },
        {
            "Sid": "DecryptSourceObjects",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [key_arn(replicated, "audit-key-key")],
            "Condition": {
                "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
                # With a Bucket Key the context is the bucket's ARN, without one the object's.
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [SOURCE_ARN, f"{SOURCE_ARN}/*"]},
            },
        },
        {
            "Sid": "EncryptReplicas",
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": [key_arn(replicated, "audit-replica-key-key")],
            "Condition": {
                "StringEquals": {"kms:ViaService": f"s3.{REPLICA_REGION}.amazonaws.com"},
                "StringLike": {
                    "kms:EncryptionContext:aws:s3:arn": [REPLICA_ARN, f"{REPLICA_ARN}/*"]
                },
            },
        },
    ]


def test_nothing_in_the_source_bucket_policy_stands_in_the_replications_way(replicated):
    """Replicas are read and written by S3 over TLS with the role: the source's policy denies
    only insecure transport and otherwise admits CloudTrail alone, and neither key policy
    needs a statement for the role (the account-root statement delegates to IAM)."""
    source_policy = statements(replicated.one(POLICY, "audit-bucket-policy").inputs["policy"])
    denies = [s for s in source_policy if s["Effect"] == "Deny"]
    assert [s["Sid"] for s in denies] == ["DenyInsecureTransport"]
    replica_key = json.loads(replicated.one(KEY, "audit-replica-key-key").inputs["policy"])
    assert replica_key["Statement"] == [ROOT_STATEMENT]


# --- the replica bucket and key (same make as every private bucket) --------------------------


def test_k1_the_replica_key_lives_in_the_replica_region_and_rotates(replicated):
    key = replicated.one(KEY, "audit-replica-key-key").inputs
    assert (key["region"], key["enableKeyRotation"], key["deletionWindowInDays"]) == (
        REPLICA_REGION,
        True,
        7,
    )
    alias = replicated.one("aws:kms/alias:Alias", "audit-replica-key-alias").inputs
    assert (alias["name"], alias["region"]) == (
        "alias/media-trail-replica-key-test",
        REPLICA_REGION,
    )


def test_g2_the_replica_is_named_after_account_region_and_suffix(replicated):
    bucket = replicated.one(BUCKET, "audit-replica-bucket").inputs
    assert (bucket["bucket"], bucket["region"], bucket["tags"]) == (
        REPLICA,
        REPLICA_REGION,
        {"Name": REPLICA},
    )
    assert bucket["forceDestroy"] is True
    assert replicated.outputs["replica"] == REPLICA


def test_the_replica_is_private_versioned_and_sse_kms_with_its_key(replicated):
    def one(type_token: str, suffix: str) -> dict:
        inputs = replicated.one(type_token, f"audit-replica-bucket-{suffix}").inputs
        assert inputs.pop("region") == REPLICA_REGION
        return inputs

    assert one("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "ownership") == {
        "bucket": REPLICA,
        "rule": {"objectOwnership": "BucketOwnerEnforced"},
    }
    assert one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "public-access") == {
        "bucket": REPLICA,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    assert one("aws:s3/bucketVersioning:BucketVersioning", "versioning") == {
        "bucket": REPLICA,
        "versioningConfiguration": {"status": "Enabled"},
    }
    assert one(SSE, "encryption")["rules"] == [
        {
            "applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms",
                "kmsMasterKeyId": key_arn(replicated, "audit-replica-key-key"),
            },
            "bucketKeyEnabled": True,
        }
    ]


def test_the_replica_policy_is_tls_only_after_the_public_access_block(replicated):
    policy = replicated.one(POLICY, "audit-replica-bucket-policy")
    assert (policy.inputs["bucket"], policy.inputs["region"]) == (REPLICA, REPLICA_REGION)
    assert statements(policy.inputs["policy"]) == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [REPLICA_ARN, f"{REPLICA_ARN}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    block = replicated.one(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "audit-replica-bucket-public-access",
    )
    assert block.urn in policy.dependencies


def test_the_replica_keeps_what_the_source_keeps_and_aborts_uploads_everywhere(namer, context):
    """Replication copies objects, never lifecycle actions: the replica ages its own by the
    source's retention (here prod's 90/2557 days)."""
    args = replicated_args(namer, context, transition_days=90, expiration_days=2557)
    run = build(args)
    source = run.one(LIFECYCLE, "audit-bucket-lifecycle").inputs
    replica = run.one(LIFECYCLE, "audit-replica-bucket-lifecycle").inputs
    assert (replica["bucket"], replica["region"]) == (REPLICA, REPLICA_REGION)
    assert replica["rules"] == source["rules"]
    assert replica["rules"] == [
        {
            "id": "audit-log-retention",
            "status": "Enabled",
            "filter": {"prefix": "AWSLogs/"},
            "transitions": [{"days": 90, "storageClass": "GLACIER_IR"}],
            "expiration": {"days": 2557},
            "noncurrentVersionTransitions": [{"noncurrentDays": 90, "storageClass": "GLACIER_IR"}],
            "noncurrentVersionExpiration": {"noncurrentDays": 2557},
        },
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7},
        },
    ]
    assert len(trail_lifecycle_rules(args)) == 2


# --- the replica's access logs (FSBP S3.9) -----------------------------------------------------


def test_s3_9_the_replica_logs_to_an_access_log_bucket_of_its_region(replicated):
    logging = replicated.one("aws:s3/bucketLogging:BucketLogging")
    assert logging.inputs == {
        "bucket": REPLICA,
        "targetBucket": REPLICA_LOGS,
        "targetPrefix": "audit/",
        "region": REPLICA_REGION,
    }
    policy = replicated.one(POLICY, "audit-replica-logs-policy")
    assert policy.urn in logging.dependencies  # PutBucketLogging checks the target's policy
    assert statements(policy.inputs["policy"])[1] == {
        "Sid": "S3ServerAccessLogsDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{REPLICA_LOGS}/*",
        "Condition": {
            "ArnLike": {"aws:SourceArn": [REPLICA_ARN]},
            "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
        },
    }
    assert statements(policy.inputs["policy"])[0]["Sid"] == "DenyInsecureTransport"


def test_s3_9_the_replica_access_log_bucket_is_private_encrypted_and_expires(replicated):
    logs = replicated.one(BUCKET, "audit-replica-logs").inputs
    assert (logs["bucket"], logs["region"]) == (REPLICA_LOGS, REPLICA_REGION)
    block = replicated.one(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "audit-replica-logs-public-access"
    ).inputs
    assert all(block[flag] for flag in ("blockPublicAcls", "blockPublicPolicy"))
    assert all(block[flag] for flag in ("ignorePublicAcls", "restrictPublicBuckets"))
    # SSE-S3 like the stack region's access-log bucket: the policy pack knows it by its name.
    assert replicated.one(SSE, "audit-replica-logs-encryption").inputs["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    ]
    assert replicated.one(LIFECYCLE, "audit-replica-logs-lifecycle").inputs["rules"] == [
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7},
        },
        {
            "id": "expire-access-logs",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "expiration": {"days": 90},
        },
    ]


# --- G3: data protection ---------------------------------------------------------------------


def test_g3_with_data_protection_the_replica_its_logs_and_key_are_kept(namer, context):
    run = build(replicated_args(namer, context, protect_data=True))
    assert guarded(run) == {
        ("aws:s3/bucket:Bucket", "audit-bucket", True, True),
        ("aws:kms/key:Key", "audit-key-key", True, True),
        ("aws:s3/bucket:Bucket", "audit-replica-bucket", True, True),
        ("aws:s3/bucket:Bucket", "audit-replica-logs", True, True),
        ("aws:kms/key:Key", "audit-replica-key-key", True, True),
    }
    assert run.one(BUCKET, "audit-replica-bucket").inputs["forceDestroy"] is False
    assert run.one(KEY, "audit-replica-key-key").inputs["deletionWindowInDays"] == 30


def test_g3_without_data_protection_nothing_of_the_replica_is_guarded(replicated):
    assert guarded(replicated) == set()
    assert replicated.one(BUCKET, "audit-replica-logs").inputs["forceDestroy"] is True


def test_without_a_replica_region_nothing_is_replicated(namer, context):
    run = build(replicated_args(namer, context, replica_region=""))
    assert run.of_type(REPLICATION) == []
    assert [b.name for b in run.of_type(BUCKET)] == ["audit-bucket"]
    assert "replica" not in run.outputs


# --- refusals (G8) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"replica_region": REGION},
            'replica_region="eu-central-1": allowed a region other than the stack\'s (a replica '
            "beside the original protects nothing)",
        ),
        (
            {"replica_region": "EU-WEST-1"},
            'replica_region="EU-WEST-1": allowed empty or a region name such as eu-west-1',
        ),
        (
            {"mode": AuditTrailMode.OFF},
            'replica_region="eu-west-1": allowed empty unless mode is CREATE (only a bucket '
            "this stack creates is replicated)",
        ),
    ],
)
def test_g8_bad_replica_args_are_named_before_anything_exists(namer, context, changes, message):
    args = replicated_args(namer, context, **changes)
    with pytest.raises(ValueError) as error:
        build(args)
    assert str(error.value) == f"AuditTrailArgs: {message}"
    assert error.value.registered == []


def test_g2_a_replica_name_over_63_characters_is_refused_before_anything_exists(context):
    """The longest prefix and suffix fit every region name of today (`ap-southeast-5`)."""
    longest = Namer("p" * 15, "s" * 10)
    assert len(trail_replica_bucket_name(longest, ACCOUNT_ID, "ap-southeast-5")) == 60
    args = AuditTrailArgs(
        namer=Namer("p" * 15, "s" * 20),
        context=context,
        logs_key_arn=LOGS_KEY,
        replica_region=REPLICA_REGION,
    )
    with pytest.raises(ValueError) as error:
        build(args)
    assert f"namer: name 'ppppppppppppppp-trail-000000000000-{REPLICA_REGION}-" in str(error.value)
    assert error.value.registered == []


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        (
            {"auditReplicaRegion": REGION},
            [
                'auditReplicaRegion="eu-central-1": allowed a region other than the stack\'s '
                "(a replica beside the original protects nothing)"
            ],
        ),
        (
            {"auditReplicaRegion": REPLICA_REGION, "auditTrailMode": "OFF"},
            [
                'auditReplicaRegion="eu-west-1": allowed empty unless auditTrailMode is CREATE '
                "(only a bucket this stack creates is replicated)"
            ],
        ),
        (
            {"auditReplicaRegion": "west"},
            ['auditReplicaRegion="west": allowed empty or a region name such as eu-west-1'],
        ),
    ],
)
def test_g8_bad_replica_config_fails_with_the_key_named(raw, problems):
    with pytest.raises(ConfigError) as error:
        parse_settings(raw, project="media-pipeline", stack="prod", region=REGION)
    assert error.value.problems == problems


# --- the stacks ------------------------------------------------------------------------------


def test_prod_replicates_its_trail_to_the_backup_copy_region_dev_does_not(dev_run, prod_run):
    replica = f"media-trail-{ACCOUNT_ID}-{REPLICA_REGION}-prod"
    assert prod_run.outputs["auditReplicaBucketName"] == replica
    config = prod_run.one(REPLICATION)
    assert config.inputs["bucket"] == f"media-trail-{ACCOUNT_ID}-prod"
    assert config.inputs["rules"][0]["destination"]["bucket"] == f"arn:aws:s3:::{replica}"
    assert prod_run.one(BUCKET, "audit-replica-bucket").inputs["region"] == REPLICA_REGION
    assert (
        prod_run.config["media-pipeline:auditReplicaRegion"]
        == (prod_run.config["media-pipeline:dbBackupCopyRegion"])
    )
    assert dev_run.of_type(REPLICATION) == []
    assert "auditReplicaBucketName" not in dev_run.outputs
    assert [b for b in dev_run.of_type(BUCKET) if "replica" in b.name] == []
