"""Whole-program tests: the real `__main__.py` for every stack file and supported region."""

from __future__ import annotations

import pytest

from components.naming import common_tags
from components.settings import (
    LOG_RETENTION_DAYS,
    MAX_PREFIX_LENGTH,
    MAX_SUFFIX_LENGTH,
    parse_settings,
)
from offline.engine import REGION_ZONES, run_stack, stack_config

REGIONS = ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"]
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


@pytest.mark.parametrize("region", REGIONS)
def test_no_region_account_or_zone_of_another_region_leaks_in_g1(runs, region):
    text = repr([r.inputs for r in runs["prod", region].resources])
    for other in set(REGIONS) - {region}:
        assert other not in text


@pytest.mark.parametrize("stack", STACKS)
def test_every_physical_name_carries_the_suffix_g2(runs, stack):
    suffix = stack_config(stack)["media-pipeline:environmentSuffix"]
    run = runs[stack, "eu-central-1"]
    named = [(r.type, r.inputs["name"]) for r in run.resources
             if r.custom and r.type.startswith("aws:") and isinstance(r.inputs.get("name"), str)
             and not _name_fixed_by_aws(r.type, r.inputs["name"])]
    assert len(named) > 20
    assert [n for n in named if suffix not in n[1]] == []


def _name_fixed_by_aws(type_token: str, name: str) -> bool:
    """Names the program cannot choose: API Gateway's execution-log group is always
    `API-Gateway-Execution-Logs_{restApiId}/{stage}`; request models are alphanumeric and
    scoped to their REST API (which carries the suffix)."""
    return (name.startswith("API-Gateway-Execution-Logs_")
            or type_token == "aws:apigateway/model:Model")


@pytest.mark.parametrize("stack", STACKS)
def test_provider_default_tags_carry_the_common_tags_g4(runs, stack):
    run = runs[stack, "eu-central-1"]
    provider = run.one("pulumi:providers:aws")
    raw = {k.split(":", 1)[1]: str(v).lower() if isinstance(v, bool) else str(v)
           for k, v in stack_config(stack).items() if k.startswith("media-pipeline:")}
    settings = parse_settings(raw, project="media-pipeline", stack=stack,
                              region="eu-central-1")
    tags = provider.inputs["defaultTags"]
    tags = tags if isinstance(tags, dict) else __import__("json").loads(tags)
    assert tags["tags"] == common_tags(settings)
    assert provider.inputs["region"] == "eu-central-1"


@pytest.mark.parametrize("stack", STACKS)
def test_every_log_group_is_encrypted_with_an_allowed_retention_o1(runs, stack):
    run = runs[stack, "eu-central-1"]
    groups = run.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert groups
    expected_retention = {"dev": 14, "prod": 90}[stack]
    for group in groups:
        assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:eu-central-1:123456789012:key/")
        assert group.inputs["retentionInDays"] in LOG_RETENTION_DAYS
    assert {g.inputs["retentionInDays"] for g in groups} == {expected_retention}


@pytest.mark.parametrize(("stack", "window"), [("dev", 7), ("prod", 30)])
def test_every_key_rotates_and_follows_data_protection_k1_g3(runs, stack, window):
    keys = runs[stack, "eu-central-1"].of_type("aws:kms/key:Key")
    assert len(keys) >= 8
    assert {(k.inputs["enableKeyRotation"], k.inputs["deletionWindowInDays"]) for k in keys} \
        == {(True, window)}


@pytest.mark.parametrize(("stack", "nats"), [("dev", 1), ("prod", 3)])
def test_one_shared_nat_in_dev_and_one_per_az_in_prod_n2(runs, stack, nats):
    run = runs[stack, "eu-central-1"]
    gateways = run.of_type("aws:ec2/natGateway:NatGateway")
    assert len(gateways) == nats
    public = {s.id: s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    assert len({public[g.inputs["subnetId"]] for g in gateways}) == nats


def test_dev_skips_interface_endpoints_and_prod_has_them_n6(runs):
    count = {stack: len(runs[stack, "eu-central-1"].of_type("aws:ec2/vpcEndpoint:VpcEndpoint"))
             for stack in STACKS}
    assert count == {"dev": 0, "prod": 10}


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_expose_network_ids_and_alarm_topic_g6(runs, stack):
    outputs = runs[stack, "eu-central-1"].outputs
    zones = 3 if stack == "prod" else 2
    assert outputs["vpcId"].startswith("vpc-")
    for key in ("publicSubnetIds", "appSubnetIds", "dataSubnetIds"):
        assert len(outputs[key]) == zones and all(s.startswith("subnet-") for s in outputs[key])
    assert outputs["alarmTopicArn"] == f"arn:aws:sns:eu-central-1:123456789012:media-alarms-{stack}"


def test_longest_prefix_and_suffix_still_fit_every_name_g2():
    run = run_stack("prod", {"prefix": "p" * MAX_PREFIX_LENGTH,
                             "environmentSuffix": "s" * MAX_SUFFIX_LENGTH})
    assert run.warnings == []


def test_empty_prefix_names_are_resource_suffix_g2():
    run = run_stack("dev", {"prefix": ""})
    assert run.outputs["alarmTopicArn"].endswith(":alarms-dev")


@pytest.mark.parametrize("stack", STACKS)
def test_readme_documents_every_stack_output_g6(runs, stack):
    readme = (__import__("offline.engine", fromlist=["ROOT"]).ROOT / "README.md").read_text()
    outputs_section = readme.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in runs[stack, "eu-central-1"].outputs
               if f"`{name}`" not in outputs_section]
    assert missing == []


PROTECTED_IN_PROD = {
    ("aws:rds/cluster:Cluster", "database-cluster"),
    ("aws:efs/fileSystem:FileSystem", "files-fs"),
    ("aws:kinesis/stream:Stream", "stream-stream"),
    ("aws:sqs/queue:Queue", "jobs-dlq"),
    ("aws:sqs/queue:Queue", "jobs-pipe-failures"),
    ("aws:s3/bucket:Bucket", "audit-bucket"),
    ("aws:kms/key:Key", "audit-key-key"),
    *(("aws:kms/key:Key", f"keys-{purpose}-key") for purpose in (
        "logs", "database", "cache", "secrets", "filesystem", "stream", "messaging", "images")),
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
        "aws:rds/cluster:Cluster", "aws:efs/fileSystem:FileSystem",
        "aws:kinesis/stream:Stream", "aws:sqs/queue:Queue", "aws:s3/bucket:Bucket",
        "aws:kms/key:Key"}
    # Every key of the stack, wherever it is made, is among them.
    assert {("aws:kms/key:Key", k.name) for k in prod.of_type("aws:kms/key:Key")} <= \
        PROTECTED_IN_PROD
    assert retained(prod) - PROTECTED_IN_PROD == retained(dev)
    assert retained(dev) & PROTECTED_IN_PROD == set()
    assert not any(r.protect for r in prod.resources if not r.custom)  # never inherited
