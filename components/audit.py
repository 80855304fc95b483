"""Audit trail: CloudTrail to an encrypted, versioned, private bucket and to CloudWatch (O3).

The trail's name is fixed up front so its ARN can be written into the bucket and key
policies (`aws:SourceArn`) without a dependency cycle; the trail then waits for the bucket
policy, because CloudTrail checks the policy when the trail is created.

With `replica_region` the bucket is replicated (S3 cross-region replication) to a bucket of
the same make in that region, under a key of its own there: the trail survives the loss of
the stack's region, and an object deleted from the source stays in the replica (delete
markers are not replicated; each bucket expires its own objects by the same lifecycle).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.backup import REGION_NAME
from components.buckets import (
    PrivateBucket,
    deny_insecure_transport,
    private_bucket,
    versioned_and_key_encrypted,
)
from components.iam import Grant, attach_grants, service_role
from components.kms import AwsContext, EncryptionKey, EncryptionKeyArgs, ServiceGrant
from components.logs import encrypted_log_group, retention_problems
from components.media_storage import AccessLogTarget, log_bucket_policy, media_bucket_name
from components.naming import ACCESS_LOG_BUCKET, InvalidNameError, NameKind, Namer, name_tag
from components.protection import Lifecycle
from components.tunables import Problem, Tunables, render, tunable

TRAIL_ARN = re.compile(r"^arn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:\d{12}:trail/[A-Za-z0-9_.-]{3,128}$")
ACCOUNT_PLACEHOLDER = "0" * 12  # account ids are always 12 digits
LOG_PREFIX = "AWSLogs/"  # CloudTrail writes logs and digests under AWSLogs/<account>/
TRAIL_LOG_WRITE_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
REPLICATION_ROLE = "trail-replication"
ACCESS_LOG_PREFIX = "audit/"
ABORT_INCOMPLETE_UPLOAD_DAYS = 7


def trail_bucket_name(namer: Namer, account_id: str) -> str:
    """`{prefix}-trail-{account}-{suffix}`: bucket names are global, the account makes it ours."""
    return namer.name(f"trail-{account_id}", NameKind.S3_BUCKET)


def trail_replica_bucket_name(namer: Namer, account_id: str, region: str) -> str:
    """`{prefix}-trail-{account}-{region}-{suffix}`: the trail bucket's name with the replica's
    region in it, so that another replica region is a new name rather than one S3 has not yet
    released. (A longer word such as `trail-replica` would overflow S3's 63 characters with the
    longest prefix, suffix and region names.)"""
    return namer.name(f"trail-{account_id}-{region}", NameKind.S3_BUCKET)


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
    replica_region: str = tunable(
        "auditReplicaRegion",
        "",
        "A second region the trail bucket is replicated to (S3 cross-region replication into a "
        "bucket under a key of its own there, kept as long as the source); empty for none. "
        "Needs auditTrailMode CREATE.",
        check=lambda region: region == "" or bool(REGION_NAME.match(region)),
        allowed="empty or a region name such as eu-west-1",
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
        if self.replica_region and self.mode is not AuditTrailMode.CREATE:
            problems.append(
                Problem(
                    "replica_region",
                    self.replica_region,
                    "empty unless {mode} is CREATE (only a bucket this stack creates is "
                    "replicated)",
                )
            )
        return problems

    @property
    def replicates(self) -> bool:
        return self.mode is AuditTrailMode.CREATE and bool(self.replica_region)


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

    def validate(self, region: str | None = None) -> None:
        """`region`: the stack's, when known, which the replica must not share."""
        problems = self.tunable_problems()
        if region is not None and self.replica_region == region:
            problems.append(
                render(
                    "replica_region",
                    self.replica_region,
                    "a region other than the stack's (a replica beside the original "
                    "protects nothing)",
                )
            )
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
            *self._replica_name_checks(),
        ):
            try:
                check()
            except InvalidNameError as error:
                problems.append(f"namer: {error}")
        return problems

    def _replica_name_checks(self) -> tuple[Callable[[], str], ...]:
        region = self.replica_region
        if not REGION_NAME.match(region):  # empty, or already named by its own rule
            return ()
        return (
            lambda: trail_replica_bucket_name(self.namer, ACCOUNT_PLACEHOLDER, region),
            lambda: media_bucket_name(self.namer, ACCESS_LOG_BUCKET, ACCOUNT_PLACEHOLDER, region),
            lambda: self.namer.name(REPLICATION_ROLE, NameKind.IAM_ROLE),
        )


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


def trail_lifecycle_rules(settings: AuditTrailSettings) -> list[dict[str, Any]]:
    """The trail bucket's retention, the same on the source and on the replica (replication
    copies objects, never lifecycle actions: each bucket ages its own)."""
    return [
        {
            "id": "audit-log-retention",
            "status": "Enabled",
            "filter": {"prefix": LOG_PREFIX},
            "transitions": [{"days": settings.transition_days, "storage_class": "GLACIER_IR"}],
            "expiration": {"days": settings.expiration_days},
            "noncurrent_version_transitions": [
                {"noncurrent_days": settings.transition_days, "storage_class": "GLACIER_IR"}
            ],
            "noncurrent_version_expiration": {"noncurrent_days": settings.expiration_days},
        },
        abort_incomplete_uploads_rule(),
    ]


def abort_incomplete_uploads_rule() -> dict[str, Any]:
    """Every object, not only the logs' prefix: an upload abandoned anywhere in a bucket
    would otherwise be stored (and charged) for ever."""
    return {
        "id": "abort-incomplete-uploads",
        "status": "Enabled",
        "filter": {"prefix": ""},
        "abort_incomplete_multipart_upload": {
            "days_after_initiation": ABORT_INCOMPLETE_UPLOAD_DAYS
        },
    }


def replication_rule(
    replica_bucket_arn: pulumi.Input[str], replica_key_arn: pulumi.Input[str]
) -> dict[str, Any]:
    """Every object of the trail bucket to the replica, re-encrypted there with its own key.

    - Filter on the empty prefix: logs and digest files alike (a V2 rule; an explicit "" so
      the provider sends it and shows no diff, hashicorp/terraform-provider-aws#23487).
    - Delete markers are not replicated: the replica is the copy a deletion in the source
      (by mistake or by an intruder covering tracks) must not reach. CloudTrail never deletes,
      and the source's lifecycle expirations are never replicated anyway.
    - SSE-KMS objects (the log files, under the audit key) are opt-in for replication
      (`sse_kms_encrypted_objects`), and then need the destination's key.
    - No S3 Replication Time Control: it adds a per-GB fee (and paid metrics) for a
      15-minute SLA, while CloudTrail itself delivers every 5 minutes or so and the replica
      serves recovery and investigation, not a live reader.
    """
    return {
        "id": "trail-to-replica",
        "status": "Enabled",
        "filter": {"prefix": ""},
        "delete_marker_replication": {"status": "Disabled"},
        "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
        "destination": {
            "bucket": replica_bucket_arn,
            "encryption_configuration": {"replica_kms_key_id": replica_key_arn},
        },
    }


def _s3_encryption_context(
    region: pulumi.Input[str], bucket_arn: pulumi.Input[str], ctx: AwsContext
) -> dict[str, Any]:
    """A key used only through S3 of `region`, only for objects of one bucket. With an S3
    Bucket Key the context is the bucket's ARN, without one the object's (S3 user guide,
    "Replicating encrypted objects": "Amazon S3 Bucket Keys and replication")."""
    return {
        "StringEquals": {
            "kms:ViaService": pulumi.Output.concat("s3.", region, ".", ctx.dns_suffix)
        },
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")]
        },
    }


@dataclass(frozen=True)
class ReplicationEnds:
    """The two buckets and keys a replication joins."""

    source_bucket_arn: pulumi.Input[str]
    source_key_arn: pulumi.Input[str]
    replica_bucket_arn: pulumi.Input[str]
    replica_key_arn: pulumi.Input[str]
    replica_region: str


def replication_grants(ends: ReplicationEnds, ctx: AwsContext) -> list[Grant]:
    """What S3 needs to replicate the trail bucket, on exactly the two buckets and keys (S3
    user guide, "Setting up permissions for live replication" and "Replicating encrypted
    objects"). No s3:ReplicateDelete: delete markers are not replicated. The replica key's
    kms:Decrypt is S3 checking the replica's Bucket Key; the keys' policies need nothing, as
    their account-root statement lets this account's IAM policies grant them."""
    source, replica = ends.source_bucket_arn, ends.replica_bucket_arn
    return [
        Grant(
            "ReadReplicationConfiguration",
            ("s3:GetReplicationConfiguration", "s3:ListBucket"),
            (source,),
        ),
        Grant(
            "ReadSourceVersions",
            (
                "s3:GetObjectVersionForReplication",
                "s3:GetObjectVersionAcl",
                "s3:GetObjectVersionTagging",
            ),
            (pulumi.Output.concat(source, "/*"),),
        ),
        Grant(
            "WriteReplicas",
            ("s3:ReplicateObject", "s3:ReplicateTags"),
            (pulumi.Output.concat(replica, "/*"),),
        ),
        Grant(
            "DecryptSourceObjects",
            ("kms:Decrypt",),
            (ends.source_key_arn,),
            conditions=_s3_encryption_context(ctx.region, source, ctx),
        ),
        Grant(
            "EncryptReplicas",
            ("kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"),
            (ends.replica_key_arn,),
            conditions=_s3_encryption_context(ends.replica_region, replica, ctx),
        ),
    ]


class AuditTrail(pulumi.ComponentResource):
    """CloudTrail for the account (O3): create one, point at an existing one, or none (logged).

    Attributes are `None` where the mode creates nothing: `trail_arn` (CREATE or EXISTING),
    `bucket_name`, `key_arn`, `log_group_name` (CREATE only), `replica_bucket_name` (CREATE
    with a replica region).
    """

    trail_arn: pulumi.Output[str] | None
    bucket_name: pulumi.Output[str] | None
    key_arn: pulumi.Output[str] | None
    log_group_name: pulumi.Output[str] | None
    notification_topic_arn: pulumi.Output[str] | None
    replica_bucket_name: pulumi.Output[str] | None

    def __init__(self, name: str, args: AuditTrailArgs, opts: pulumi.ResourceOptions | None = None):
        region = args.context.region if isinstance(args.context.region, str) else None
        args.validate(region)
        super().__init__("media:audit:AuditTrail", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self.trail_arn = self.bucket_name = self.key_arn = self.log_group_name = None
        self.notification_topic_arn = self.replica_bucket_name = None
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
                "replica_bucket_name": self.replica_bucket_name,
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
        versioning = versioned_and_key_encrypted(f"{name}-bucket", bucket, key.arn, parent=self)
        self._lifecycle(f"{name}-bucket-lifecycle", bucket)
        target = args.access_log_target
        if target is not None:
            self._access_logging(f"{name}-bucket-access-logging", bucket, target)
        if args.replicates:
            self._replicate(bucket, key, versioning)
        policy = aws.s3.BucketPolicy(
            f"{name}-bucket-policy",
            bucket=bucket.id,
            policy=trail_bucket_policy(bucket.arn, trail_arn, args.context),
            # S3 rejects a policy while the public-access block is still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[made.public_access_block]),
        )
        return bucket, policy

    def _lifecycle(
        self, resource_name: str, bucket: aws.s3.Bucket, region: str | None = None
    ) -> None:
        aws.s3.BucketLifecycleConfiguration(
            resource_name,
            bucket=bucket.id,
            rules=trail_lifecycle_rules(self._args),
            region=region,
            opts=self._child,
        )

    def _access_logging(
        self,
        resource_name: str,
        bucket: aws.s3.Bucket,
        target: AccessLogTarget,
        region: str | None = None,
    ) -> None:
        aws.s3.BucketLogging(
            resource_name,
            bucket=bucket.id,
            target_bucket=target.bucket_name,
            target_prefix=ACCESS_LOG_PREFIX,
            region=region,
            # PutBucketLogging checks that the target admits log delivery.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[target.ready]),
        )

    # -- the replica (replica_region) ------------------------------------------------------
    def _replicate(
        self, source: aws.s3.Bucket, source_key: EncryptionKey, versioning: aws.s3.BucketVersioning
    ) -> None:
        """The replica bucket and key in the replica region, and the source's replication."""
        key = self._replica_key()
        replica, replica_versioning = self._replica_bucket(key)
        ends = ReplicationEnds(
            source_bucket_arn=source.arn,
            source_key_arn=source_key.arn,
            replica_bucket_arn=replica.arn,
            replica_key_arn=key.arn,
            replica_region=self._args.replica_region,
        )
        role, policy = self._replication_role(ends)
        aws.s3.BucketReplicationConfig(
            f"{self._name}-bucket-replication",
            bucket=source.id,
            role=role.arn,
            rules=[replication_rule(replica.arn, key.arn)],
            # S3 refuses a replication configuration until both buckets are versioned; the
            # role's policy is in place before the first object is replicated.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[versioning, replica_versioning, policy]
            ),
        )
        self.replica_bucket_name = replica.bucket

    def _replica_key(self) -> EncryptionKey:
        args = self._args
        return EncryptionKey(
            f"{self._name}-replica-key",
            EncryptionKeyArgs(
                purpose="trail-replica-key",
                context=args.context,
                namer=args.namer,
                deletion_window_days=Lifecycle(args.protect_data).key_deletion_window_days,
                protect_data=args.protect_data,
                region=args.replica_region,
            ),
            self._child,
        )

    def _replication_role(self, ends: ReplicationEnds) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        args, name = self._args, self._name
        role = service_role(
            f"{name}-replication-role",
            role=REPLICATION_ROLE,
            service="s3.amazonaws.com",
            ctx=args.context,
            namer=args.namer,
            parent=self,
            # AWS documents S3 replication's trust without conditions and does not say S3
            # sends aws:SourceAccount when it assumes the role: a condition it does not send
            # would fail every replication quietly. A role cannot be passed to another
            # account's bucket, so the condition would guard nothing here.
            source_account=False,
        )
        grants = replication_grants(ends, args.context)
        return role, attach_grants(f"{name}-replication-policy", role, grants, parent=self)

    def _replica_bucket(self, key: EncryptionKey) -> tuple[aws.s3.Bucket, aws.s3.BucketVersioning]:
        args, name = self._args, self._name
        region = args.replica_region
        made = self._bucket_in_replica_region(
            f"{name}-replica-bucket",
            lambda account: trail_replica_bucket_name(args.namer, account, region),
        )
        bucket = made.bucket
        versioning = versioned_and_key_encrypted(
            f"{name}-replica-bucket", bucket, key.arn, parent=self, region=region
        )
        self._lifecycle(f"{name}-replica-bucket-lifecycle", bucket, region)
        aws.s3.BucketPolicy(
            f"{name}-replica-bucket-policy",
            bucket=bucket.id,
            policy=pulumi.Output.json_dumps(
                {"Version": "2012-10-17", "Statement": [deny_insecure_transport(bucket.arn)]}
            ),
            region=region,
            # S3 rejects a policy while the public-access block is still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[made.public_access_block]),
        )
        # Server access logs (FSBP S3.9) go to a bucket in the same region, as S3 requires.
        target = self._replica_log_target(bucket)
        self._access_logging(f"{name}-replica-bucket-access-logging", bucket, target, region)
        return bucket, versioning

    def _bucket_in_replica_region(
        self, resource_name: str, physical_of: Callable[[str], str]
    ) -> PrivateBucket:
        """A private bucket in the replica region named `physical_of(account)`."""
        args = self._args
        return private_bucket(
            resource_name,
            physical=pulumi.Output.from_input(args.context.account_id).apply(physical_of),
            protect_data=args.protect_data,
            parent=self,
            region=args.replica_region,
        )

    def _replica_log_target(self, replica: aws.s3.Bucket) -> AccessLogTarget:
        """The replica region's access-log bucket, made like the stack region's (the media
        storage's): private, SSE-S3 (see MediaStorage._log_bucket for why not a CMK), logs
        kept `log_retention_days`, delivery admitted for the replica only."""
        args, name = self._args, self._name
        region = args.replica_region
        made = self._bucket_in_replica_region(
            f"{name}-replica-logs",
            lambda account: media_bucket_name(args.namer, ACCESS_LOG_BUCKET, account, region),
        )
        logs = made.bucket
        self._access_log_retention(logs)
        policy = aws.s3.BucketPolicy(
            f"{name}-replica-logs-policy",
            bucket=logs.id,
            policy=log_bucket_policy(logs.arn, [replica.arn], args.context),
            region=region,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[made.public_access_block]),
        )
        return AccessLogTarget(bucket_name=logs.bucket, ready=policy)

    def _access_log_retention(self, logs: aws.s3.Bucket) -> None:
        """SSE-S3, expiry after `log_retention_days` and aborted uploads, as the stack
        region's access-log bucket has them."""
        args, name, region = self._args, self._name, self._args.replica_region
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-replica-logs-encryption",
            bucket=logs.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            region=region,
            opts=self._child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-replica-logs-lifecycle",
            bucket=logs.id,
            rules=[
                abort_incomplete_uploads_rule(),
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": args.log_retention_days},
                },
            ],
            region=region,
            opts=self._child,
        )
