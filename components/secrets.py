"""Secrets the stack generates itself (an AUTH token, an API key, key material) (K3, G3).

Each is stored the same way: under the Secrets Manager CMK, named by the stack's namer, with
the recovery window data protection asks for, and its value written as the first version.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.naming import NameKind, Namer, name_tag
from components.protection import Lifecycle

CURRENT_STAGE = "AWSCURRENT"
DEPLOYED_STAGE = "DEPLOYED"
"""A staging label of our own on the version `pulumi up` wrote. Rotation moves AWSCURRENT and
AWSPREVIOUS away from it; a version left with no label is deprecated and Secrets Manager may
delete it, after which the provider would drop it from the state and the next `up` would
write it again as AWSCURRENT — the old value back (hashicorp/terraform-provider-aws#37302)."""


def stored_secret(
    resource_name: str,
    *,
    namer: Namer,
    stem: str,
    description: str,
    value: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    protect_data: bool,
    parent: pulumi.Resource,
    rotated: bool = False,
) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
    """The secret `namer.name(stem)` holding `value` (its version is `<resource_name>-value`).

    `rotated`: a rotation function owns the value after `up` wrote the first one. That
    version keeps `DEPLOYED_STAGE`, so it is never deleted and written again, and its value
    and stages are the rotation's from then on: a changed `value` or a refreshed state
    (AWSCURRENT moved on) never makes the next `up` write the old value back."""
    child = pulumi.ResourceOptions(parent=parent)
    name = namer.name(stem, NameKind.SECRET)
    secret = aws.secretsmanager.Secret(
        resource_name,
        name=name,
        description=description,
        kms_key_id=kms_key_arn,
        recovery_window_in_days=Lifecycle(protect_data).secret_recovery_window_days,
        tags=name_tag(name),
        opts=child,
    )
    version = aws.secretsmanager.SecretVersion(
        f"{resource_name}-value",
        secret_id=secret.id,
        secret_string=value,
        version_stages=[CURRENT_STAGE, DEPLOYED_STAGE] if rotated else None,
        opts=pulumi.ResourceOptions(
            parent=parent,
            ignore_changes=["secretString", "versionStages"] if rotated else None,
        ),
    )
    return secret, version


def readers_only_policy(sid: str, readers: Sequence[pulumi.Input[str]]) -> pulumi.Output[str]:
    """A secret policy that denies reading the value to every principal but `readers`.

    An explicit deny beats every allow, the account root's and administrators' included.
    Managing the secret (describe, policy, rotation, deletion) stays with IAM; removing this
    policy is the audited break-glass."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": sid,
                    "Effect": "Deny",
                    "Principal": {"AWS": "*"},
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": "*",
                    "Condition": {"StringNotEquals": {"aws:PrincipalArn": list(readers)}},
                }
            ],
        }
    )


def restrict_reads(
    resource_name: str,
    *,
    secret: aws.secretsmanager.Secret,
    version: aws.secretsmanager.SecretVersion,
    sid: str,
    readers: Sequence[pulumi.Input[str]],
    parent: pulumi.Resource,
) -> aws.secretsmanager.SecretPolicy:
    """Only `readers` may read `secret`'s value (`readers_only_policy`)."""
    return aws.secretsmanager.SecretPolicy(
        resource_name,
        secret_arn=secret.arn,
        block_public_policy=True,
        policy=readers_only_policy(sid, readers),
        # After the version exists: the provider reads the value back right after writing it.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[version]),
    )
