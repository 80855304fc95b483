"""Audit trail: CloudTrail to an encrypted, versioned, private bucket and to CloudWatch (O3).

The trail's name is fixed up front so its ARN can be written into the bucket and key
policies (`aws:SourceArn`) without a dependency cycle; the trail then waits for the bucket
policy, because CloudTrail checks the policy when the trail is created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.buckets import deny_insecure_transport, private_bucket, versioned_and_key_encrypted
from components.iam import Grant, attach_grants, service_role
from components.kms import AwsContext, EncryptionKey, EncryptionKeyArgs, ServiceGrant
from components.logs import encrypted_log_group, retention_problems
from components.media_storage import AccessLogTarget
from components.naming import InvalidNameError, NameKind, Namer, name_tag
from components.protection import Lifecycle
from components.tunables import Problem, Tunables, tunable

TRAIL_ARN = re.compile(r"^arn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:\d{12}:trail/[A-Za-z0-9_.-]{3,128}$")
ACCOUNT_PLACEHOLDER = "0" * 12  # account ids are always 12 digits
LOG_PREFIX = "AWSLogs/"  # CloudTrail writes logs and digests under AWSLogs/<account>/
TRAIL_LOG_WRITE_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")


def trail_bucket_name(namer: Namer, account_id: str) -> str:
    """`{prefix}-trail-{account}-{suffix}`: bucket names are global, the account makes it ours."""
    return namer.name(f"trail-{account_id}", NameKind.S3_BUCKET)


def trail_bucket_arn(namer: Namer, ctx: AwsContext) -> pulumi.Output[str]:
    """The trail bucket's ARN before it exists (its name is fixed up front)."""
    name = pulumi.Output.from_input(ctx.account_id).apply(
        lambda account: trail_bucket_name(namer, account)
    )
    return pulumi.Output.concat("arn:", ctx.partition, ":s3:::", name)


class AuditTrailMode(StrEnum):
    CREATE = "CREATE"
    EXISTING = "EXISTING"
    OFF = "OFF"


@dataclass(frozen=True, kw_only=True)
class AuditTrailSettings(Tunables):
    """The audit trail's tunables (O3)."""

    TIER = "audit"

    mode: AuditTrailMode = tunable(
        "auditTrailMode",
        AuditTrailMode.CREATE,
        "CloudTrail: CREATE a trail, use an EXISTING organisation trail (give its ARN), or OFF "
        "(a logged opt-out) (O3).",
        choices=AuditTrailMode,
    )
    existing_trail_arn: str = tunable(
        "auditTrailExistingArn",
        "",
        "ARN of the existing trail when auditTrailMode is EXISTING.",
        allowed="empty, or a CloudTrail trail ARN when auditTrailMode is EXISTING",
    )
    transition_days: int = tunable(
        "auditLogTransitionDays",
        30,
        "Days before audit logs move to Glacier Instant Retrieval.",
        range=(1, 3650),
    )
    expiration_days: int = tunable(
        "auditLogExpirationDays",
        365,
        "Days before audit logs (and noncurrent versions) expire.",
        range=(1, 3650),
    )

    def rules(self) -> list[Problem]:
        problems = []
        existing = self.mode is AuditTrailMode.EXISTING
        if existing and not TRAIL_ARN.match(self.existing_trail_arn):
            problems.append(
                Problem(
                    "existing_trail_arn",
                    self.existing_trail_arn,
                    "a CloudTrail trail ARN (arn:<partition>:cloudtrail:"
                    "<region>:<account>:trail/<name>) when {mode} is EXISTING",
                )
            )
        if not existing and self.existing_trail_arn:
            problems.append(
                Problem(
                    "existing_trail_arn",
                    self.existing_trail_arn,
                    "empty unless {mode} is EXISTING (create or bring your own, not both)",
                )
            )
        if self.expiration_days <= self.transition_days:
            problems.append(
                Problem(
                    "expiration_days",
                    self.expiration_days,
                    f"more than {{transition_days}} ({self.transition_days})",
                )
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class AuditTrailArgs(AuditTrailSettings):
    """Inputs of `AuditTrail`: its settings plus what the stack wires in."""

    namer: Namer
    """Physical names of the trail, bucket, key alias, role and log group (required)."""
    context: AwsContext
    """Account, partition and region for ARNs and policy conditions (required)."""
    logs_key_arn: pulumi.Input[str] | None = None
    """CMK of the trail's CloudWatch log group (the platform logs key); required with CREATE."""
    log_retention_days: int = 90
    """Retention of the trail's CloudWatch log group; default 90."""
    access_log_target: AccessLogTarget | None = None
    """The stack's access-log bucket for the trail bucket's server access logs (FSBP S3.9),
    under `audit/`; default none."""
    protect_data: bool = False
    """False (default): the bucket is emptied and deleted on destroy and the key waits 7 days.
    True: the engine refuses to delete or replace the log bucket and the audit key, both are
    retained on delete, the bucket is never emptied and the key waits 30 days (G3)."""

    def validate(self) -> None:
        problems = self.tunable_problems()
        if self.mode is AuditTrailMode.CREATE:
            problems += self._create_problems()
        if problems:
            raise ValueError("AuditTrailArgs: " + "; ".join(problems))

    def _create_problems(self) -> list[str]:
        problems = []
        if self.logs_key_arn is None:
            problems.append("logs_key_arn=None: required with mode CREATE")
        problems += retention_problems("log_retention_days", self.log_retention_days)
        for check in (
            lambda: trail_bucket_name(self.namer, ACCOUNT_PLACEHOLDER),
            lambda: self.namer.name("trail", NameKind.CLOUDTRAIL),
        ):
            try:
                check()
            except InvalidNameError as error:
                problems.append(f"namer: {error}")
        return problems


def cloudtrail_key_grants(
    ctx: AwsContext, trail_arn: pulumi.Input[str], topic_arn: pulumi.Input[str]
) -> tuple[ServiceGrant, ...]:
    """What CloudTrail needs on the audit key, only on behalf of this trail.

    Decrypt is part of it because the bucket uses an S3 Bucket Key, for which CloudTrail must
    decrypt the bucket-level data key. Readers of the logs get kms:Decrypt through IAM
    policies, which the key's account-root statement enables.
    """
    this_trail = {"aws:SourceArn": trail_arn}
    any_trail_of_account = pulumi.Output.concat(
        "arn:", ctx.partition, ":cloudtrail:*:", ctx.account_id, ":trail/*"
    )
    return (
        ServiceGrant(
            sid="CloudTrailEncryptLogs",
            service=pulumi.Output.concat("cloudtrail.", ctx.dns_suffix),
            actions=("kms:GenerateDataKey*",),
            conditions={
                "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": any_trail_of_account},
                "StringEquals": this_trail,
            },
        ),
        ServiceGrant(
            sid="CloudTrailDescribeKeyAndBucketKey",
            service=pulumi.Output.concat("cloudtrail.", ctx.dns_suffix),
            actions=("kms:DescribeKey", "kms:Decrypt"),
            conditions={"StringEquals": this_trail},
        ),
        # Publishing to the encrypted notification topic (CloudTrail user guide, "Amazon SNS
        # topic policy for CloudTrail"); SNS names the topic in the encryption context.
        ServiceGrant(
            sid="CloudTrailNotifyEncryptedTopic",
            service=pulumi.Output.concat("cloudtrail.", ctx.dns_suffix),
            actions=("kms:GenerateDataKey*", "kms:Decrypt"),
            conditions={"StringEquals": {"kms:EncryptionContext:aws:sns:topicArn": topic_arn}},
        ),
    )


def trail_topic_policy(
    topic_arn: pulumi.Input[str], trail_arn: pulumi.Input[str], ctx: AwsContext
) -> pulumi.Output[str]:
    """Only this trail may publish its log-delivery notifications (confused-deputy guard)."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CloudTrailPublishesForThisTrail",
                    "Effect": "Allow",
                    "Principal": {"Service": pulumi.Output.concat("cloudtrail.", ctx.dns_suffix)},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
                }
            ],
        }
    )


def trail_bucket_policy(
    bucket_arn: pulumi.Input[str], trail_arn: pulumi.Input[str], ctx: AwsContext
) -> pulumi.Output[str]:
    """TLS only; CloudTrail may read the ACL and write its objects, for this trail only."""
    service = pulumi.Output.concat("cloudtrail.", ctx.dns_suffix)
    statements: list[dict[str, Any]] = [
        deny_insecure_transport(bucket_arn),
        {
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "s3:GetBucketAcl",
            "Resource": bucket_arn,
            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
        },
        {
            "Sid": "CloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(bucket_arn, "/", LOG_PREFIX, ctx.account_id, "/*"),
            "Condition": {
                "StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    "aws:SourceArn": trail_arn,
                }
            },
        },
    ]
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


class AuditTrail(pulumi.ComponentResource):
    """CloudTrail for the account (O3): create one, point at an existing one, or none (logged).

    Attributes are `None` where the mode creates nothing: `trail_arn` (CREATE or EXISTING),
    `bucket_name`, `key_arn`, `log_group_name` (CREATE only).
    """

    trail_arn: pulumi.Output[str] | None
    bucket_name: pulumi.Output[str] | None
    key_arn: pulumi.Output[str] | None
    log_group_name: pulumi.Output[str] | None
    notification_topic_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: AuditTrailArgs, opts: pulumi.ResourceOptions | None = None):
        args.validate()
        super().__init__("media:audit:AuditTrail", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self.trail_arn = self.bucket_name = self.key_arn = self.log_group_name = None
        self.notification_topic_arn = None
        if args.mode is AuditTrailMode.EXISTING:
            self.trail_arn = pulumi.Output.from_input(args.existing_trail_arn)
        elif args.mode is AuditTrailMode.OFF:
            pulumi.log.warn(
                "auditTrailMode=OFF: this stack creates no CloudTrail trail; API "
                "activity is audited only if the account has another trail (O3)",
                resource=self,
            )
        else:
            self._create()
        self.register_outputs(
            {
                "trail_arn": self.trail_arn,
                "bucket_name": self.bucket_name,
                "key_arn": self.key_arn,
                "log_group_name": self.log_group_name,
                "notification_topic_arn": self.notification_topic_arn,
            }
        )

    def _create(self) -> None:
        args, name, ctx = self._args, self._name, self._args.context
        trail_name = args.namer.name("trail", NameKind.CLOUDTRAIL)
        trail_arn = pulumi.Output.concat(
            "arn:",
            ctx.partition,
            ":cloudtrail:",
            ctx.region,
            ":",
            ctx.account_id,
            ":trail/",
            trail_name,
        )
        topic_name = args.namer.name("trail-notifications", NameKind.SNS_TOPIC)
        topic_arn = pulumi.Output.concat(
            "arn:", ctx.partition, ":sns:", ctx.region, ":", ctx.account_id, ":", topic_name
        )
        key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(
                purpose="audit-key",
                context=ctx,
                namer=args.namer,
                deletion_window_days=Lifecycle(args.protect_data).key_deletion_window_days,
                service_grants=cloudtrail_key_grants(ctx, trail_arn, topic_arn),
                protect_data=args.protect_data,
            ),
            self._child,
        )
        bucket, bucket_policy = self._bucket(key, trail_arn)
        topic, topic_policy = self._notifications(topic_name, key, trail_arn)
        group = encrypted_log_group(
            f"{name}-log-group",
            name=args.namer.path("/aws/cloudtrail/", "trail"),
            kms_key_arn=args.logs_key_arn,
            retention_days=args.log_retention_days,
            parent=self,
        )
        role = service_role(
            f"{name}-logs-role",
            role="trail-logs",
            service="cloudtrail.amazonaws.com",
            ctx=ctx,
            namer=args.namer,
            parent=self,
            source_arn=trail_arn,
        )
        role_policy = attach_grants(
            f"{name}-logs-policy",
            role,
            [
                Grant(
                    sid="TrailWritesItsLogGroup",
                    actions=TRAIL_LOG_WRITE_ACTIONS,
                    resources=(pulumi.Output.concat(group.arn, ":log-stream:*"),),
                )
            ],
            parent=self,
        )
        self.trail = aws.cloudtrail.Trail(
            f"{name}-trail",
            name=trail_name,
            s3_bucket_name=bucket.bucket,
            kms_key_id=key.arn,
            enable_log_file_validation=True,
            is_multi_region_trail=True,
            include_global_service_events=True,
            # CloudTrail requires the log-stream wildcard on the group ARN.
            cloud_watch_logs_group_arn=pulumi.Output.concat(group.arn, ":*"),
            cloud_watch_logs_role_arn=role.arn,
            sns_topic_name=topic.arn,
            tags=name_tag(trail_name),
            # CloudTrail checks the bucket and topic policies when the trail is created.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[bucket_policy, role_policy, topic_policy]
            ),
        )
        self.trail_arn = self.trail.arn
        self.bucket_name = bucket.bucket
        self.key_arn = key.arn
        self.log_group_name = group.name
        self.notification_topic_arn = topic.arn

    def _notifications(
        self, topic_name: str, key: EncryptionKey, trail_arn: pulumi.Output[str]
    ) -> tuple[aws.sns.Topic, aws.sns.TopicPolicy]:
        """A topic told of every log file delivered (for a SIEM or a digest checker to
        subscribe), encrypted with the audit key."""
        topic = aws.sns.Topic(
            f"{self._name}-notifications",
            name=topic_name,
            kms_master_key_id=key.arn,
            tags=name_tag(topic_name),
            opts=self._child,
        )
        policy = aws.sns.TopicPolicy(
            f"{self._name}-notifications-policy",
            arn=topic.arn,
            policy=trail_topic_policy(topic.arn, trail_arn, self._args.context),
            opts=self._child,
        )
        return topic, policy

    def _bucket(
        self, key: EncryptionKey, trail_arn: pulumi.Output[str]
    ) -> tuple[aws.s3.Bucket, aws.s3.BucketPolicy]:
        args, name = self._args, self._name
        physical = pulumi.Output.from_input(args.context.account_id).apply(
            lambda account: trail_bucket_name(args.namer, account)
        )
        made = private_bucket(
            f"{name}-bucket", physical=physical, protect_data=args.protect_data, parent=self
        )
        bucket = made.bucket
        versioned_and_key_encrypted(f"{name}-bucket", bucket, key.arn, parent=self)
        self._lifecycle(bucket)
        target = args.access_log_target
        if target is not None:
            aws.s3.BucketLogging(
                f"{name}-bucket-access-logging",
                bucket=bucket.id,
                target_bucket=target.bucket_name,
                target_prefix="audit/",
                # PutBucketLogging checks that the target admits log delivery.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[target.ready]),
            )
        policy = aws.s3.BucketPolicy(
            f"{name}-bucket-policy",
            bucket=bucket.id,
            policy=trail_bucket_policy(bucket.arn, trail_arn, args.context),
            # S3 rejects a policy while the public-access block is still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[made.public_access_block]),
        )
        return bucket, policy

    def _lifecycle(self, bucket: aws.s3.Bucket) -> None:
        args = self._args
        aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-bucket-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "audit-log-retention",
                    "status": "Enabled",
                    "filter": {"prefix": LOG_PREFIX},
                    "transitions": [{"days": args.transition_days, "storage_class": "GLACIER_IR"}],
                    "expiration": {"days": args.expiration_days},
                    "noncurrent_version_transitions": [
                        {"noncurrent_days": args.transition_days, "storage_class": "GLACIER_IR"}
                    ],
                    "noncurrent_version_expiration": {"noncurrent_days": args.expiration_days},
                },
                # Every object, not only the logs' prefix: an upload abandoned anywhere in the
                # bucket would otherwise be stored (and charged) for ever.
                {
                    "id": "abort-incomplete-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                },
            ],
            opts=self._child,
        )
