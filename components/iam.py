"""IAM documents as data: trust policies and inline role policies with exact actions on ARNs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.kms import AwsContext
from components.naming import NameKind, Namer, name_tag


@dataclass(frozen=True)
class Grant:
    """One policy statement: exact actions on exact resources."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...]
    conditions: dict[str, Any] | None = None

    def statement(self) -> dict[str, Any]:
        if not self.actions or not self.resources:
            raise ValueError(f"grant {self.sid}: needs at least one action and one resource")
        if any(a == "*" or a.endswith(":*") for a in self.actions):
            raise ValueError(f"grant {self.sid}: wildcard actions are not allowed")
        statement: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }
        if self.conditions:
            statement["Condition"] = self.conditions
        return statement


def policy_document(grants: Sequence[Grant]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [g.statement() for g in grants],
        }
    )


def service_trust_policy(
    service: str,
    ctx: AwsContext,
    source_arn: pulumi.Input[str] | None = None,
    *,
    source_account: bool = True,
) -> pulumi.Output[str]:
    """Trust `service` only on behalf of this account (confused-deputy guard), unless
    `source_account` is False: for a service whose documented trust carries no condition."""
    condition: dict[str, Any] = (
        {"StringEquals": {"aws:SourceAccount": ctx.account_id}} if source_account else {}
    )
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [statement]})


def service_role_policy_arn(ctx: AwsContext, name: str) -> pulumi.Output[str]:
    """The ARN of an AWS managed service-role policy, e.g. AmazonRDSEnhancedMonitoringRole."""
    return pulumi.Output.concat("arn:", ctx.partition, ":iam::aws:policy/service-role/", name)


def service_role(
    resource_name: str,
    *,
    role: str,
    service: str,
    ctx: AwsContext,
    namer: Namer,
    parent: pulumi.Resource,
    source_arn: pulumi.Input[str] | None = None,
    source_account: bool = True,
) -> aws.iam.Role:
    physical = namer.name(role, NameKind.IAM_ROLE)
    return aws.iam.Role(
        resource_name,
        name=physical,
        assume_role_policy=service_trust_policy(
            service, ctx, source_arn, source_account=source_account
        ),
        # Policies attached outside this program must not block `pulumi destroy`.
        force_detach_policies=True,
        tags=name_tag(physical),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def role_arn(ctx: AwsContext, physical_name: str) -> pulumi.Output[str]:
    """The ARN a role of this account named `physical_name` has (or will have): for naming a
    role in a resource policy before the role exists, where waiting for it would be a cycle."""
    return pulumi.Output.concat(
        "arn:", ctx.partition, ":iam::", ctx.account_id, ":role/", physical_name
    )


def attach_grants(
    resource_name: str, role: aws.iam.Role, grants: Sequence[Grant], *, parent: pulumi.Resource
) -> aws.iam.RolePolicy:
    return aws.iam.RolePolicy(
        resource_name,
        role=role.id,
        policy=policy_document(grants),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def decrypt_via(
    sid: str,
    kms_key_arn: pulumi.Input[str],
    service: str,
    ctx: AwsContext,
    also: dict[str, pulumi.Input[str]] | None = None,
) -> Grant:
    """Decrypt with one CMK only when `service` (of this region) asks on the caller's behalf;
    `also` adds further `StringEquals` conditions (an encryption context)."""
    via = pulumi.Output.concat(f"{service}.", ctx.region, ".", ctx.dns_suffix)
    return Grant(
        sid=sid,
        actions=("kms:Decrypt",),
        resources=(kms_key_arn,),
        conditions={"StringEquals": {"kms:ViaService": via, **(also or {})}},
    )


def secret_read_grants(
    label: str, secret_arn: pulumi.Input[str], kms_key_arn: pulumi.Input[str], ctx: AwsContext
) -> tuple[Grant, Grant]:
    """Read one secret: its value on exactly its ARN, and decrypt with its CMK only when
    Secrets Manager (of this region) asks on the caller's behalf."""
    return (
        Grant(
            sid=f"Read{label}Secret",
            actions=("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"),
            resources=(secret_arn,),
        ),
        decrypt_via(f"Decrypt{label}Secret", kms_key_arn, "secretsmanager", ctx),
    )
