"""Whole-program tests: the real `__main__.py` for every stack file and supported region."""

from __future__ import annotations

import json

import pytest

from components.aws_limits import CLOUDFRONT_REGION, LOG_RETENTION_DAYS
from components.kms import PLATFORM_KEY_PURPOSES
from components.naming import MAX_PREFIX_LENGTH, MAX_SUFFIX_LENGTH
from offline.engine import (
    REGION_ZONES,
    project_defaults,
    qualify,
    run_program,
    run_stack,
    stack_config,
    to_engine_value,
)
from stack_config import parse_settings

REGIONS = ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"]
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
STACKS = ["dev", "prod"]


@pytest.fixture(scope="module")
def runs(region_runs):
    """Every stack in every region, evaluated once per session, Python warnings recorded (G1)."""
    return region_runs


def all_runs(runs):
    return [pytest.param(key, id=f"{key[0]}-{key[1]}") for key in runs]


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("region", REGIONS)
def test_evaluates_without_warnings_or_deprecations_g1(runs, stack, region):
    run = runs[stack, region]
    assert run.warnings == []
    assert run.python_warnings == []
    assert run.outputs["region"] == region


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("region", REGIONS)
def test_zones_are_looked_up_for_the_region_g1_g7(runs, stack, region):
    run = runs[stack, region]
    expected = 3 if stack == "prod" else 2
    zones = run.outputs["availabilityZones"]
    assert len(zones) == expected
    assert set(zones) <= set(REGION_ZONES[region])
    subnet_zones = {s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    assert subnet_zones == set(zones)


def outside_cloudfront_region(run) -> list[dict]:
    """Every resource's inputs but those CloudFront pins to its region (M7): the resources
    given `region`, and the distribution's reference to its web ACL there."""
    return [
        {k: v for k, v in r.inputs.items() if (r.type, k) != (DISTRIBUTION, "webAclId")}
        for r in run.resources
        if r.inputs.get("region") != CLOUDFRONT_REGION
    ]


@pytest.mark.parametrize("region", REGIONS)
def test_no_region_account_or_zone_of_another_region_leaks_in_g1(runs, region):
    run = runs["prod", region]
    text = repr(outside_cloudfront_region(run))
    for other in set(REGIONS) - {region}:
        assert other not in text
    # The only regions a resource names: CloudFront's (fixed by AWS), and the second region
    # the stack file chose for the backup copy (dbBackupCopyRegion) and the trail's replica
    # (auditReplicaRegion), for exactly the copy's vault and key and the replica's buckets and key.
    copy_region = stack_config("prod")["media-pipeline:dbBackupCopyRegion"]
    assert stack_config("prod")["media-pipeline:auditReplicaRegion"] == copy_region
    pinned = {
        (r.inputs["region"], r.name)
        for r in run.resources
        if "region" in r.inputs and r.type != "pulumi:providers:aws"
    }
    assert {where for where, _ in pinned} == {CLOUDFRONT_REGION, copy_region}
    assert sorted(name for where, name in pinned if where == copy_region) == [
        "audit-replica-bucket",
        "audit-replica-bucket-access-logging",
        "audit-replica-bucket-encryption",
        "audit-replica-bucket-lifecycle",
        "audit-replica-bucket-ownership",
        "audit-replica-bucket-policy",
        "audit-replica-bucket-public-access",
        "audit-replica-bucket-versioning",
        "audit-replica-key-alias",
        "audit-replica-key-key",
        "audit-replica-logs",
        "audit-replica-logs-encryption",
        "audit-replica-logs-lifecycle",
        "audit-replica-logs-ownership",
        "audit-replica-logs-policy",
        "audit-replica-logs-public-access",
        "backups-copy-key-alias",
        "backups-copy-key-key",
        "backups-copy-vault",
        "backups-copy-vault-lock",
    ]


# Every physical name carrying the suffix (G2) is the policy pack's `names-carry-suffix` rule,
# run over both stacks in tests/policy/test_rules.py (one implementation, its exemptions once).


@pytest.mark.parametrize("stack", STACKS)
def test_provider_default_tags_carry_the_common_tags_g4(runs, stack):
    run = runs[stack, "eu-central-1"]
    provider = run.one("pulumi:providers:aws")
    raw = {
        k.split(":", 1)[1]: to_engine_value(v)
        for k, v in stack_config(stack).items()
        if k.startswith("media-pipeline:")
    }
    settings = parse_settings(raw, project="media-pipeline", stack=stack, region="eu-central-1")
    # Provider inputs reach the engine JSON-encoded.
    assert json.loads(provider.inputs["defaultTags"])["tags"] == settings.common_tags()
    assert provider.inputs["region"] == "eu-central-1"


@pytest.mark.parametrize("stack", STACKS)
def test_every_log_group_keeps_the_stacks_retention_o1(runs, stack):
    run = runs[stack, "eu-central-1"]
    # The key of every group is asserted exactly in test_program_wiring.py (O1).
    groups = run.of_type("aws:cloudwatch/logGroup:LogGroup")
    expected_retention = {"dev": 14, "prod": 365}[stack]
    assert expected_retention in LOG_RETENTION_DAYS
    assert {g.name: g.inputs["retentionInDays"] for g in groups} == {
        g.name: expected_retention for g in groups
    }
    assert len(groups) >= 12


@pytest.mark.parametrize(("stack", "window"), [("dev", 7), ("prod", 30)])
def test_every_key_rotates_and_follows_data_protection_k1_g3(runs, stack, window):
    keys = runs[stack, "eu-central-1"].of_type("aws:kms/key:Key")
    assert len(keys) >= 8
    assert {(k.inputs["enableKeyRotation"], k.inputs["deletionWindowInDays"]) for k in keys} == {
        (True, window)
    }


@pytest.mark.parametrize(("stack", "nats"), [("dev", 1), ("prod", 3)])
def test_one_shared_nat_in_dev_and_one_per_az_in_prod_n2(runs, stack, nats):
    run = runs[stack, "eu-central-1"]
    gateways = run.of_type("aws:ec2/natGateway:NatGateway")
    assert len(gateways) == nats
    public = {s.id: s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    assert len({public[g.inputs["subnetId"]] for g in gateways}) == nats


def test_dev_skips_interface_endpoints_and_prod_has_them_but_both_have_s3s_gateway_n6(runs):
    kinds = {
        stack: sorted(
            e.inputs["vpcEndpointType"]
            for e in runs[stack, "eu-central-1"].of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        )
        for stack in STACKS
    }
    assert kinds == {"dev": ["Gateway"], "prod": ["Gateway"] + ["Interface"] * 10}


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_expose_network_ids_and_alarm_topic_g6(runs, stack):
    # Which subnets each list holds is asserted in test_program_wiring.py (G6).
    run = runs[stack, "eu-central-1"]
    outputs = run.outputs
    assert outputs["vpcId"] == run.one("aws:ec2/vpc:Vpc").id
    assert outputs["alarmTopicArn"] == run.one("aws:sns/topic:Topic", "alarms-topic").state["arn"]
    assert outputs["alarmTopicArn"] == f"arn:aws:sns:eu-central-1:123456789012:media-alarms-{stack}"


def test_longest_prefix_and_suffix_still_fit_every_name_g2():
    run = run_stack(
        "prod", {"prefix": "p" * MAX_PREFIX_LENGTH, "environmentSuffix": "s" * MAX_SUFFIX_LENGTH}
    )
    assert run.warnings == []


def test_empty_prefix_names_are_resource_suffix_g2():
    run = run_stack("dev", {"prefix": ""})
    assert run.outputs["alarmTopicArn"].endswith(":alarms-dev")


@pytest.mark.parametrize("stack", STACKS)
def test_readme_documents_every_stack_output_g6(runs, stack):
    readme = (__import__("offline.engine", fromlist=["ROOT"]).ROOT / "README.md").read_text()
    outputs_section = readme.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    missing = [
        name for name in runs[stack, "eu-central-1"].outputs if f"`{name}`" not in outputs_section
    ]
    assert missing == []


PROTECTED_IN_PROD = {
    ("aws:rds/cluster:Cluster", "database-cluster"),
    ("aws:efs/fileSystem:FileSystem", "files-fs"),
    ("aws:kinesis/stream:Stream", "stream-stream"),
    ("aws:sqs/queue:Queue", "jobs-dlq"),
    ("aws:sqs/queue:Queue", "jobs-pipe-failures"),
    ("aws:s3/bucket:Bucket", "audit-bucket"),
    ("aws:kms/key:Key", "audit-key-key"),
    # The media path's buckets and their key (M1, M6, G3).
    ("aws:s3/bucket:Bucket", "media-ingest"),
    ("aws:s3/bucket:Bucket", "media-media"),
    ("aws:s3/bucket:Bucket", "media-s3-logs"),
    ("aws:kms/key:Key", "media-key-key"),
    # The AWS Backup vaults and the copy region's key (dbBackupPlan, dbBackupCopyRegion).
    ("aws:backup/vault:Vault", "backups-vault"),
    ("aws:backup/vault:Vault", "backups-copy-vault"),
    ("aws:kms/key:Key", "backups-copy-key-key"),
    # The audit trail's replica, its access-log bucket and its key (auditReplicaRegion).
    ("aws:s3/bucket:Bucket", "audit-replica-bucket"),
    ("aws:s3/bucket:Bucket", "audit-replica-logs"),
    ("aws:kms/key:Key", "audit-replica-key-key"),
    # The content key's material: replacing it would strand every title keyed from it (K3).
    ("random:index/randomBytes:RandomBytes", "worker-content-key-material"),
    # The delivery tier's key in the CloudFront region (its logs and alarm topic, M7).
    ("aws:kms/key:Key", "delivery-edge-key-key"),
    # Every platform key (test_kms pins the eight purposes, statement by statement).
    *(("aws:kms/key:Key", f"keys-{purpose}-key") for purpose in PLATFORM_KEY_PURPOSES),
}


@pytest.mark.parametrize("region", REGIONS)
def test_data_protection_guards_every_data_store_and_only_those_g3(runs, region):
    """G3: with dataProtection every data store is `protect`ed (a destroy stops before deleting
    anything) and retained on delete; without it nothing is. The cache is rebuildable and
    left out; the API's account-level CloudWatch role is retained in both stacks."""
    dev, prod = runs["dev", region], runs["prod", region]

    def protected(run):
        return {(r.type, r.name) for r in run.resources if r.protect}

    def retained(run):
        return {(r.type, r.name) for r in run.resources if r.retain_on_delete}

    assert protected(dev) == set()
    assert protected(prod) == PROTECTED_IN_PROD
    assert {t for t, _ in protected(prod)} == {
        "aws:rds/cluster:Cluster",
        "aws:efs/fileSystem:FileSystem",
        "aws:kinesis/stream:Stream",
        "aws:sqs/queue:Queue",
        "aws:s3/bucket:Bucket",
        "aws:kms/key:Key",
        "random:index/randomBytes:RandomBytes",
        "aws:backup/vault:Vault",
    }
    # Every key of the stack, wherever it is made, is among them.
    assert {
        ("aws:kms/key:Key", k.name) for k in prod.of_type("aws:kms/key:Key")
    } <= PROTECTED_IN_PROD
    # Beyond the data stores only the account-level API Gateway logging role is retained, by
    # the one stack that owns it (dev; prod reads it: issue 14 item 3).
    assert retained(prod) - PROTECTED_IN_PROD == set()
    assert retained(dev) == {
        ("aws:apigateway/account:Account", "api-account"),
        ("aws:iam/role:Role", "api-cloudwatch-role"),
        ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "api-cloudwatch-policy"),
    }
    assert not any(r.protect for r in prod.resources if not r.custom)  # never inherited


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def test_g2_a_stack_with_only_a_region_names_everything_after_itself():
    """A new stack beside dev in one account: with only `aws:region` set (and Pulumi.yaml's
    defaults, as the CLI passes them), no account-wide name may be dev's."""
    config = {qualify(key): to_engine_value(value) for key, value in project_defaults().items()}
    config["aws:region"] = "ca-central-1"
    run = run_program("staging", config, "ca-central-1")
    assert run.outputs["alarmTopicArn"].endswith(":media-alarms-staging")
    # dbEngineVersion's default is a major: a fresh stack gets RDS's newest minor of it.
    assert run.outputs["databaseEngineVersion"] == "16.9"
    texts = [text for resource in run.resources for text in _strings(resource.inputs)]
    assert [text for text in texts if text.endswith("-dev")] == []
    assert sum(text.endswith("-staging") for text in texts) > 100
