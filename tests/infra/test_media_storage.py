"""MediaStorage (M1, M2, M6, G3): the ingest, media and access-log buckets, exact inputs under
mocks, the grants' exact statements, and the buckets in both stacks."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.kms import AwsContext
from components.media_storage import (
    MediaStorage,
    MediaStorageArgs,
    SourceRetention,
    TranscodeTarget,
    UploadTarget,
)
from components.naming import Namer
from offline.engine import ACCOUNT_ID, run_components
from services.contract import DEFAULT_UPLOAD_CONTENT_TYPES, UPLOAD_MAX_BYTES_DEFAULT
from tests.infra.expect import assert_rejected, guarded

REGION = "eu-central-1"
TAIL = f"{ACCOUNT_ID}-{REGION}-test"
INGEST, MEDIA, LOGS = (f"media-{word}-{TAIL}" for word in ("ingest", "media", "s3-logs"))
INGEST_ARN, MEDIA_ARN, LOGS_ARN = (f"arn:aws:s3:::{b}" for b in (INGEST, MEDIA, LOGS))
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
BUCKET = "aws:s3/bucket:Bucket"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_VIA = {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}


def storage_args(**overrides: Any) -> MediaStorageArgs:
    values: dict[str, Any] = {
        "namer": Namer("media", "test"),
        "context": AwsContext(account_id=ACCOUNT_ID, partition="aws", region=REGION),
    }
    values.update(overrides)
    return MediaStorageArgs(**values)


def build(args: MediaStorageArgs):
    """The storage plus an API-like and a worker-like role given its grants."""
    seen: dict[str, Any] = {}

    def program():
        storage = MediaStorage("media", args)
        api, worker = (
            aws.iam.Role(name, name=name, assume_role_policy="{}") for name in ("api", "worker")
        )
        UploadTarget.of(storage).grant_upload("api-uploads", api)
        target = TranscodeTarget.of(storage)
        target.grant_transcode("worker-media", worker)
        seen.update(uploads=UploadTarget.of(storage), transcode=target)

    run = run_components(program, region=REGION)
    run.seen = seen  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="module")
def run():
    return build(storage_args(upload_cors_origins=("https://upload.example.com",)))


@pytest.fixture(scope="module")
def deleting():
    return build(storage_args(source_retention=SourceRetention.DELETE, log_retention_days=90))


def media_key_arn(run) -> str:
    return run.one("aws:kms/key:Key", "media-key-key").state["arn"]


def document(run, token: str, name: str) -> dict:
    return json.loads(run.one(token, name).inputs["policy"])


# -- names (G2) ---------------------------------------------------------------------------------


def test_g2_bucket_names_carry_account_region_and_suffix(run):
    assert {b.name: b.inputs["bucket"] for b in run.of_type(BUCKET)} == {
        "media-ingest": INGEST,
        "media-media": MEDIA,
        "media-s3-logs": LOGS,
    }
    assert {b.inputs["tags"]["Name"] for b in run.of_type(BUCKET)} == {INGEST, MEDIA, LOGS}


def test_g2_a_name_over_s3s_limit_is_refused_before_anything_exists():
    args = storage_args(namer=Namer("p" * 30, "test"))
    # The account is not known before the preview: a 12-digit placeholder stands for it.
    assert_rejected(
        args,
        "namer: name '" + "p" * 30 + f"-ingest-000000000000-{REGION}-test' is 68 chars; "
        "S3_BUCKET names allow at most 63 (shorten the prefix or the environment suffix)",
    )
    assert _error(args).count("S3_BUCKET names allow at most 63") == 3


def test_g2_bad_characters_are_refused():
    assert "breaks the S3_BUCKET rule" in _error(storage_args(namer=Namer("media", "Test")))


def _error(args: MediaStorageArgs) -> str:
    with pytest.raises(ValueError) as caught:
        args.validate()
    return str(caught.value)


# -- encryption, public access, ownership, versioning (M1, M6) ----------------------------------


def test_m1_m6_data_buckets_use_the_media_key_with_a_bucket_key(run):
    for word in ("ingest", "media"):
        assert run.one(SSE, f"media-{word}-encryption").inputs["rules"] == [
            {
                "applyServerSideEncryptionByDefault": {
                    "sseAlgorithm": "aws:kms",
                    "kmsMasterKeyId": media_key_arn(run),
                },
                "bucketKeyEnabled": True,
            }
        ]


def test_m1_media_key_is_its_own_rotating_key_admitting_no_service(run):
    key = run.one("aws:kms/key:Key", "media-key-key").inputs
    assert key["enableKeyRotation"] is True
    assert key["deletionWindowInDays"] == 7
    # The policy is a resource of its own (the distribution's ARN may land in it, M7).
    assert "policy" not in key
    policy = run.one("aws:kms/keyPolicy:KeyPolicy").inputs
    assert policy["keyId"] == run.one("aws:kms/key:Key", "media-key-key").state["keyId"]
    assert [s["Sid"] for s in json.loads(policy["policy"])["Statement"]] == [
        "EnableAccountIamPolicies"
    ]
    assert run.one("aws:kms/alias:Alias").inputs["name"] == "alias/media-media-key-test"
    platform = {f"keys-{p}-key" for p in ("logs", "database", "secrets", "stream")}
    assert not platform & {k.name for k in run.of_type("aws:kms/key:Key")}


def test_m1_every_bucket_blocks_public_access_and_disables_acls(run):
    bucket_ids = {b.name: b.id for b in run.of_type(BUCKET)}
    blocks = run.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert {b.inputs["bucket"] for b in blocks} == set(bucket_ids.values())
    for block in blocks:
        assert {k: v for k, v in block.inputs.items() if k != "bucket"} == {
            "blockPublicAcls": True,
            "blockPublicPolicy": True,
            "ignorePublicAcls": True,
            "restrictPublicBuckets": True,
        }
    ownership = run.of_type("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert {o.inputs["bucket"] for o in ownership} == set(bucket_ids.values())
    assert all(o.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"} for o in ownership)


def test_m2_m6_data_buckets_are_versioned_the_log_bucket_is_not(run):
    versioning = run.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert {v.inputs["bucket"]: v.inputs["versioningConfiguration"] for v in versioning} == {
        INGEST: {"status": "Enabled"},
        MEDIA: {"status": "Enabled"},
    }


# -- lifecycle (M1, M2) -------------------------------------------------------------------------

ABORT = {
    "id": "abort-incomplete-uploads",
    "status": "Enabled",
    "filter": {"prefix": ""},
    "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1},
}


def noncurrent(days: int) -> dict:
    return {
        "id": "expire-noncurrent-versions",
        "status": "Enabled",
        "filter": {"prefix": ""},
        "noncurrentVersionExpiration": {"noncurrentDays": days},
        "expiration": {"expiredObjectDeleteMarker": True},
    }


def rules(run, word: str) -> list[dict]:
    lifecycle = run.one(LIFECYCLE, f"media-{word}-lifecycle").inputs
    assert lifecycle["bucket"] == {"ingest": INGEST, "media": MEDIA, "s3-logs": LOGS}[word]
    return lifecycle["rules"]


def test_m2_archive_moves_sources_to_glacier_instant_retrieval(run):
    assert rules(run, "ingest") == [
        ABORT,
        {
            "id": "archive-sources",
            "status": "Enabled",
            "filter": {"prefix": "sources/"},
            "transitions": [{"days": 30, "storageClass": "GLACIER_IR"}],
        },
        noncurrent(30),
    ]


def test_m2_delete_expires_unprocessed_sources_with_the_dead_letter_retention(deleting):
    assert rules(deleting, "ingest") == [
        ABORT,
        {
            "id": "expire-unprocessed-sources",
            "status": "Enabled",
            "filter": {"prefix": "sources/"},
            "expiration": {"days": 14},
        },
        noncurrent(30),
    ]


def test_m2_archive_and_version_days_come_from_the_settings():
    other = build(storage_args(source_archive_after_days=3, noncurrent_version_days=90))
    assert rules(other, "ingest")[1]["transitions"] == [{"days": 3, "storageClass": "GLACIER_IR"}]
    assert rules(other, "ingest")[2] == noncurrent(90)
    assert rules(other, "media") == [ABORT, noncurrent(90)]


def test_m6_media_bucket_aborts_uploads_and_expires_old_versions(run):
    assert rules(run, "media") == [ABORT, noncurrent(30)]


def test_one_lifecycle_configuration_per_bucket_every_rule_filtered(run, deleting):
    for captured in (run, deleting):
        configs = captured.of_type(LIFECYCLE)
        assert sorted(c.inputs["bucket"] for c in configs) == sorted([INGEST, MEDIA, LOGS])
        assert all("filter" in r for c in configs for r in c.inputs["rules"])


# -- bucket policies (M1, M6) -------------------------------------------------------------------


def data_bucket_statements(bucket_arn: str, key_arn: str) -> list[dict]:
    objects = f"{bucket_arn}/*"
    return [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
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
    ]


@pytest.mark.parametrize(("word", "arn"), [("ingest", INGEST_ARN), ("media", MEDIA_ARN)])
def test_m1_m6_data_bucket_policy_only_denies(run, word, arn):
    policy = run.one("aws:s3/bucketPolicy:BucketPolicy", f"media-{word}-policy")
    assert policy.inputs["bucket"] == run.one(BUCKET, f"media-{word}").id
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": data_bucket_statements(arn, media_key_arn(run)),
    }
    # S3 rejects a policy while the public-access block is still being applied.
    assert run.named(f"media-{word}-public-access").urn in policy.dependencies


DISTRIBUTION_ARN = f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/E2ABCDEFGHIJKL"


@pytest.fixture(scope="module")
def delivered():
    return build(storage_args(distribution_arn=DISTRIBUTION_ARN))


def test_m7_the_media_bucket_admits_exactly_the_distribution_to_read_renditions(delivered):
    statements = document(delivered, "aws:s3/bucketPolicy:BucketPolicy", "media-media-policy")
    assert statements["Statement"] == [
        *data_bucket_statements(MEDIA_ARN, media_key_arn(delivered)),
        {
            "Sid": "AllowDistributionReadMedia",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": f"{MEDIA_ARN}/media/*",
            "Condition": {"StringEquals": {"AWS:SourceArn": DISTRIBUTION_ARN}},
        },
    ]
    # Sources are never served: the ingest bucket keeps its denies only.
    ingest = document(delivered, "aws:s3/bucketPolicy:BucketPolicy", "media-ingest-policy")
    assert ingest["Statement"] == data_bucket_statements(INGEST_ARN, media_key_arn(delivered))


def test_m7_the_media_key_lets_exactly_the_distribution_decrypt(delivered):
    policy = delivered.one("aws:kms/keyPolicy:KeyPolicy").inputs
    assert json.loads(policy["policy"])["Statement"] == [
        {
            "Sid": "EnableAccountIamPolicies",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "AllowDistributionDecryptMedia",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": ["kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"AWS:SourceArn": DISTRIBUTION_ARN}},
        },
    ]
    # The key itself names no distribution: what encrypts with it never waits for one.
    assert "policy" not in delivered.one("aws:kms/key:Key").inputs


def test_m7_a_deferred_distribution_arn_reaches_only_the_two_policies():
    """The program resolves the ARN after the distribution exists (pulumi.deferred_output):
    the bucket policy and key policy wait for it, nothing else does."""

    def program():
        arn, resolve = pulumi.deferred_output()
        MediaStorage("media", storage_args(distribution_arn=arn))
        # Stands in for the distribution: any resource created after the storage.
        later = aws.sns.Topic("later", name="later")
        resolve(later.arn)

    run = run_components(program, region=REGION)
    cdn = run.one("aws:sns/topic:Topic").urn
    waiting = sorted(r.name for r in run.resources if cdn in r.dependencies)
    assert waiting == ["media-key-policy", "media-media-policy"]


# -- access logs --------------------------------------------------------------------------------


def test_log_bucket_uses_sse_s3_and_expires_with_the_log_retention(run, deleting):
    assert run.one(SSE, "media-s3-logs-encryption").inputs["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    ]
    expiry = {
        "id": "expire-access-logs",
        "status": "Enabled",
        "filter": {"prefix": ""},
        "expiration": {"days": 30},
    }
    assert rules(run, "s3-logs") == [ABORT, expiry]
    assert rules(deleting, "s3-logs")[1]["expiration"] == {"days": 90}


def test_log_bucket_admits_s3_logging_for_the_two_buckets_of_this_account_only(run):
    policy = run.one("aws:s3/bucketPolicy:BucketPolicy", "media-s3-logs-policy")
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [LOGS_ARN, f"{LOGS_ARN}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "S3ServerAccessLogsDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{LOGS_ARN}/*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": [INGEST_ARN, MEDIA_ARN]},
                    "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
                },
            },
        ],
    }


def test_both_data_buckets_log_to_the_log_bucket_after_its_policy(run):
    policy = run.named("media-s3-logs-policy")
    for word in ("ingest", "media"):
        logging = run.one("aws:s3/bucketLogging:BucketLogging", f"media-{word}-access-logging")
        assert logging.inputs == {
            "bucket": {"ingest": INGEST, "media": MEDIA}[word],
            "targetBucket": LOGS,
            "targetPrefix": f"{word}/",
        }
        assert policy.urn in logging.dependencies


# -- CORS (M1) ----------------------------------------------------------------------------------


def test_m1_ingest_cors_lets_browsers_put_signed_parts_and_read_etags(run):
    cors = run.one("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    assert cors.inputs == {
        "bucket": INGEST,
        "corsRules": [
            {
                "allowedMethods": ["PUT"],
                "allowedOrigins": ["https://upload.example.com"],
                "allowedHeaders": ["content-type", "x-amz-checksum-sha256"],
                "exposeHeaders": ["ETag"],
                "maxAgeSeconds": 3000,
            }
        ],
    }


def test_m1_no_origins_no_cors(deleting):
    assert deleting.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration") == []


# -- grants (M1, M4, M6; PITFALLS 115, 116) -----------------------------------------------------


def test_m1_api_may_presign_multipart_uploads_of_sources_only(run):
    policy = run.one(ROLE_POLICY, "api-uploads")
    assert policy.inputs["role"] == run.one(ROLE, "api").id
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadSources",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"{INGEST_ARN}/sources/*"],
            },
            {
                "Sid": "HeadUploadedSources",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"{INGEST_ARN}/sources/*"],
            },
            {
                "Sid": "ListSources",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [INGEST_ARN],
                "Condition": {"StringLike": {"s3:prefix": ["sources/", "sources/*"]}},
            },
            {
                "Sid": "MediaKeyForUploads",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": [media_key_arn(run)],
                "Condition": S3_VIA,
            },
        ],
    }


def transcode_statements(key_arn: str, source_actions: list[str]) -> list[dict]:
    return [
        {
            "Sid": "ReadSources",
            "Effect": "Allow",
            "Action": source_actions,
            "Resource": [f"{INGEST_ARN}/sources/*"],
        },
        {
            "Sid": "ListSources",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [INGEST_ARN],
            "Condition": {"StringLike": {"s3:prefix": ["sources/", "sources/*"]}},
        },
        {
            "Sid": "WriteRenditions",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            "Resource": [f"{MEDIA_ARN}/media/*"],
        },
        {
            "Sid": "ListRenditions",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [MEDIA_ARN],
            "Condition": {"StringLike": {"s3:prefix": ["media/", "media/*"]}},
        },
        {
            "Sid": "MediaKeyForTranscoding",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [key_arn],
            "Condition": S3_VIA,
        },
    ]


def test_m4_m6_worker_reads_sources_and_publishes_renditions_when_archiving(run):
    policy = run.one(ROLE_POLICY, "worker-media")
    assert policy.inputs["role"] == run.one(ROLE, "worker").id
    assert json.loads(policy.inputs["policy"])["Statement"] == transcode_statements(
        media_key_arn(run), ["s3:GetObject"]
    )


def test_m2_worker_may_delete_sources_only_when_retention_deletes(deleting):
    statements = document(deleting, ROLE_POLICY, "worker-media")["Statement"]
    assert statements == transcode_statements(
        media_key_arn(deleting), ["s3:GetObject", "s3:DeleteObject"]
    )


def test_m1_wiring_objects_carry_the_buckets_and_limits(run, deleting):
    uploads = run.seen["uploads"]
    assert (uploads.max_bytes, uploads.content_types, uploads.url_ttl_seconds) == (
        UPLOAD_MAX_BYTES_DEFAULT,
        DEFAULT_UPLOAD_CONTENT_TYPES,
        900,
    )
    assert run.seen["transcode"].delete_source is False
    assert deleting.seen["transcode"].delete_source is True
    assert run.seen["transcode"].max_source_bytes == UPLOAD_MAX_BYTES_DEFAULT


# -- destroyability (G3) ------------------------------------------------------------------------


def test_g3_buckets_are_emptied_on_destroy_by_default(run):
    assert all(b.inputs["forceDestroy"] is True for b in run.of_type(BUCKET))
    assert guarded(run) == set()


def test_g3_data_protection_keeps_buckets_and_key():
    protected = build(storage_args(protect_data=True))
    assert all(b.inputs["forceDestroy"] is False for b in protected.of_type(BUCKET))
    assert guarded(protected) == {
        (BUCKET, "media-ingest", True, True),
        (BUCKET, "media-media", True, True),
        (BUCKET, "media-s3-logs", True, True),
        ("aws:kms/key:Key", "media-key-key", True, True),
    }
    assert protected.one("aws:kms/key:Key").inputs["deletionWindowInDays"] == 30


# -- settings (G8) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"upload_max_bytes": 0}, "upload_max_bytes=0: allowed 1..5497558138880"),
        ({"upload_content_types": ()}, "upload_content_types=[]: allowed one or more distinct"),
        (
            {"upload_content_types": ("video/mp4,video/webm",)},
            'upload_content_types=["video/mp4,video/webm"]: allowed one or more distinct',
        ),
        ({"upload_url_ttl_seconds": 3601}, "upload_url_ttl_seconds=3601: allowed 60..3600"),
        (
            {"upload_cors_origins": ("https://a.example.com/path",)},
            'upload_cors_origins=["https://a.example.com/path"]: allowed distinct origins',
        ),
        ({"source_archive_after_days": 0}, "source_archive_after_days=0: allowed 1..3650"),
        ({"noncurrent_version_days": 0}, "noncurrent_version_days=0: allowed 1..3650"),
        ({"log_retention_days": 0}, "log_retention_days=0: allowed >= 1"),
    ],
)
def test_g8_bad_args_are_refused_naming_the_field(overrides, message):
    assert_rejected(storage_args(**overrides), message)


def test_g8_good_origins_pass():
    args = storage_args(
        upload_cors_origins=("https://a.example.com:8443", "http://localhost:3000", "*")
    )
    args.validate()
    assert replace(args, upload_cors_origins=()).upload_cors_origins == ()


# -- both stacks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "retention", "cors"),
    [("dev", "expire-unprocessed-sources", True), ("prod", "archive-sources", False)],
)
def test_stacks_export_the_buckets_and_key_and_set_retention(
    dev_run, prod_run, stack, retention, cors
):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    tail = f"{ACCOUNT_ID}-eu-central-1-{stack}"
    assert run.outputs["ingestBucketName"] == f"media-ingest-{tail}"
    assert run.outputs["mediaBucketName"] == f"media-media-{tail}"
    assert run.outputs["mediaKeyArn"] == media_key_arn(run)
    assert run.one(LIFECYCLE, "media-ingest-lifecycle").inputs["rules"][1]["id"] == retention
    assert bool(run.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")) is cors


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_grant_the_api_and_worker_roles_their_media_access(dev_run, prod_run, stack):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    api = document(run, ROLE_POLICY, "api-uploads")
    assert api["Statement"][0]["Resource"] == [
        f"arn:aws:s3:::media-ingest-{ACCOUNT_ID}-eu-central-1-{stack}/sources/*"
    ]
    assert run.one(ROLE_POLICY, "api-uploads").inputs["role"] == run.named("api-role").id
    worker = run.one(ROLE_POLICY, "worker-task-media")
    assert worker.inputs["role"] == run.named("worker-task-role").id
    deletes = "s3:DeleteObject" in json.loads(worker.inputs["policy"])["Statement"][0]["Action"]
    assert deletes is (stack == "dev")  # dev deletes processed sources, prod archives them


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_n6_s3_gateway_endpoint_on_every_app_route_table(dev_run, prod_run, stack):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    [s3] = [
        e
        for e in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if e.inputs["vpcEndpointType"] == "Gateway"
    ]
    app_tables = [
        t.id
        for t in run.of_type("aws:ec2/routeTable:RouteTable")
        if t.name.startswith("network-app-")
    ]
    assert len(app_tables) == {"dev": 2, "prod": 3}[stack]
    assert sorted(s3.inputs["routeTableIds"]) == sorted(app_tables)
    assert s3.inputs["serviceName"] == "com.amazonaws.eu-central-1.s3"
