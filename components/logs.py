"""Encrypted log groups with retention: every log group of the stack is made here (O1).

Services that would otherwise create their own group (Lambda, RDS, API Gateway, ECS) get one
pre-created under the exact name they use, and the producer depends on it, so the group is
created first, deleted last, encrypted and never left to "never expire".
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws_limits import LOG_RETENTION_DAYS


def retention_problems(field_name: str, days: int) -> list[str]:
    """CloudWatch accepts only its fixed retention values; anything else fails at deploy."""
    if days in LOG_RETENTION_DAYS:
        return []
    return [f"{field_name}={days}: allowed one of " + ", ".join(map(str, LOG_RETENTION_DAYS))]


def encrypted_log_group(
    resource_name: str,
    *,
    name: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    retention_days: int,
    parent: pulumi.Resource,
    region: str | None = None,
) -> aws.cloudwatch.LogGroup:
    """A log group under `kms_key_arn` that expires after `retention_days`; in `region` where
    AWS fixes one (CloudFront's access logs and WAF logs), else the stack's."""
    if problems := retention_problems("retention_days", retention_days):
        raise ValueError(problems[0])
    return aws.cloudwatch.LogGroup(
        resource_name,
        name=name,
        kms_key_id=kms_key_arn,
        retention_in_days=retention_days,
        region=region,
        opts=pulumi.ResourceOptions(parent=parent),
    )
