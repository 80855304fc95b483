"""Customer-managed KMS keys: the one way this program makes a key (K1, K2).

Every key has rotation on, an alias carrying the stack suffix, and a key policy made of the
account-root statement (without it IAM policies cannot grant use of the key and AWS rejects
the policy as a lock-out) plus exactly the service-principal statements the caller asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.naming import Namer, name_tag
from components.protection import Lifecycle, data_store_options

ENCRYPT_DECRYPT_ACTIONS = (
    "kms:Encrypt*",
    "kms:Decrypt*",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:Describe*",
)


@dataclass(frozen=True)
class AwsContext:
    """Account facts looked up once per stack; never written into code."""

    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    region: pulumi.Input[str]
    dns_suffix: pulumi.Input[str] = "amazonaws.com"


@dataclass(frozen=True)
class ServiceGrant:
    """One key-policy statement letting an AWS service principal use the key."""

    sid: str
    service: pulumi.Input[str]
    actions: tuple[str, ...]
    conditions: dict[str, Any] = field(default_factory=dict)

    def statement(self) -> dict[str, Any]:
        statement: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Principal": {"Service": self.service},
            "Action": list(self.actions),
            "Resource": "*",  # in a key policy "*" means this key
        }
        if self.conditions:
            statement["Condition"] = self.conditions
        return statement


def root_statement(ctx: AwsContext) -> dict[str, Any]:
    return {
        "Sid": "EnableAccountIamPolicies",
        "Effect": "Allow",
        "Principal": {
            "AWS": pulumi.Output.concat("arn:", ctx.partition, ":iam::", ctx.account_id, ":root")
        },
        "Action": "kms:*",
        "Resource": "*",
    }


def key_policy(ctx: AwsContext, grants: tuple[ServiceGrant, ...]) -> pulumi.Output[str]:
    document = {
        "Version": "2012-10-17",
        "Statement": [root_statement(ctx), *(g.statement() for g in grants)],
    }
    return pulumi.Output.json_dumps(document)


def cloudwatch_logs_grant(ctx: AwsContext) -> ServiceGrant:
    """CloudWatch Logs must be named regionally and scoped to this account's log groups."""
    return ServiceGrant(
        sid="AllowCloudWatchLogs",
        service=pulumi.Output.concat("logs.", ctx.region, ".", ctx.dns_suffix),
        actions=ENCRYPT_DECRYPT_ACTIONS,
        conditions={
            "ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                    "arn:", ctx.partition, ":logs:", ctx.region, ":", ctx.account_id, ":log-group:*"
                ),
            }
        },
    )


def cloudwatch_alarms_grant(ctx: AwsContext) -> ServiceGrant:
    """Alarms publishing to an encrypted SNS topic need the data key from this key."""
    return ServiceGrant(
        sid="AllowCloudWatchAlarmsToPublish",
        service=pulumi.Output.concat("cloudwatch.", ctx.dns_suffix),
        actions=("kms:Decrypt", "kms:GenerateDataKey*"),
        conditions={"StringEquals": {"aws:SourceAccount": ctx.account_id}},
    )


@dataclass(frozen=True, kw_only=True)
class EncryptionKeyArgs:
    """Inputs of `EncryptionKey`."""

    purpose: str
    """Short resource word for the alias and description, e.g. `database` (required)."""
    context: AwsContext
    """Account, partition and region facts for the root statement (required)."""
    namer: Namer
    """Builds the alias `alias/{prefix}-{purpose}-{suffix}` (required)."""
    deletion_window_days: int = 7
    """7 (destroyable stacks) to 30 (data protection); KMS always waits at least 7 days."""
    service_grants: tuple[ServiceGrant, ...] = ()
    """Service principals allowed to use the key besides the account; default none."""
    protect_data: bool = False
    """False (default): the key is scheduled for deletion on destroy. True: the engine refuses
    to delete or replace it and it is retained on delete — the data it encrypts (snapshots,
    backups, retained stores) stays readable (G3)."""
    region: str | None = None
    """Region of the key and its alias; default None: the provider's (the stack's) region.
    Set only where AWS fixes the region (CloudFront's pieces, `CLOUDFRONT_REGION`)."""
    separate_policy: bool = False
    """False (default): the policy is the key's own `policy`. True: the key is created with
    AWS's default policy (the same account-root statement) and the whole policy is a
    `kms.KeyPolicy` of its own, so a statement may name a resource that is itself built on
    the key (the media key's distribution) without a dependency cycle, and nothing that
    encrypts with the key waits for that resource (PITFALLS 23, 127)."""

    def validate(self) -> None:
        problems = []
        if not 7 <= self.deletion_window_days <= 30:
            problems.append(f"deletion_window_days={self.deletion_window_days}: allowed 7..30")
        sids = [g.sid for g in self.service_grants]
        if len(sids) != len(set(sids)):
            problems.append(f"service_grants: statement ids must be unique, got {sids}")
        if problems:
            raise ValueError("EncryptionKeyArgs: " + "; ".join(problems))


class EncryptionKey(pulumi.ComponentResource):
    """A symmetric customer-managed key with rotation, alias and a least-privilege policy."""

    key: aws.kms.Key
    arn: pulumi.Output[str]
    key_id: pulumi.Output[str]
    alias_name: str

    def __init__(
        self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:kms:EncryptionKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.alias_name = args.namer.alias(args.purpose)
        policy = key_policy(args.context, args.service_grants)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.purpose} data at rest ({self.alias_name})",
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_days,
            policy=None if args.separate_policy else policy,
            tags=name_tag(self.alias_name.removeprefix("alias/")),
            region=args.region,
            opts=data_store_options(self, args.protect_data),
        )
        if args.separate_policy:
            aws.kms.KeyPolicy(
                f"{name}-policy",
                key_id=self.key.key_id,
                policy=policy,
                region=args.region,
                opts=child,
            )
        aws.kms.Alias(
            f"{name}-alias",
            name=self.alias_name,
            target_key_id=self.key.key_id,
            region=args.region,
            opts=child,
        )
        self.arn = self.key.arn
        self.key_id = self.key.key_id
        self.register_outputs({"arn": self.arn, "alias": self.alias_name})


# Purposes of the platform's keys (K1): one per data store, plus logs, stream, messaging and
# container images so that revoking or auditing one never touches another.
PLATFORM_KEY_PURPOSES = (
    "logs",
    "database",
    "cache",
    "secrets",
    "filesystem",
    "stream",
    "messaging",
    "images",
)


@dataclass(frozen=True, kw_only=True)
class PlatformKeysArgs:
    """Inputs of `PlatformKeys`."""

    context: AwsContext
    """Account, partition and region facts (required)."""
    namer: Namer
    """Stack namer for the aliases (required)."""
    protect_data: bool = False
    """Protect and retain every key (see `EncryptionKeyArgs.protect_data`) and give each a
    30-day deletion window instead of 7 (G3); default False."""


class PlatformKeys(pulumi.ComponentResource):
    """The stack's customer-managed keys, one per purpose (K1).

    Only two keys are used by service principals directly: the logs key (CloudWatch Logs,
    regional principal) and the messaging key (CloudWatch alarms publishing to SNS). The
    others are used by services on behalf of IAM principals, which the root statement enables.
    """

    def __init__(
        self, name: str, args: PlatformKeysArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("media:kms:PlatformKeys", name, None, opts)
        grants = {
            "logs": (cloudwatch_logs_grant(args.context),),
            "messaging": (cloudwatch_alarms_grant(args.context),),
        }
        self.keys = {
            purpose: EncryptionKey(
                f"{name}-{purpose}",
                EncryptionKeyArgs(
                    purpose=f"{purpose}-key",
                    context=args.context,
                    namer=args.namer,
                    deletion_window_days=Lifecycle(args.protect_data).key_deletion_window_days,
                    service_grants=grants.get(purpose, ()),
                    protect_data=args.protect_data,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            for purpose in PLATFORM_KEY_PURPOSES
        }
        (
            self.logs,
            self.database,
            self.cache,
            self.secrets,
            self.filesystem,
            self.stream,
            self.messaging,
            self.images,
        ) = (self.keys[p] for p in PLATFORM_KEY_PURPOSES)
        self.register_outputs({p: k.arn for p, k in self.keys.items()})
