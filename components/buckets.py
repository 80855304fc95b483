"""Private S3 buckets as every tier builds them (the audit trail's, the media path's).

ACLs disabled (`BucketOwnerEnforced`), all four public-access blocks, emptied on destroy
unless data protection keeps them, a `Name` tag; versioning and default encryption with a
customer-managed key where the bucket holds data; a policy statement refusing non-TLS access.
The children are named after the bucket's logical name (`<bucket>-ownership`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.naming import name_tag
from components.protection import Lifecycle, data_store_options


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    public_access_block: aws.s3.BucketPublicAccessBlock
    """A bucket policy must wait for it: S3 rejects a policy while the block is applied."""


def private_bucket(
    resource_name: str,
    *,
    physical: pulumi.Output[str],
    protect_data: bool,
    parent: pulumi.Resource,
    region: str | None = None,
) -> PrivateBucket:
    """`region`: where the bucket and its settings live; default None, the stack's region."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(
        resource_name,
        bucket=physical,
        force_destroy=Lifecycle(protect_data).destroyable,
        tags=physical.apply(name_tag),
        region=region,
        opts=data_store_options(parent, protect_data),
    )
    aws.s3.BucketOwnershipControls(
        f"{resource_name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        region=region,
        opts=child,
    )
    block = aws.s3.BucketPublicAccessBlock(
        f"{resource_name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        region=region,
        opts=child,
    )
    return PrivateBucket(bucket, block)


def versioned_and_key_encrypted(
    resource_name: str,
    bucket: aws.s3.Bucket,
    key_arn: pulumi.Input[str],
    *,
    parent: pulumi.Resource,
    region: str | None = None,
) -> aws.s3.BucketVersioning:
    """Versioning on, and SSE-KMS with `key_arn` for every object a request does not encrypt
    otherwise (bucket keys: one data key per bucket instead of a KMS call per object). The
    versioning is returned for what needs it first (replication)."""
    child = pulumi.ResourceOptions(parent=parent)
    versioning = aws.s3.BucketVersioning(
        f"{resource_name}-versioning",
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        region=region,
        opts=child,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{resource_name}-encryption",
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": key_arn,
                },
                "bucket_key_enabled": True,
            }
        ],
        region=region,
        opts=child,
    )
    return versioning


def deny_insecure_transport(bucket_arn: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        # A deny must cover every action, so here the wildcard is right.
        "Action": "s3:*",
        "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
