"""`MediaStorage`: the media path's ingest and media buckets and their access logs (M1, M2, M6).

    creator ──presigned multipart PUT──▶ ingest bucket (sources/<video>/source)
    worker  ──GetObject──▶ ingest ──transcode──▶ media bucket (media/<video>/v<n>/…)
    both buckets ──server access logs──▶ access-log bucket

Both data buckets are private (public access blocked, ACLs disabled), versioned, TLS-only and
encrypted with a customer-managed key of their own, the *media key*. It is separate from the
platform's other keys because the delivery tier's CloudFront distribution (origin access
control, M7) is granted `kms:Decrypt` on exactly this key: with its own key, what the
distribution may decrypt is the media and nothing else (no queue, log, secret or database key
is ever in that grant). The distribution is built after the storage (it reads from it), so its
ARN arrives as an output resolved later and lands only in the media bucket's policy and the
media key's policy, each a resource of its own that nothing else waits for.

Access is granted, not pre-wired: `grant_upload` gives the API function exactly what a
presigned multipart upload needs, `grant_transcode` what the worker needs, each on the exact
prefixes. The bucket policies *deny* (no TLS, another key, customer-provided keys): an
identity policy is enough inside one account, and a policy that only denies never locks the
deployer or the account's administrators out of their own buckets. The one allow is the media
bucket's for the distribution, on `media/*` and only for that distribution's ARN.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

import pulumi
import pulumi_aws as aws

from components.buckets import deny_insecure_transport, private_bucket, versioned_and_key_encrypted
from components.iam import Grant, attach_grants
from components.jobs import DEAD_LETTER_RETENTION_SECONDS
from components.kms import AwsContext, EncryptionKey, EncryptionKeyArgs, ServiceGrant
from components.naming import ACCESS_LOG_BUCKET, InvalidNameError, NameKind, Namer
from components.protection import Lifecycle
from components.tunables import Tunables, tunable
from services.contract import (
    CHECKSUM_HEADER,
    CONTENT_TYPE_PATTERN,
    DEFAULT_UPLOAD_CONTENT_TYPES,
    MEDIA_PREFIX,
    SOURCE_PREFIX,
    UPLOAD_MAX_BYTES_CEILING,
    UPLOAD_MAX_BYTES_DEFAULT,
    UPLOAD_URL_TTL_DEFAULT,
    UPLOAD_URL_TTL_MAX,
)

GrantFn = Callable[[str, aws.iam.Role], aws.iam.RolePolicy]

ACCOUNT_PLACEHOLDER = "0" * 12  # account ids are always 12 digits
ABORT_INCOMPLETE_UPLOAD_DAYS = 1
"""Parts of an upload nobody completed are billed until aborted. A day is far longer than
the part URLs live (at most an hour, re-issued per batch), so only abandoned uploads go."""
# Sources go GLACIER_IR rather than DEEP_ARCHIVE: re-processing (a new ladder, a failed job
# redriven) reads the source with a plain GetObject in milliseconds, where DEEP_ARCHIVE would
# need a restore of 12-48 hours and a restore step in the worker.
ARCHIVE_STORAGE_CLASS = "GLACIER_IR"
SOURCE_SAFETY_EXPIRATION_DAYS = DEAD_LETTER_RETENTION_SECONDS // 86_400
"""With `sourceRetention=delete` the worker deletes a source once processed; one that was
never processed (a dead-lettered job) expires once its dead-letter message would have, so a
redrive within the DLQ's retention still finds it."""
CORS_MAX_AGE_SECONDS = 3000
_ORIGIN = re.compile(r"^(\*|https://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?)$")
_LOCAL_ORIGIN = re.compile(r"^http://(localhost|127\.0\.0\.1)(:\d{1,5})?$")


class SourceRetention(StrEnum):
    ARCHIVE = "archive"
    DELETE = "delete"


def _content_types_ok(types: tuple[str, ...]) -> bool:
    return (
        bool(types)
        and len(set(types)) == len(types)
        and all(isinstance(t, str) and re.match(CONTENT_TYPE_PATTERN, t) for t in types)
    )


def _origins_ok(origins: tuple[str, ...]) -> bool:
    return len(set(origins)) == len(origins) and all(
        isinstance(o, str) and (_ORIGIN.match(o) or _LOCAL_ORIGIN.match(o)) for o in origins
    )


def media_bucket_name(namer: Namer, word: str, account_id: str, region: str) -> str:
    """`{prefix}-{word}-{account}-{region}-{suffix}`: S3 names are global across accounts, so
    the account and region make them ours; checked against S3's 3-63 rules (G2).

    Not `bucket_namespace="account-regional"`: its names must end `-<account>-<region>-an`,
    and every physical name here ends with the stack's suffix (G2)."""
    return namer.name(f"{word}-{account_id}-{region}", NameKind.S3_BUCKET)


@dataclass(frozen=True, kw_only=True)
class MediaStorageSettings(Tunables):
    """The media buckets' and uploads' tunables (M1, M2)."""

    TIER = "media"

    upload_max_bytes: int = tunable(
        "uploadMaxBytes",
        UPLOAD_MAX_BYTES_DEFAULT,
        "Largest upload (bytes) the API accepts and the worker processes (M1, M3).",
        range=(1, UPLOAD_MAX_BYTES_CEILING),
    )
    upload_content_types: tuple[str, ...] = tunable(
        "uploadContentTypes",
        DEFAULT_UPLOAD_CONTENT_TYPES,
        "Content types an upload may declare (M1).",
        check=_content_types_ok,
        allowed="one or more distinct lowercase media types such as video/mp4",
    )
    upload_url_ttl_seconds: int = tunable(
        "uploadUrlTtlSeconds",
        UPLOAD_URL_TTL_DEFAULT,
        "Lifetime of each presigned part URL (M1).",
        range=(60, UPLOAD_URL_TTL_MAX),
    )
    upload_cors_origins: tuple[str, ...] = tunable(
        "uploadCorsOrigins",
        (),
        "Browser origins allowed to PUT parts into the ingest bucket; empty: no CORS (M1).",
        check=_origins_ok,
        allowed="distinct origins https://host[:port], http://localhost[:port] or *",
    )
    source_retention: SourceRetention = tunable(
        "sourceRetention",
        SourceRetention.ARCHIVE,
        "Sources after processing: archive (to Glacier Instant Retrieval after "
        "sourceArchiveAfterDays) or delete (by the worker once processed) (M2).",
        choices=SourceRetention,
    )
    source_archive_after_days: int = tunable(
        "sourceArchiveAfterDays",
        30,
        "Days before a source moves to Glacier Instant Retrieval (sourceRetention=archive).",
        range=(1, 3650),
    )
    noncurrent_version_days: int = tunable(
        "noncurrentVersionDays",
        30,
        "Days an overwritten or deleted object version is kept before it expires.",
        range=(1, 3650),
    )

    @property
    def deletes_sources(self) -> bool:
        return self.source_retention is SourceRetention.DELETE


@dataclass(frozen=True, kw_only=True)
class MediaStorageArgs(MediaStorageSettings):
    """Inputs of `MediaStorage`: its settings plus what the stack wires in."""

    namer: Namer
    """Physical names of the buckets and the key alias (required)."""
    context: AwsContext
    """Account, partition and region: bucket names and policy conditions (required)."""
    log_retention_days: int = 30
    """Days the access logs are kept (the stack's log retention); default 30."""
    protect_data: bool = False
    """False (default): the buckets are emptied and deleted on destroy and the key waits 7
    days. True: the engine refuses to delete or replace the three buckets and the key, they
    are retained on delete, never emptied, and the key waits 30 days (G3)."""
    distribution_arn: pulumi.Input[str] | None = None
    """The one CloudFront distribution that reads the media (M7): the media bucket's policy
    lets it GetObject under `media/` and the media key's policy lets it decrypt, each only
    for this ARN. Typically a `pulumi.deferred_output()` resolved once the distribution
    exists. Default None: nothing outside the account's roles reads the media."""
    logged_bucket_arns: tuple[pulumi.Input[str], ...] = ()
    """Other buckets of the stack whose server access logs the access-log bucket accepts
    (the audit bucket, FSBP S3.9); default none."""

    def validate(self) -> None:
        problems = self.tunable_problems()
        if self.log_retention_days < 1:
            problems.append(f"log_retention_days={self.log_retention_days}: allowed >= 1")
        region = self.context.region
        if isinstance(region, str):
            for word in ("ingest", "media", ACCESS_LOG_BUCKET):
                try:
                    media_bucket_name(self.namer, word, ACCOUNT_PLACEHOLDER, region)
                except InvalidNameError as error:
                    problems.append(f"namer: {error}")
        if problems:
            raise ValueError("MediaStorageArgs: " + "; ".join(problems))


def data_bucket_policy(
    bucket_arn: pulumi.Input[str],
    key_arn: pulumi.Input[str],
    extra: tuple[dict[str, Any], ...] = (),
) -> pulumi.Output[str]:
    """TLS only; every object under the media key. Only denies, so nobody is locked out.

    The default encryption already applies the media key when a request names none; these
    denies stop a writer (a presigned URL's holder included) from choosing SSE-S3, another
    KMS key, or a key of their own (SSE-C), any of which would leave an object the worker or
    the distribution cannot read. The services send no encryption headers at all; a writer
    that names the key must name it by ARN (S3 compares the header as given, so a key id or
    an alias is refused)."""
    objects = pulumi.Output.concat(bucket_arn, "/*")
    statements = [
        deny_insecure_transport(bucket_arn),
        {
            "Sid": "DenyOtherEncryption",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {
                "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}
            },
        },
        {
            "Sid": "DenyOtherKmsKey",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {
                "StringNotEqualsIfExists": {
                    "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn
                }
            },
        },
        {
            "Sid": "DenyCustomerProvidedKeys",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}},
        },
        *extra,
    ]
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


CLOUDFRONT_PRINCIPAL = "cloudfront.amazonaws.com"


def distribution_read_statement(
    bucket_arn: pulumi.Input[str], distribution_arn: pulumi.Input[str]
) -> dict[str, Any]:
    """Origin access control: CloudFront may read renditions, only for this distribution
    (PITFALLS 126). The one allow of the media bucket."""
    return {
        "Sid": "AllowDistributionReadMedia",
        "Effect": "Allow",
        "Principal": {"Service": CLOUDFRONT_PRINCIPAL},
        "Action": "s3:GetObject",
        "Resource": pulumi.Output.concat(bucket_arn, "/", MEDIA_PREFIX, "*"),
        "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
    }


def distribution_key_grants(
    distribution_arn: pulumi.Input[str] | None,
) -> tuple[ServiceGrant, ...]:
    """SSE-KMS objects behind origin access control: CloudFront decrypts with the media key,
    only for this distribution (PITFALLS 127). Decrypt alone: it never writes."""
    if distribution_arn is None:
        return ()
    return (
        ServiceGrant(
            sid="AllowDistributionDecryptMedia",
            service=CLOUDFRONT_PRINCIPAL,
            actions=("kms:Decrypt",),
            conditions={"StringEquals": {"AWS:SourceArn": distribution_arn}},
        ),
    )


def log_bucket_policy(
    log_bucket_arn: pulumi.Input[str],
    source_bucket_arns: list[pulumi.Input[str]],
    ctx: AwsContext,
) -> pulumi.Output[str]:
    """TLS only; S3's logging service may write, only for the given buckets of this account.

    With ACLs disabled (BucketOwnerEnforced) a bucket policy is the only way to admit log
    delivery; PutBucketLogging on a source fails until it is in place."""
    statements = [
        deny_insecure_transport(log_bucket_arn),
        {
            "Sid": "S3ServerAccessLogsDelivery",
            "Effect": "Allow",
            "Principal": {"Service": pulumi.Output.concat("logging.s3.", ctx.dns_suffix)},
            "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(log_bucket_arn, "/*"),
            "Condition": {
                "ArnLike": {"aws:SourceArn": source_bucket_arns},
                "StringEquals": {"aws:SourceAccount": ctx.account_id},
            },
        },
    ]
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def s3_via(ctx: AwsContext) -> dict[str, Any]:
    """The media key is used only when S3 (of this region) calls KMS for the caller."""
    return {
        "StringEquals": {
            "kms:ViaService": pulumi.Output.concat("s3.", ctx.region, ".", ctx.dns_suffix)
        }
    }


def list_sources(ingest_arn: pulumi.Input[str]) -> Grant:
    """ListBucket on the ingest bucket, for keys under `sources/` only: without it S3 answers
    a read of a missing key with 403, and a missing source looks like a denied one."""
    return Grant(
        "ListSources",
        ("s3:ListBucket",),
        (ingest_arn,),
        conditions={"StringLike": {"s3:prefix": [SOURCE_PREFIX, f"{SOURCE_PREFIX}*"]}},
    )


def upload_grants(
    ingest_arn: pulumi.Input[str], key_arn: pulumi.Input[str], ctx: AwsContext
) -> list[Grant]:
    """What the API function signs presigned multipart uploads with (PITFALLS 115, 116).

    Initiate, UploadPart and Complete are all `s3:PutObject`; Abort and ListParts have their
    own actions; GetObject covers the HeadObject after completion, and ListBucket (on
    `sources/` only) makes S3 answer a missing object with 404 instead of 403, so "gone" and
    "denied" stay distinguishable. SSE-KMS multipart needs GenerateDataKey (initiate) and
    Decrypt (parts, list, complete with checksums)."""
    sources = pulumi.Output.concat(ingest_arn, "/", SOURCE_PREFIX, "*")
    return [
        Grant(
            "UploadSources",
            ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
            (sources,),
        ),
        Grant("HeadUploadedSources", ("s3:GetObject",), (sources,)),
        list_sources(ingest_arn),
        Grant(
            "MediaKeyForUploads",
            ("kms:GenerateDataKey", "kms:Decrypt"),
            (key_arn,),
            conditions=s3_via(ctx),
        ),
    ]


def transcode_grants(
    ingest_arn: pulumi.Input[str],
    media_arn: pulumi.Input[str],
    key_arn: pulumi.Input[str],
    ctx: AwsContext,
    *,
    delete_source: bool,
) -> list[Grant]:
    """What the worker needs: read (and with `delete_source`, delete) sources; write, abort
    and clean up renditions under `media/`; list only that prefix; use the media key."""
    source_actions = ("s3:GetObject", *(("s3:DeleteObject",) if delete_source else ()))
    return [
        Grant(
            "ReadSources",
            source_actions,
            (pulumi.Output.concat(ingest_arn, "/", SOURCE_PREFIX, "*"),),
        ),
        list_sources(ingest_arn),
        Grant(
            "WriteRenditions",
            ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"),
            (pulumi.Output.concat(media_arn, "/", MEDIA_PREFIX, "*"),),
        ),
        Grant(
            "ListRenditions",
            ("s3:ListBucket",),
            (media_arn,),
            conditions={"StringLike": {"s3:prefix": [MEDIA_PREFIX, f"{MEDIA_PREFIX}*"]}},
        ),
        Grant(
            "MediaKeyForTranscoding",
            ("kms:Decrypt", "kms:GenerateDataKey"),
            (key_arn,),
            conditions=s3_via(ctx),
        ),
    ]


def ingest_lifecycle_rules(settings: MediaStorageSettings) -> list[dict[str, Any]]:
    """The ingest bucket's one lifecycle configuration (every rule filtered, PITFALLS 122)."""
    if settings.source_retention is SourceRetention.ARCHIVE:
        sources: dict[str, Any] = {
            "id": "archive-sources",
            "transitions": [
                {"days": settings.source_archive_after_days, "storage_class": ARCHIVE_STORAGE_CLASS}
            ],
        }
    else:
        sources = {
            "id": "expire-unprocessed-sources",
            "expiration": {"days": SOURCE_SAFETY_EXPIRATION_DAYS},
        }
    return [
        _abort_rule(),
        {**sources, "status": "Enabled", "filter": {"prefix": SOURCE_PREFIX}},
        _noncurrent_rule(settings.noncurrent_version_days),
    ]


def media_lifecycle_rules(settings: MediaStorageSettings) -> list[dict[str, Any]]:
    return [_abort_rule(), _noncurrent_rule(settings.noncurrent_version_days)]


def _abort_rule() -> dict[str, Any]:
    return {
        "id": "abort-incomplete-uploads",
        "status": "Enabled",
        "filter": {"prefix": ""},
        "abort_incomplete_multipart_upload": {
            "days_after_initiation": ABORT_INCOMPLETE_UPLOAD_DAYS
        },
    }


def _noncurrent_rule(days: int) -> dict[str, Any]:
    # Versions protect a source mid-processing and a published version from overwrite; an
    # old version (or a deleted object's) goes after `days`, its lone delete marker with it.
    return {
        "id": "expire-noncurrent-versions",
        "status": "Enabled",
        "filter": {"prefix": ""},
        "noncurrent_version_expiration": {"noncurrent_days": days},
        "expiration": {"expired_object_delete_marker": True},
    }


@dataclass(frozen=True)
class AccessLogTarget:
    """Where another bucket of the stack writes its server access logs (S3.9)."""

    bucket_name: pulumi.Input[str]
    ready: pulumi.Resource
    """The target's bucket policy: PutBucketLogging checks that it admits log delivery."""


class MediaStorage(pulumi.ComponentResource):
    """Ingest, media and access-log buckets with the media key and the grant helpers."""

    ingest_bucket_name: pulumi.Output[str]
    ingest_bucket_arn: pulumi.Output[str]
    media_bucket_name: pulumi.Output[str]
    media_bucket_arn: pulumi.Output[str]
    media_bucket_domain_name: pulumi.Output[str]
    """The media bucket's regional domain name: the distribution's S3 origin (M7)."""
    log_bucket_name: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    settings: MediaStorageSettings

    def __init__(
        self, name: str, args: MediaStorageArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:storage:MediaStorage", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self._blocks: dict[str, aws.s3.BucketPublicAccessBlock] = {}
        self.settings = MediaStorageSettings(**args.tuned())
        self.key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(
                purpose="media-key",
                context=args.context,
                namer=args.namer,
                deletion_window_days=Lifecycle(args.protect_data).key_deletion_window_days,
                service_grants=distribution_key_grants(args.distribution_arn),
                protect_data=args.protect_data,
                # The distribution reads through the storage: its ARN may only reach a policy
                # nothing else waits for.
                separate_policy=True,
            ),
            self._child,
        )
        self.key_arn = self.key.arn
        logs, log_policy = self._log_bucket()
        ingest = self._data_bucket("ingest", ingest_lifecycle_rules(args))
        media = self._data_bucket("media", media_lifecycle_rules(args))
        self._cors(ingest)
        self._access_logging(ingest, logs, log_policy, "ingest")
        self._access_logging(media, logs, log_policy, "media")
        self.ingest_bucket, self.media_bucket, self.log_bucket = ingest, media, logs
        self.ingest_bucket_name, self.ingest_bucket_arn = ingest.bucket, ingest.arn
        self.media_bucket_name, self.media_bucket_arn = media.bucket, media.arn
        self.media_bucket_domain_name = media.bucket_regional_domain_name
        self.log_bucket_name = logs.bucket
        self.access_log_target = AccessLogTarget(bucket_name=logs.bucket, ready=log_policy)
        self.register_outputs(
            {
                "ingest_bucket_name": self.ingest_bucket_name,
                "media_bucket_name": self.media_bucket_name,
                "log_bucket_name": self.log_bucket_name,
                "key_arn": self.key_arn,
            }
        )

    @property
    def deletes_sources(self) -> bool:
        return self._args.deletes_sources

    # -- grants ----------------------------------------------------------------------------
    def grant_upload(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let `role` (the API function) sign presigned multipart uploads of sources (M1)."""
        grants = upload_grants(self.ingest_bucket_arn, self.key_arn, self._args.context)
        return attach_grants(resource_name, role, grants, parent=self)

    def grant_transcode(
        self, resource_name: str, role: aws.iam.Role, *, delete_source: bool
    ) -> aws.iam.RolePolicy:
        """Let `role` (the worker task) read sources and publish renditions (M4, M6); with
        `delete_source` (sourceRetention=delete) also delete a processed source (M2)."""
        grants = transcode_grants(
            self.ingest_bucket_arn,
            self.media_bucket_arn,
            self.key_arn,
            self._args.context,
            delete_source=delete_source,
        )
        return attach_grants(resource_name, role, grants, parent=self)

    # -- buckets ---------------------------------------------------------------------------
    def _bucket(self, word: str) -> aws.s3.Bucket:
        made = private_bucket(
            f"{self._name}-{word}",
            physical=self._physical(word),
            protect_data=self._args.protect_data,
            parent=self,
        )
        self._blocks[word] = made.public_access_block
        return made.bucket

    def _data_bucket(self, word: str, rules: list[dict[str, Any]]) -> aws.s3.Bucket:
        name = self._name
        bucket = self._bucket(word)
        versioned_and_key_encrypted(f"{name}-{word}", bucket, self.key_arn, parent=self)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-{word}-lifecycle", bucket=bucket.id, rules=rules, opts=self._child
        )
        extra: tuple[dict[str, Any], ...] = ()
        if word == "media" and self._args.distribution_arn is not None:
            extra = (distribution_read_statement(bucket.arn, self._args.distribution_arn),)
        aws.s3.BucketPolicy(
            f"{name}-{word}-policy",
            bucket=bucket.id,
            policy=data_bucket_policy(bucket.arn, self.key_arn, extra),
            # S3 rejects a policy while the public-access block is still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._blocks[word]]),
        )
        return bucket

    def _log_bucket(self) -> tuple[aws.s3.Bucket, aws.s3.BucketPolicy]:
        args, name, ctx = self._args, self._name, self._args.context
        word = ACCESS_LOG_BUCKET
        bucket = self._bucket(word)
        # SSE-S3, not the media key: the S3 user guide ("Enabling Amazon S3 server access
        # logging", https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html)
        # long said a log destination may use default encryption only with SSE-S3 (AES256);
        # SSE-KMS delivery works only when the key policy admits logging.s3.amazonaws.com
        # (aws/aws-cdk#23513 and #25350 argue both ways). SSE-S3 works under either reading,
        # and the logs hold request metadata, never media, so no principal of the media key
        # (part 2: CloudFront) is ever granted anything for them.
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-{word}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=self._child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-{word}-lifecycle",
            bucket=bucket.id,
            rules=[
                _abort_rule(),
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": args.log_retention_days},
                },
            ],
            opts=self._child,
        )
        sources = [
            *(
                pulumi.Output.concat("arn:", ctx.partition, ":s3:::", self._physical(w))
                for w in ("ingest", "media")
            ),
            *args.logged_bucket_arns,
        ]
        policy = aws.s3.BucketPolicy(
            f"{name}-{word}-policy",
            bucket=bucket.id,
            policy=log_bucket_policy(bucket.arn, sources, ctx),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._blocks[word]]),
        )
        return bucket, policy

    def _physical(self, word: str) -> pulumi.Output[str]:
        ctx, namer = self._args.context, self._args.namer
        return pulumi.Output.all(ctx.account_id, ctx.region).apply(
            lambda facts: media_bucket_name(namer, word, facts[0], facts[1])
        )

    def _access_logging(
        self, bucket: aws.s3.Bucket, logs: aws.s3.Bucket, policy: aws.s3.BucketPolicy, word: str
    ) -> None:
        aws.s3.BucketLogging(
            f"{self._name}-{word}-access-logging",
            bucket=bucket.id,
            target_bucket=logs.bucket,
            target_prefix=f"{word}/",
            # PutBucketLogging checks that the target admits log delivery.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )

    def _cors(self, ingest: aws.s3.Bucket) -> None:
        origins = self._args.upload_cors_origins
        if not origins:
            return
        # Browsers PUT parts with the signed checksum header and must read each part's ETag
        # to complete the upload (PITFALLS 117, 123).
        aws.s3.BucketCorsConfiguration(
            f"{self._name}-ingest-cors",
            bucket=ingest.id,
            cors_rules=[
                {
                    "allowed_methods": ["PUT"],
                    "allowed_origins": list(origins),
                    "allowed_headers": ["content-type", CHECKSUM_HEADER],
                    "expose_headers": ["ETag"],
                    "max_age_seconds": CORS_MAX_AGE_SECONDS,
                }
            ],
            opts=self._child,
        )


@dataclass(frozen=True, kw_only=True)
class UploadTarget:
    """What the API needs of the storage: where uploads go, their limits, the grant."""

    ingest_bucket: pulumi.Input[str]
    """Ingest bucket name (required)."""
    max_bytes: int
    """Largest upload accepted (required)."""
    content_types: tuple[str, ...]
    """Content types an upload may declare (required)."""
    url_ttl_seconds: int
    """Lifetime of each presigned part URL (required)."""
    grant_upload: GrantFn
    """Grants the API role what presigned multipart uploads need (required)."""

    @classmethod
    def of(cls, storage: MediaStorage) -> Self:
        s = storage.settings
        return cls(
            ingest_bucket=storage.ingest_bucket_name,
            max_bytes=s.upload_max_bytes,
            content_types=s.upload_content_types,
            url_ttl_seconds=s.upload_url_ttl_seconds,
            grant_upload=storage.grant_upload,
        )


@dataclass(frozen=True, kw_only=True)
class TranscodeTarget:
    """What the worker needs of the storage: both buckets, the source limit, the grant."""

    ingest_bucket: pulumi.Input[str]
    """Ingest bucket name (required)."""
    media_bucket: pulumi.Input[str]
    """Media (renditions) bucket name (required)."""
    max_source_bytes: int
    """Largest source the worker accepts: the upload limit (required)."""
    delete_source: bool
    """The worker deletes a source once processed (sourceRetention=delete) (required)."""
    grant_transcode: GrantFn = field(repr=False)
    """Grants the worker task role its S3 and media-key access (required)."""

    @classmethod
    def of(cls, storage: MediaStorage) -> Self:
        delete = storage.deletes_sources

        def grant(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
            return storage.grant_transcode(resource_name, role, delete_source=delete)

        return cls(
            ingest_bucket=storage.ingest_bucket_name,
            media_bucket=storage.media_bucket_name,
            max_source_bytes=storage.settings.upload_max_bytes,
            delete_source=delete,
            grant_transcode=grant,
        )
