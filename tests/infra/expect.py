"""Expectations several component tests share, each stated once and exactly.

A test that uses one asserts as much as the copy it replaced: the helpers compare whole
documents and whole rule inputs, never a subset.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.firewall import RoleSecurityGroup
from offline.engine import ACCOUNT_ID, ProgramRun, run_components
from stack_config import ConfigError, parse_settings

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
RANDOM_STRING = "random:index/randomString:RandomString"

# The placement every data-store test uses (components.data_tier.DataStorePlacement).
REGION = "eu-central-1"
ZONES = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
SUBNETS = ["subnet-data-a", "subnet-data-b", "subnet-data-c"]
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-alarms-test"


def key(purpose: str) -> str:
    """A CMK ARN in the test account, recognisable by `purpose`."""
    return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{purpose}"


# Placement args every data store refuses (`DataStorePlacement.placement_problems`), with the
# error each names, over the two-zone `placement` below.
PLACEMENT_REJECTIONS = [
    (
        {"availability_zones": ["eu-central-1a"], "subnet_ids": ["subnet-a"]},
        "availability_zones=['eu-central-1a']: allowed 2 or more distinct zones",
    ),
    (
        {"availability_zones": ["eu-central-1a", "eu-central-1a"]},
        "availability_zones=['eu-central-1a', 'eu-central-1a']: allowed 2 or more distinct zones",
    ),
    (
        {"subnet_ids": SUBNETS},
        "subnet_ids: 3 given, allowed exactly one per availability zone (2)",
    ),
    (
        {"subnet_ids": ["subnet-a"]},
        "subnet_ids: 1 given, allowed exactly one per availability zone (2)",
    ),
    ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3, 5"),
]


def placement(namer, context, storage_key: str) -> dict[str, Any]:
    """`DataStorePlacement` fields over two zones, the store's data under `key(storage_key)`."""
    return {
        "namer": namer,
        "context": context,
        "vpc_id": "vpc-test",
        "subnet_ids": SUBNETS[:2],
        "availability_zones": ZONES[:2],
        "storage_key_arn": key(storage_key),
        "secret_key_arn": key("secrets"),
        "logs_key_arn": key("logs"),
        "alarm_topic_arn": TOPIC,
    }


def guarded(run: ProgramRun) -> set[tuple[str, str, bool, bool]]:
    """(type, name, protect, retain_on_delete) of every resource with either option set."""
    return {
        (r.type, r.name, r.protect, r.retain_on_delete)
        for r in run.resources
        if r.protect or r.retain_on_delete
    }


def policy_document(run: ProgramRun, name: str) -> dict:
    """The parsed document of the role policy `name`."""
    return json.loads(run.one(ROLE_POLICY, name).inputs["policy"])


def assert_role_policy(run: ProgramRun, name: str, role: str, statements: list[dict]) -> None:
    """The role policy `name` is attached to the role `role` and holds exactly `statements`."""
    policy = run.one(ROLE_POLICY, name)
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", role).id
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": statements,
    }


def decrypt_via(sid: str, key_arn: str, service: str, region: str) -> dict:
    """A statement allowing `kms:Decrypt` on one key, only when `service` calls KMS for it."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": [key_arn],
        "Condition": {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}},
    }


def secret_read_policy(label: str, secret_arn: str, key_arn: str, region: str) -> dict:
    """The whole document `secret_read_grants(label, ...)` attaches: read one secret, and
    decrypt its key only through Secrets Manager."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"Read{label}Secret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": [secret_arn],
            },
            decrypt_via(f"Decrypt{label}Secret", key_arn, "secretsmanager", region),
        ],
    }


def rotation_statements(secret_arn: str, key_arn: str, region: str) -> list[dict]:
    """The grants every rotation function has (components/rotation.py): the rotation
    protocol's actions on exactly its secret, that secret's key only through Secrets Manager
    for that secret."""
    return [
        {
            "Sid": "RotateOneSecret",
            "Effect": "Allow",
            "Action": [
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
            ],
            "Resource": [secret_arn],
        },
        {
            "Sid": "UseRotatedSecretKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [key_arn],
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": f"secretsmanager.{region}.amazonaws.com",
                    "kms:EncryptionContext:SecretARN": secret_arn,
                }
            },
        },
    ]


def cloudtrail_key_statements(
    trail_arn: str,
    topic_arn: str,
    *,
    partition: str = "aws",
    dns_suffix: str = "amazonaws.com",
) -> list[dict]:
    """The audit key's CloudTrail statements (`components.audit.cloudtrail_key_grants`): encrypt
    for this account's trails, describe and decrypt, each only for `trail_arn`; publish to the
    encrypted notification topic `topic_arn` only."""
    principal = {"Service": f"cloudtrail.{dns_suffix}"}
    return [
        {
            "Sid": "CloudTrailEncryptLogs",
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:aws:cloudtrail:arn": (
                        f"arn:{partition}:cloudtrail:*:{ACCOUNT_ID}:trail/*"
                    )
                },
                "StringEquals": {"aws:SourceArn": trail_arn},
            },
        },
        {
            "Sid": "CloudTrailDescribeKeyAndBucketKey",
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["kms:DescribeKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
        },
        {
            "Sid": "CloudTrailNotifyEncryptedTopic",
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:aws:sns:topicArn": topic_arn}},
        },
    ]


class Peer(pulumi.ComponentResource):
    """A consumer tier with its own role security group, `role` (logical name `<role>-sg`)."""

    def __init__(self, namer, role: str):
        super().__init__("media:test:Peer", "peer", None, None)
        self.sg = RoleSecurityGroup(
            f"{role}-sg",
            role=role,
            description="peer",
            vpc_id="vpc-test",
            namer=namer,
            parent=self,
        )


def assert_admits_nothing(run: ProgramRun) -> None:
    """No security group rule exists until a peer is allowed in."""
    assert run.of_type(INGRESS) == [] and run.of_type(EGRESS) == []


def assert_admits_only(run: ProgramRun, own: str, peer: str, port: int) -> None:
    """The one ingress rule lets the security group `own` take TCP `port` from the group
    `peer` only (no CIDR), and the one egress rule lets `peer` reach `own` on that port."""
    own_sg = run.one(SECURITY_GROUP, own)
    peer_sg = run.one(SECURITY_GROUP, peer)
    [ingress] = run.of_type(INGRESS)
    assert {
        k: ingress.inputs[k]
        for k in (
            "securityGroupId",
            "referencedSecurityGroupId",
            "ipProtocol",
            "fromPort",
            "toPort",
        )
    } == {
        "securityGroupId": own_sg.id,
        "referencedSecurityGroupId": peer_sg.id,
        "ipProtocol": "tcp",
        "fromPort": port,
        "toPort": port,
    }
    assert "cidrIpv4" not in ingress.inputs
    [egress] = run.of_type(EGRESS)
    assert (
        egress.inputs["securityGroupId"],
        egress.inputs["referencedSecurityGroupId"],
        egress.inputs["fromPort"],
        egress.inputs["toPort"],
    ) == (peer_sg.id, own_sg.id, port, port)


def assert_same_peer_twice_fails(make, namer, *, store: str, peer_role: str) -> None:
    """Allowing one peer twice into `make()` (named `store`) is refused, naming the peer."""

    def program():
        target = make()
        peer = Peer(namer, peer_role)
        target.allow_from(peer.sg)
        target.allow_from(peer.sg)

    with pytest.raises(ValueError, match=f"{store}: media-{peer_role}-sg-test is already allowed"):
        run_components(program, region=REGION)


def final_snapshot_suffix(run: ProgramRun, name: str) -> str:
    """The random part of a protected store's final snapshot name (8 lower-case characters,
    no specials), made by the resource `<name>-final-snapshot-suffix`."""
    suffix = run.one(RANDOM_STRING, f"{name}-final-snapshot-suffix")
    assert suffix.inputs == {"length": 8, "special": False, "upper": False}
    return suffix.state["result"]


def assert_rejected(args, message: str) -> None:
    """`args.validate()` raises one error that starts with the args class and holds `message`."""
    with pytest.raises(ValueError) as caught:
        args.validate()
    assert str(caught.value).startswith(f"{type(args).__name__}: ")
    assert message in str(caught.value)


def config_problems(**raw: str) -> list[str]:
    """The problems `parse_settings` reports for the raw stack config `raw` (it must fail)."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, project="media-pipeline", stack="test", region=REGION)
    return caught.value.problems
