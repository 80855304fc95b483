"""Secrets the stack generates itself (an AUTH token, an API key, key material) (K3, G3).

Each is stored the same way: under the Secrets Manager CMK, named by the stack's namer, with
the recovery window data protection asks for, and its value written as the first version.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.naming import NameKind, Namer, name_tag
from components.protection import Lifecycle


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
) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
    """The secret `namer.name(stem)` holding `value` (its version is `<resource_name>-value`)."""
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
        f"{resource_name}-value", secret_id=secret.id, secret_string=value, opts=child
    )
    return secret, version
