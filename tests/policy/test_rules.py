"""The policy pack's rules (O4): every stack passes every rule; every rule catches a broken
resource with its message. The same functions run in CrossGuard (`policy/pack.py`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from offline.engine import ROOT, stack_config
from policy.rules import (
    REQUIRED_TAGS,
    STATIC_RULES,
    UNKNOWN,
    PolicyConfig,
    build_rules,
    configured_rules,
    evaluate,
)

DEV = PolicyConfig(environment_suffix="dev", data_protection=False)
PROD = PolicyConfig(environment_suffix="prod", data_protection=True)
KEY = "arn:aws:kms:eu-central-1:123456789012:key/11111111-2222-3333-4444-555555555555"
AWS_MANAGED = "arn:aws:kms:eu-central-1:123456789012:alias/aws/"


def rule(name: str, config: PolicyConfig = DEV):
    return next(r for r in build_rules(config) if r.name == name)


def captured(run):
    return [(r.type, r.name, r.inputs) for r in run.resources]


# --- every stack passes ----------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_o4_every_rule_passes_on_every_resource_of_the_stack(stack_runs, stack):
    config = PolicyConfig.for_stack(stack)
    checked, findings = evaluate(build_rules(config), captured(stack_runs[stack]))
    assert [(f.rule, f.resource, f.message) for f in findings] == []
    # Each rule saw resources of this stack: a pass means something was checked.
    assert {name: count for name, count in checked.items() if count == 0} == {}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_o4_policy_config_files_match_the_stack_files(stack):
    config = PolicyConfig.for_stack(stack)
    raw = stack_config(stack)
    assert config.environment_suffix == raw["media-pipeline:environmentSuffix"]
    assert config.data_protection is raw["media-pipeline:dataProtection"]


def test_o4_every_stack_file_has_a_policy_config():
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    configs = sorted(p.name.split(".")[1] for p in (ROOT / "policy").glob("policy-config.*.json"))
    assert stacks == configs == ["dev", "prod"]


def test_o4_rule_names_are_unique_and_configured_ones_are_known():
    names = [r.name for r in build_rules(DEV)]
    assert len(names) == len(set(names)) == 14
    assert [r.name for r in configured_rules(DEV)] == [
        "required-tags",
        "names-carry-suffix",
        "destroyable-unless-protected",
    ]
    assert [r.name for r in STATIC_RULES if not r.mandatory] == ["no-deprecated-resources"]


def test_o4_policy_pack_project_file_declares_the_python_runtime():
    project = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert "O4" in project["description"]


# --- every rule catches a broken resource ----------------------------------------------------

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
CACHE = "aws:elasticache/replicationGroup:ReplicationGroup"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SSE_MESSAGE = (
    "every rule must apply sseAlgorithm aws:kms with a customer kmsMasterKeyId (AES256 only on "
    "an S3 access-log bucket, `{prefix}-s3-logs-<account>-…`) (K1)"
)
INGEST_BUCKET = "media-ingest-123456789012-eu-central-1-prod"
ACCESS_LOG_BUCKET = "media-s3-logs-123456789012-eu-central-1-prod"

BROKEN = [
    # cmk-encryption-at-rest (K1)
    (
        "cmk-encryption-at-rest",
        CLUSTER,
        {"storageEncrypted": False},
        ["storageEncrypted must be true (K1)", "kmsKeyId must be a customer key ARN (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        INSTANCE,
        {"performanceInsightsEnabled": True},
        [
            "performanceInsightsKmsKeyId must be a customer key ARN when Performance Insights is on "
            "(K1)"
        ],
    ),
    (
        "cmk-encryption-at-rest",
        CACHE,
        {"atRestEncryptionEnabled": False, "kmsKeyId": AWS_MANAGED + "elasticache"},
        ["atRestEncryptionEnabled must be true (K1)", "kmsKeyId must be a customer key ARN (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:efs/fileSystem:FileSystem",
        {"encrypted": True},
        ["kmsKeyId must be a customer key ARN (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:sqs/queue:Queue",
        {"sqsManagedSseEnabled": True},
        ["kmsMasterKeyId must be a customer key (not absent, not alias/aws/...) (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:sns/topic:Topic",
        {"kmsMasterKeyId": "alias/aws/sns"},
        ["kmsMasterKeyId must be a customer key (not absent, not alias/aws/...) (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:kinesis/stream:Stream",
        {"encryptionType": "KMS", "kmsKeyId": "alias/aws/kinesis"},
        ["kmsKeyId must be a customer key (not alias/aws/kinesis) (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:kinesis/stream:Stream",
        {"encryptionType": "NONE", "kmsKeyId": KEY},
        ["encryptionType must be KMS (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:secretsmanager/secret:Secret",
        {"name": "x"},
        ["kmsKeyId must be a customer key ARN (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:cloudtrail/trail:Trail",
        {"kmsKeyId": ""},
        ["kmsKeyId must be a customer key ARN (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        "aws:ecr/repository:Repository",
        {"encryptionConfigurations": [{"encryptionType": "AES256"}]},
        ["encryptionConfigurations must use encryptionType KMS with a customer kmsKey (K1)"],
    ),
    (
        "cmk-encryption-at-rest",
        SSE,
        {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
        [SSE_MESSAGE],
    ),
    (
        "cmk-encryption-at-rest",
        SSE,
        {"rules": []},
        [SSE_MESSAGE],
    ),
    # M1: the media buckets are CMK-encrypted; SSE-S3 on the ingest bucket is caught.
    (
        "cmk-encryption-at-rest",
        SSE,
        {
            "bucket": INGEST_BUCKET,
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}],
        },
        [SSE_MESSAGE],
    ),
    (
        "cmk-encryption-at-rest",
        SSE,
        {
            "bucket": INGEST_BUCKET,
            "rules": [
                {
                    "applyServerSideEncryptionByDefault": {
                        "sseAlgorithm": "aws:kms",
                        "kmsMasterKeyId": AWS_MANAGED + "s3",
                    }
                }
            ],
        },
        [SSE_MESSAGE],
    ),
    # kms-key-rotation (K1)
    (
        "kms-key-rotation",
        "aws:kms/key:Key",
        {"enableKeyRotation": False},
        ["enableKeyRotation must be true (K1)"],
    ),
    # encryption-in-transit (C3, W4, D6)
    (
        "encryption-in-transit",
        CACHE,
        {"transitEncryptionEnabled": False},
        ["transitEncryptionEnabled must be true (C3, W4, D6)"],
    ),
    (
        "encryption-in-transit",
        "aws:ecs/taskDefinition:TaskDefinition",
        {
            "volumes": [
                {"name": "scratch"},
                {
                    "name": "media",
                    "efsVolumeConfiguration": {
                        "fileSystemId": "fs-1",
                        "transitEncryption": "DISABLED",
                    },
                },
            ]
        },
        [
            "EFS volume 'media': transitEncryption must be ENABLED (C3, W4, D6)",
            "EFS volume 'media': authorizationConfig.iam must be ENABLED (C3, W4, D6)",
        ],
    ),
    (
        "encryption-in-transit",
        "aws:rds/clusterParameterGroup:ClusterParameterGroup",
        {"family": "aurora-postgresql16", "parameters": [{"name": "rds.force_ssl", "value": "0"}]},
        ["parameters must set rds.force_ssl = 1 (C3, W4, D6)"],
    ),
    # no-public-data-access (D6, C4, N1, W1, O3)
    (
        "no-public-data-access",
        INSTANCE,
        {"publiclyAccessible": True},
        ["publiclyAccessible must be false (D6, C4, N1, W1, O3)"],
    ),
    (
        "no-public-data-access",
        "aws:rds/instance:Instance",
        {"publiclyAccessible": "true"},
        ["publiclyAccessible must be false (D6, C4, N1, W1, O3)"],
    ),
    (
        "no-public-data-access",
        "aws:ec2/subnet:Subnet",
        {"mapPublicIpOnLaunch": True, "assignIpv6AddressOnCreation": True},
        [
            "mapPublicIpOnLaunch must be false (D6, C4, N1, W1, O3)",
            "assignIpv6AddressOnCreation must be false (D6, C4, N1, W1, O3)",
        ],
    ),
    (
        "no-public-data-access",
        "aws:ecs/service:Service",
        {"networkConfiguration": {"assignPublicIp": True, "subnets": ["subnet-1"]}},
        ["networkConfiguration.assignPublicIp must be false (D6, C4, N1, W1, O3)"],
    ),
    (
        "no-public-data-access",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        {"blockPublicAcls": True, "blockPublicPolicy": False, "ignorePublicAcls": True},
        [
            "blockPublicPolicy must be true (D6, C4, N1, W1, O3)",
            "restrictPublicBuckets must be true (D6, C4, N1, W1, O3)",
        ],
    ),
    # no-open-ingress (N3)
    (
        "no-open-ingress",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        {"cidrIpv4": "0.0.0.0/0", "fromPort": 22, "toPort": 22, "ipProtocol": "tcp"},
        ["ingress from 0.0.0.0/0 is open to the internet (N3)"],
    ),
    (
        "no-open-ingress",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        {"cidrIpv6": "::/0"},
        ["ingress from ::/0 is open to the internet (N3)"],
    ),
    (
        "no-open-ingress",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        {"type": "ingress", "cidrBlocks": ["10.0.0.0/8", "0.0.0.0/0"]},
        ["ingress from 0.0.0.0/0 is open to the internet (N3)"],
    ),
    (
        "no-open-ingress",
        "aws:ec2/securityGroup:SecurityGroup",
        {"ingress": [{"fromPort": 443, "ipv6CidrBlocks": ["::/0"]}]},
        ["ingress from ::/0 is open to the internet (N3)"],
    ),
    (
        "no-open-ingress",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        {"ingress": [{"cidrBlocks": ["0.0.0.0/0"]}]},
        ["ingress from 0.0.0.0/0 is open to the internet (N3)"],
    ),
    # log-groups-encrypted-with-retention (O1)
    (
        "log-groups-encrypted-with-retention",
        "aws:cloudwatch/logGroup:LogGroup",
        {"name": "/x"},
        [
            "kmsKeyId must be a customer key ARN (O1)",
            "retentionInDays=None must be one of CloudWatch's periods (never 'never expire') (O1)",
        ],
    ),
    (
        "log-groups-encrypted-with-retention",
        "aws:cloudwatch/logGroup:LogGroup",
        {"kmsKeyId": KEY, "retentionInDays": 45, "skipDestroy": True},
        [
            "retentionInDays=45 must be one of CloudWatch's periods (never 'never expire') (O1)",
            "skipDestroy must be false (O1)",
        ],
    ),
    # audit-trail-hardened (O3)
    (
        "audit-trail-hardened",
        "aws:cloudtrail/trail:Trail",
        {"kmsKeyId": KEY, "isMultiRegionTrail": True},
        [
            "enableLogFileValidation must be true (O3)",
            "includeGlobalServiceEvents must be true (O3)",
            "cloudWatchLogsGroupArn must deliver to CloudWatch Logs (O3)",
        ],
    ),
    (
        "audit-trail-hardened",
        "aws:s3/bucketVersioning:BucketVersioning",
        {"versioningConfiguration": {"status": "Suspended"}},
        ["versioningConfiguration.status must be Enabled (O3)"],
    ),
    # iam-no-wildcard-actions (S4, W3)
    (
        "iam-no-wildcard-actions",
        "aws:iam/rolePolicy:RolePolicy",
        {
            "policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "Ok",
                            "Effect": "Allow",
                            "Action": ["s3:GetObject"],
                            "Resource": ["*"],
                        },
                        {
                            "Sid": "Wide",
                            "Effect": "Allow",
                            "Action": ["kinesis:*", "s3:GetObject"],
                            "Resource": ["*"],
                        },
                        {"Sid": "DenyAll", "Effect": "Deny", "Action": "*", "Resource": "*"},
                    ],
                }
            )
        },
        ["statement 'Wide' allows wildcard actions ['kinesis:*'] (S4, W3)"],
    ),
    (
        "iam-no-wildcard-actions",
        "aws:iam/policy:Policy",
        {"policy": {"Statement": {"Sid": "Admin", "Effect": "Allow", "Action": "*"}}},
        ["statement 'Admin' allows wildcard actions ['*'] (S4, W3)"],
    ),
    # required-tags (G4)
    (
        "required-tags",
        "pulumi:providers:aws",
        {"defaultTags": json.dumps({"tags": {"Environment": "dev", "Project": "p"}})},
        [
            "defaultTags.tags is missing ['Owner', 'CostCenter', 'DataClassification', "
            "'Compliance', 'ManagedBy'] (G4)"
        ],
    ),
    (
        "required-tags",
        "pulumi:providers:aws",
        {"region": "eu-central-1"},
        [f"defaultTags.tags is missing {list(REQUIRED_TAGS)} (G4)"],
    ),
    (
        "required-tags",
        "pulumi:providers:aws",
        {"defaultTags": {"tags": {**{k: "x" for k in REQUIRED_TAGS}, "Environment": "prod"}}},
        ["defaultTags.tags.Environment='prod' must be the stack's suffix 'dev' (G4)"],
    ),
    # names-carry-suffix (G2)
    (
        "names-carry-suffix",
        "aws:sqs/queue:Queue",
        {"name": "media-jobs"},
        ["name='media-jobs' must carry the suffix '-dev' (G2)"],
    ),
    (
        "names-carry-suffix",
        "aws:sqs/queue:Queue",
        {"name": "media-jobs-devx"},
        ["name='media-jobs-devx' must carry the suffix '-dev' (G2)"],
    ),
    (
        "names-carry-suffix",
        "aws:s3/bucket:Bucket",
        {"bucket": "media-trail-123456789012"},
        ["bucket='media-trail-123456789012' must carry the suffix '-dev' (G2)"],
    ),
    (
        "names-carry-suffix",
        INSTANCE,
        {"identifier": "media-aurora-1"},
        ["identifier='media-aurora-1' must carry the suffix '-dev' (G2)"],
    ),
    # destroyable-unless-protected (G3), dev: everything goes on destroy
    (
        "destroyable-unless-protected",
        CLUSTER,
        {"deletionProtection": True, "skipFinalSnapshot": False},
        [
            "deletionProtection must be false when dataProtection is false (G3)",
            "skipFinalSnapshot must be true when dataProtection is false (G3)",
        ],
    ),
    (
        "destroyable-unless-protected",
        "aws:rds/instance:Instance",
        {},
        ["skipFinalSnapshot must be true when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        "aws:secretsmanager/secret:Secret",
        {},
        ["recoveryWindowInDays=None must be 0 when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        "aws:kms/key:Key",
        {"deletionWindowInDays": 30},
        ["deletionWindowInDays=30 must be 7 when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        "aws:s3/bucket:Bucket",
        {"forceDestroy": False},
        ["forceDestroy must be true when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        "aws:ecr/repository:Repository",
        {},
        ["forceDelete must be true when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        "aws:kinesis/stream:Stream",
        {"enforceConsumerDeletion": False},
        ["enforceConsumerDeletion must be true when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        CACHE,
        {"finalSnapshotIdentifier": "media-cache-final"},
        ["finalSnapshotIdentifier must be absent when dataProtection is false (G3)"],
    ),
    (
        "destroyable-unless-protected",
        "aws:cloudfront/distribution:Distribution",
        {"retainOnDelete": True},
        ["retainOnDelete must be false when dataProtection is false (G3)"],
    ),
]

BROKEN_WHEN_PROTECTED = [
    (
        CLUSTER,
        {"deletionProtection": False, "skipFinalSnapshot": True},
        [
            "deletionProtection must be true when dataProtection is true (G3)",
            "skipFinalSnapshot must be false when dataProtection is true (G3)",
        ],
    ),
    (
        "aws:secretsmanager/secret:Secret",
        {"recoveryWindowInDays": 0},
        ["recoveryWindowInDays=0 must be >= 7 when dataProtection is true (G3)"],
    ),
    (
        "aws:kms/key:Key",
        {"deletionWindowInDays": 7},
        ["deletionWindowInDays=7 must be 30 when dataProtection is true (G3)"],
    ),
    (
        "aws:s3/bucket:Bucket",
        {"forceDestroy": True},
        ["forceDestroy must be false when dataProtection is true (G3)"],
    ),
    (
        "aws:ecr/repository:Repository",
        {"forceDelete": True},
        ["forceDelete must be false when dataProtection is true (G3)"],
    ),
    (
        "aws:kinesis/stream:Stream",
        {"enforceConsumerDeletion": True},
        ["enforceConsumerDeletion must be false when dataProtection is true (G3)"],
    ),
    (CACHE, {}, ["finalSnapshotIdentifier must be set when dataProtection is true (G3)"]),
    (
        "aws:cloudfront/distribution:Distribution",
        {"retainOnDelete": False},
        ["retainOnDelete must be true when dataProtection is true (G3)"],
    ),
]

ADVISORY = [
    (
        "aws:s3/bucketV2:BucketV2",
        {"bucket": "media-x-dev"},
        ["aws:s3/bucketV2:BucketV2 is deprecated: use aws.s3.Bucket (G1)"],
    ),
    (
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        {"type": "egress"},
        [
            "aws:ec2/securityGroupRule:SecurityGroupRule is deprecated: use "
            "aws.vpc.SecurityGroupIngressRule / SecurityGroupEgressRule (G1)"
        ],
    ),
    (
        "aws:s3/bucket:Bucket",
        {"bucket": "media-x-dev", "versioning": {"enabled": True}},
        ["inline versioning is deprecated or discouraged: use aws.s3.BucketVersioning (G1)"],
    ),
    (
        "aws:ec2/securityGroup:SecurityGroup",
        {"egress": [{"cidrBlocks": ["10.0.0.0/8"]}]},
        ["inline egress is deprecated or discouraged: use aws.vpc.SecurityGroupEgressRule (G1)"],
    ),
]


@pytest.mark.parametrize(
    ("name", "resource_type", "props", "messages"),
    BROKEN,
    ids=[f"{b[0]}:{b[1].split(':')[-1]}-{i}" for i, b in enumerate(BROKEN)],
)
def test_o4_each_rule_catches_a_broken_resource(name, resource_type, props, messages):
    assert rule(name).check(resource_type, props) == messages
    assert rule(name).mandatory is True


@pytest.mark.parametrize(
    ("resource_type", "props", "messages"),
    BROKEN_WHEN_PROTECTED,
    ids=[b[0].split(":")[-1] for b in BROKEN_WHEN_PROTECTED],
)
def test_o4_g3_protected_stacks_must_keep_their_data(resource_type, props, messages):
    assert rule("destroyable-unless-protected", PROD).check(resource_type, props) == messages


@pytest.mark.parametrize(
    ("resource_type", "props", "messages"), ADVISORY, ids=[a[0].split(":")[-1] for a in ADVISORY]
)
def test_o4_deprecated_resources_are_advisory(resource_type, props, messages):
    deprecated = rule("no-deprecated-resources")
    assert deprecated.mandatory is False
    assert deprecated.check(resource_type, props) == messages


def test_o4_every_rule_has_a_broken_example():
    # The stack-wide rules' broken examples are the bucket and distribution tests below.
    covered = {b[0] for b in BROKEN} | {
        "no-deprecated-resources",
        "s3-buckets-encrypted-and-private",
        "cloudfront-distributions-hardened",
    }
    assert covered == {r.name for r in build_rules(DEV)}


# --- what passes -----------------------------------------------------------------------------

PASSING = [
    ("cmk-encryption-at-rest", CLUSTER, {"storageEncrypted": True, "kmsKeyId": KEY}),
    ("cmk-encryption-at-rest", INSTANCE, {"performanceInsightsEnabled": False}),
    (
        "cmk-encryption-at-rest",
        "aws:ecr/repository:Repository",
        {"encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": KEY}]},
    ),
    (
        "kms-key-rotation",
        "aws:kms/key:Key",
        {"customerMasterKeySpec": "RSA_2048", "enableKeyRotation": False},
    ),
    (
        "encryption-in-transit",
        "aws:rds/clusterParameterGroup:ClusterParameterGroup",
        {"family": "aurora-mysql8.0", "parameters": []},
    ),
    (
        "no-open-ingress",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        {"type": "egress", "cidrBlocks": ["0.0.0.0/0"]},
    ),
    (
        "no-open-ingress",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        {"referencedSecurityGroupId": "sg-1"},
    ),
    (
        "names-carry-suffix",
        "aws:cloudwatch/logGroup:LogGroup",
        {"name": "API-Gateway-Execution-Logs_abc123/v1"},
    ),
    ("names-carry-suffix", "aws:iam/rolePolicy:RolePolicy", {"name": "inline"}),
    ("names-carry-suffix", "aws:kms/alias:Alias", {"name": "alias/media-logs-key-dev"}),
    ("names-carry-suffix", "aws:sqs/queue:Queue", {"name": "jobs-dev"}),
    (
        "destroyable-unless-protected",
        "aws:secretsmanager/secret:Secret",
        {"recoveryWindowInDays": 0.0},
    ),
    ("no-deprecated-resources", "aws:s3/bucket:Bucket", {"bucket": "x", "forceDestroy": True}),
    # S3 server access logs are delivered reliably only under SSE-S3 (media_storage.py).
    (
        "cmk-encryption-at-rest",
        SSE,
        {
            "bucket": ACCESS_LOG_BUCKET,
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}],
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "resource_type", "props"), PASSING, ids=[f"{p[0]}-{i}" for i, p in enumerate(PASSING)]
)
def test_o4_compliant_or_exempt_resources_pass(name, resource_type, props):
    assert rule(name).check(resource_type, props) == []


def test_o4_rules_ignore_types_they_do_not_govern():
    assert rule("kms-key-rotation").applies_to("aws:sqs/queue:Queue") is False
    assert rule("kms-key-rotation").check("aws:sqs/queue:Queue", {}) == []
    assert rule("names-carry-suffix").applies_to("media:jobs:JobQueue") is False
    assert (
        rule("names-carry-suffix").applies_to("random:index/randomPassword:RandomPassword") is False
    )


def test_o4_values_unknown_during_preview_count_as_set():
    assert (
        rule("cmk-encryption-at-rest").check(
            CLUSTER, {"storageEncrypted": True, "kmsKeyId": UNKNOWN}
        )
        == []
    )
    assert (
        rule("audit-trail-hardened").check(
            "aws:cloudtrail/trail:Trail",
            {
                "enableLogFileValidation": UNKNOWN,
                "isMultiRegionTrail": True,
                "includeGlobalServiceEvents": True,
                "cloudWatchLogsGroupArn": UNKNOWN,
            },
        )
        == []
    )
    assert (
        rule("names-carry-suffix").check("aws:cloudwatch/logGroup:LogGroup", {"name": UNKNOWN})
        == []
    )
    assert (
        rule("destroyable-unless-protected").check(
            "aws:kms/key:Key", {"deletionWindowInDays": UNKNOWN}
        )
        == []
    )
    assert (
        rule("iam-no-wildcard-actions").check("aws:iam/rolePolicy:RolePolicy", {"policy": UNKNOWN})
        == []
    )
    assert (
        rule("required-tags").check("pulumi:providers:aws", {"defaultTags": {"tags": UNKNOWN}})
        == []
    )


# --- a broken stack fails --------------------------------------------------------------------


def test_o4_a_misconfigured_resource_in_a_captured_stack_is_caught(stack_runs):
    resources = captured(stack_runs["dev"])
    cluster = next(i for i, r in enumerate(resources) if r[0] == CLUSTER)
    resource_type, name, props = resources[cluster]
    resources[cluster] = (
        resource_type,
        name,
        {**props, "storageEncrypted": False, "deletionProtection": True},
    )
    _, findings = evaluate(build_rules(DEV), resources)
    assert [(f.rule, f.resource, f.message) for f in findings] == [
        ("cmk-encryption-at-rest", name, "storageEncrypted must be true (K1)"),
        (
            "destroyable-unless-protected",
            name,
            "deletionProtection must be false when dataProtection is false (G3)",
        ),
    ]


def test_o4_m1_a_misconfigured_media_bucket_in_a_captured_stack_is_caught(stack_runs):
    """M1: the ingest bucket under SSE-S3 and with public policies allowed is caught, each by
    its rule; the access-log bucket's SSE-S3 is the one exemption."""
    resources = captured(stack_runs["prod"])
    changed = {
        "media-ingest-encryption": {
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
        },
        "media-ingest-public-access": {"restrictPublicBuckets": False},
    }
    resources = [(t, n, {**p, **changed[n]} if n in changed else p) for t, n, p in resources]
    _, findings = evaluate(build_rules(PolicyConfig("prod", True)), resources)
    assert sorted((f.rule, f.resource, f.message) for f in findings) == [
        ("cmk-encryption-at-rest", "media-ingest-encryption", f"{SSE_MESSAGE}"),
        (
            "no-public-data-access",
            "media-ingest-public-access",
            "restrictPublicBuckets must be true (D6, C4, N1, W1, O3)",
        ),
    ]


BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"


def test_o4_m1_a_bucket_without_encryption_or_public_access_block_is_caught():
    """K1, M1: S3's default encryption is SSE-S3 and nothing blocks public policies until a
    bucket has its own configuration resources; the stack-wide rule finds the bucket lacking
    them, by its logical name."""
    stack_rule = rule("s3-buckets-encrypted-and-private")
    resources = [
        (BUCKET, "bare", {"bucket": "media-bare-dev"}),
        (BUCKET, "half", {"bucket": "media-half-dev"}),
        (PUBLIC_ACCESS, "half-block", {"bucket": "media-half-dev"}),
        (BUCKET, "whole", {"bucket": "media-whole-dev"}),
        (SSE, "whole-sse", {"bucket": "media-whole-dev"}),
        (PUBLIC_ACCESS, "whole-block", {"bucket": "media-whole-dev"}),
        (BUCKET, "later", {"bucket": UNKNOWN}),
    ]
    suffix = " (K1, M1, O3)"
    assert stack_rule.check_stack(resources) == [
        (
            "bare",
            "no BucketServerSideEncryptionConfiguration: S3's default is SSE-S3, not a "
            "customer-managed key" + suffix,
        ),
        ("bare", "no BucketPublicAccessBlock: public ACLs and policies are not blocked" + suffix),
        (
            "half",
            "no BucketServerSideEncryptionConfiguration: S3's default is SSE-S3, not a "
            "customer-managed key" + suffix,
        ),
    ]
    checked, findings = evaluate((stack_rule,), resources)
    assert checked == {"s3-buckets-encrypted-and-private": 4}
    assert [(f.resource, f.mandatory) for f in findings] == [
        ("bare", True),
        ("bare", True),
        ("half", True),
    ]


def test_o4_m1_a_media_bucket_left_bare_in_a_captured_stack_is_caught(stack_runs):
    resources = [
        r
        for r in captured(stack_runs["prod"])
        if r[1] not in ("media-media-encryption", "media-media-public-access")
    ]
    _, findings = evaluate(build_rules(PolicyConfig("prod", True)), resources)
    assert sorted((f.rule, f.resource, f.message.split(":")[0]) for f in findings) == [
        ("s3-buckets-encrypted-and-private", "media-media", "no BucketPublicAccessBlock"),
        (
            "s3-buckets-encrypted-and-private",
            "media-media",
            "no BucketServerSideEncryptionConfiguration",
        ),
    ]


def test_o4_prod_config_on_dev_resources_fails_destroyability(stack_runs):
    """The dataProtection switch matters: dev's destroyable resources break prod's rules."""
    _, findings = evaluate(build_rules(PolicyConfig("dev", True)), captured(stack_runs["dev"]))
    failed = {f.rule for f in findings}
    assert failed == {"destroyable-unless-protected"}
    assert any("forceDestroy must be false" in f.message for f in findings)


# --- CloudFront distributions (M7, M8) --------------------------------------------------------

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
SOURCE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
DELIVERY = "aws:cloudwatch/logDelivery:LogDelivery"
DIST_ARN = "arn:aws:cloudfront::123456789012:distribution/E2ABCDEFGHIJKL"
HARDENED = " (M7, M8)"


def hardened_distribution() -> dict:
    behaviour = {"viewerProtocolPolicy": "https-only", "trustedKeyGroups": ["kg-1"]}
    return {
        "origins": [
            {
                "originId": "media",
                "domainName": "b.s3.amazonaws.com",
                "originAccessControlId": "E1",
            },
            {
                "originId": "keys",
                "domainName": "x.lambda-url.eu-central-1.on.aws",
                "originAccessControlId": "E2",
                "customOriginConfig": {
                    "originProtocolPolicy": "https-only",
                    "originSslProtocols": ["TLSv1.2"],
                },
            },
        ],
        "defaultCacheBehavior": behaviour,
        "orderedCacheBehaviors": [{"pathPattern": "media/*/keys/*", **behaviour}],
        "viewerCertificate": {
            "acmCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/c",
            "minimumProtocolVersion": "TLSv1.2_2021",
        },
    }


def logged(name: str = "cdn-logs", arn: Any = DIST_ARN) -> list[tuple[str, str, dict]]:
    return [
        (SOURCE, f"{name}-source", {"name": name, "logType": "ACCESS_LOGS", "resourceArn": arn}),
        (DELIVERY, f"{name}-delivery", {"deliverySourceName": name}),
    ]


def test_o4_m7_m8_a_hardened_and_logged_distribution_passes():
    stack_rule = rule("cloudfront-distributions-hardened")
    assert stack_rule.mandatory is True
    resources = [(DISTRIBUTION, "cdn", hardened_distribution()), *logged()]
    assert stack_rule.check_stack(resources) == []
    # During preview the ARNs and names are unknown: counted as the distribution's.
    assert (
        stack_rule.check_stack(
            [(DISTRIBUTION, "cdn", hardened_distribution()), *logged(UNKNOWN, UNKNOWN)]
        )
        == []
    )
    # The default certificate's floor is CloudFront's: no version to check.
    default_cert = {
        **hardened_distribution(),
        "viewerCertificate": {"cloudfrontDefaultCertificate": True},
    }
    assert stack_rule.check_stack([(DISTRIBUTION, "cdn", default_cert), *logged()]) == []


def test_o4_m7_m8_a_misconfigured_distribution_is_caught_on_every_count():
    broken = hardened_distribution()
    broken["defaultCacheBehavior"] = {"viewerProtocolPolicy": "allow-all"}
    broken["orderedCacheBehaviors"] = [
        {"pathPattern": "media/*.m3u8", "viewerProtocolPolicy": "redirect-to-https"}
    ]
    broken["origins"] = [
        {
            "originId": "media",
            "s3OriginConfig": {"originAccessIdentity": "origin-access-identity/x"},
        },
        {
            "originId": "keys",
            "originAccessControlId": "E2",
            "customOriginConfig": {
                "originProtocolPolicy": "match-viewer",
                "originSslProtocols": ["TLSv1", "TLSv1.2"],
            },
        },
    ]
    broken["viewerCertificate"] = {
        "acmCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/c",
        "minimumProtocolVersion": "TLSv1.1_2016",
    }
    assert rule("cloudfront-distributions-hardened").check_stack(
        [(DISTRIBUTION, "cdn", broken)]
    ) == [
        ("cdn", m + HARDENED)
        for m in (
            "defaultCacheBehavior.viewerProtocolPolicy must be https-only",
            "defaultCacheBehavior.trustedKeyGroups must name a key group (signed access only)",
            "orderedCacheBehaviors[media/*.m3u8].viewerProtocolPolicy must be https-only",
            "orderedCacheBehaviors[media/*.m3u8].trustedKeyGroups must name a key group "
            "(signed access only)",
            "origin 'media' must sign with an origin access control",
            "origin 'media' must not use a legacy origin access identity",
            "origin 'keys': customOriginConfig.originProtocolPolicy must be https-only",
            "origin 'keys': customOriginConfig.originSslProtocols must be TLSv1.2 only",
            "viewerCertificate.minimumProtocolVersion='TLSv1.1_2016' must be TLSv1.2_* or later",
            "no access logs: neither loggingConfig nor an ACCESS_LOGS log delivery source of "
            "the distribution with a log delivery",
        )
    ]


@pytest.mark.parametrize(
    "logs",
    [
        [],
        # A source of another kind of resource, or of another log type, is not the CDN's.
        logged(arn="arn:aws:logs:us-east-1:123456789012:log-group:x"),
        [(SOURCE, "s", {"name": "n", "logType": "EVENT_LOGS", "resourceArn": DIST_ARN})],
        # A source nothing delivers.
        logged()[:1],
    ],
    ids=["none", "other-resource", "other-log-type", "undelivered"],
)
def test_o4_m7_a_distribution_without_delivered_access_logs_is_caught(logs):
    findings = rule("cloudfront-distributions-hardened").check_stack(
        [(DISTRIBUTION, "cdn", hardened_distribution()), *logs]
    )
    assert findings == [
        (
            "cdn",
            "no access logs: neither loggingConfig nor an ACCESS_LOGS log delivery source of "
            "the distribution with a log delivery" + HARDENED,
        )
    ]


def test_o4_m7_two_distributions_need_two_log_sources():
    resources = [
        (DISTRIBUTION, "a", hardened_distribution()),
        (DISTRIBUTION, "b", hardened_distribution()),
        *logged("one"),
    ]
    assert [
        name for name, _ in rule("cloudfront-distributions-hardened").check_stack(resources)
    ] == [
        "a",
        "b",
    ]
    assert rule("cloudfront-distributions-hardened").check_stack(resources + logged("two")) == []


def test_o4_m7_m8_a_misconfigured_distribution_in_a_captured_stack_is_caught(stack_runs):
    """The program's distribution with its key behaviour opened to plain HTTP and unsigned
    access, and its access logs removed, fails the pack."""
    resources = []
    for resource_type, name, props in captured(stack_runs["prod"]):
        if resource_type == SOURCE:
            continue
        if resource_type == DISTRIBUTION:
            ordered = [dict(b) for b in props["orderedCacheBehaviors"]]
            ordered[0] = {**ordered[0], "viewerProtocolPolicy": "allow-all", "trustedKeyGroups": []}
            props = {**props, "orderedCacheBehaviors": ordered}
        resources.append((resource_type, name, props))
    _, findings = evaluate(build_rules(PolicyConfig("prod", True)), resources)
    assert sorted((f.rule, f.resource, f.message) for f in findings) == [
        (
            "cloudfront-distributions-hardened",
            "delivery-distribution",
            m + HARDENED,
        )
        for m in sorted(
            (
                "orderedCacheBehaviors[media/*/keys/*].viewerProtocolPolicy must be https-only",
                "orderedCacheBehaviors[media/*/keys/*].trustedKeyGroups must name a key group "
                "(signed access only)",
                "no access logs: neither loggingConfig nor an ACCESS_LOGS log delivery source of "
                "the distribution with a log delivery",
            )
        )
    ]
