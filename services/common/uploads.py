"""Multipart uploads into the ingest bucket (M1): part sizing, presigned part URLs, the
part checks before completion, and the S3 calls, each bounded in time.

The client never sees the upload id or any credential: it gets one presigned `UploadPart`
URL per part it asks for, each with the part's SHA-256 in the signed headers, so S3 takes
exactly the bytes the client declared for that part and nothing else (AWS-PITFALLS 117).
The upload is created with `ChecksumAlgorithm="SHA256"` (otherwise S3 refuses a part that
carries a SHA-256) and never with an ACL (the bucket enforces bucket ownership, 121).

Every S3 call first checks the request's deadline: a call that could not finish inside the
API function's timeout is not started, and the caller answers 503 instead. Completion is
written so that a retry continues where an interrupted attempt stopped.

boto3 is imported when the first client is made (`ingest_client`), not with this module.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from services.common.aws import aws_client
from services.contract import (
    CHECKSUM_HEADER,
    MIB,
    PART_SIZE_FLOOR,
    S3_MAX_PART_BYTES,
    S3_MAX_PARTS,
    S3_MIN_PART_BYTES,
)

log = logging.getLogger(__name__)

CHECKSUM_ALGORITHM = "SHA256"
SHA256_BYTES = 32
_LIST_PAGE = 1000  # ListParts returns at most 1,000 parts per page
_GONE_CODES = frozenset({"NoSuchUpload"})
# Complete refused because of the parts themselves: a part re-uploaded between our listing
# and the Complete call. The client can fix these by uploading the part again.
_PART_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "BadDigest"})


class StorageUnavailable(RuntimeError):
    """S3 failed, did not answer in time, or the request has no time left for a call;
    retrying the request later may succeed."""


class UploadGone(RuntimeError):
    """S3 no longer knows the multipart upload (completed, aborted or expired)."""


class PartsRejected(RuntimeError):
    """S3 refused to assemble the parts (a part changed since it was listed)."""


# -- sizing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartPlan:
    part_size: int
    """Size of every part but the last, which holds the rest (1 to part_size bytes)."""
    part_count: int

    def expected_size(self, part_number: int, total: int) -> int:
        if part_number < self.part_count:
            return self.part_size
        return total - (self.part_count - 1) * self.part_size


def plan_parts(size_bytes: int) -> PartPlan:
    """Parts for an upload of `size_bytes`: at least 8 MiB each, few enough for S3's
    10,000-part limit, in whole MiB (AWS-PITFALLS 118)."""
    if size_bytes < 1:
        raise ValueError(f"size_bytes must be positive, got {size_bytes}")
    needed = -(-size_bytes // S3_MAX_PARTS)
    part_size = max(PART_SIZE_FLOOR, -(-needed // MIB) * MIB)
    if part_size > S3_MAX_PART_BYTES:
        raise ValueError(f"{size_bytes} bytes need parts larger than S3's 5 GiB maximum")
    assert part_size >= S3_MIN_PART_BYTES
    return PartPlan(part_size=part_size, part_count=-(-size_bytes // part_size))


def checksum_problem(value: Any) -> str | None:
    """Why `value` is not the canonical base64 of a SHA-256 digest, or None.

    Canonical: a digest has exactly one base64 spelling S3 compares against, so a value
    with stray padding bits or whitespace is refused here, not by S3 after the upload.
    """
    if not isinstance(value, str) or len(value) != 44 or not value.isascii():
        return "must be the base64 of a SHA-256 digest (44 characters)"
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "must be the base64 of a SHA-256 digest (44 characters)"
    if len(digest) != SHA256_BYTES or base64.b64encode(digest).decode() != value:
        return "must be the base64 of a SHA-256 digest (44 characters)"
    return None


# -- checking the parts before completion ---------------------------------------------------


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    size: int
    etag: str
    checksum_sha256: str | None


@dataclass(frozen=True)
class PartIssue:
    code: str
    """`upload_incomplete` (a part is missing) or `part_size_mismatch`."""
    part_number: int
    message: str


def check_parts(parts: Sequence[UploadedPart], plan: PartPlan, size_bytes: int) -> PartIssue | None:
    """The first thing wrong with `parts` as the whole upload, or None.

    Parts 1..part_count, each but the last exactly part_size, the last the remainder: so
    the assembled object is exactly the declared size, checked before S3 assembles it
    while the upload is still open and the client can upload a part again.
    """
    by_number = {part.part_number: part for part in parts}
    for number in sorted(by_number):
        if number > plan.part_count:
            return PartIssue(
                "part_size_mismatch",
                number,
                f"part {number} is beyond the upload's {plan.part_count} parts",
            )
    for number in range(1, plan.part_count + 1):
        part = by_number.get(number)
        if part is None:
            return PartIssue(
                "upload_incomplete",
                number,
                f"part {number} of {plan.part_count} has not been uploaded",
            )
        expected = plan.expected_size(number, size_bytes)
        if part.size != expected:
            return PartIssue(
                "part_size_mismatch",
                number,
                f"part {number} is {part.size} bytes, expected {expected};"
                " upload it again with a new part URL",
            )
    return None


# -- S3 ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresignedPart:
    part_number: int
    url: str
    headers: dict[str, str]
    """Headers the client must send exactly as given: they are part of the signature."""
    expires_at: datetime


def ingest_client(
    *, region: str | None, connect_timeout: float, read_timeout: float, max_attempts: int
) -> Any:
    """An S3 client with bounded timeouts and SigV4 presigning (the only kind S3 accepts
    for a signed checksum header)."""
    return aws_client(
        "s3",
        region=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        signature_version="s3v4",
    )


class IngestStore:
    """The multipart-upload calls on one bucket. `deadline` arguments are values of
    `clock` after which no call is started."""

    def __init__(
        self, s3: Any, bucket: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._clock = clock

    @property
    def bucket(self) -> str:
        return self._bucket

    def open(self, key: str, content_type: str, *, deadline: float) -> str:
        """Start a multipart upload; its id."""
        response = self._call(
            "CreateMultipartUpload",
            deadline,
            lambda: self._s3.create_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                ContentType=content_type,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ),
        )
        return str(response["UploadId"])

    def presign_part(
        self, key: str, upload_id: str, part_number: int, checksum_sha256: str, ttl_seconds: int
    ) -> PresignedPart:
        """A URL for one `UploadPart` that S3 accepts only with this checksum header.

        Signing is local (no network call). `ChecksumSHA256` in the parameters puts
        `x-amz-checksum-sha256` in the signed headers, not in the query string where S3
        would not enforce it.
        """
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
        try:
            url = self._s3.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self._bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": part_number,
                    "ChecksumSHA256": checksum_sha256,
                },
                ExpiresIn=ttl_seconds,
                HttpMethod="PUT",
            )
        except BotoCoreError as error:  # no credentials to sign with, e.g.
            raise StorageUnavailable(f"cannot sign UploadPart: {type(error).__name__}") from error
        return PresignedPart(
            part_number=part_number,
            url=url,
            headers={CHECKSUM_HEADER: checksum_sha256},
            expires_at=expires_at,
        )

    def list_parts(self, key: str, upload_id: str, *, deadline: float) -> list[UploadedPart]:
        """Every part S3 holds for the upload, following ListParts' pages."""
        parts: list[UploadedPart] = []
        marker = 0
        for _ in range(S3_MAX_PARTS // _LIST_PAGE + 1):
            page = self._call(
                "ListParts",
                deadline,
                lambda marker=marker: self._s3.list_parts(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MaxParts=_LIST_PAGE,
                    PartNumberMarker=marker,
                ),
            )
            for part in page.get("Parts", []):
                parts.append(
                    UploadedPart(
                        part_number=int(part["PartNumber"]),
                        size=int(part["Size"]),
                        etag=str(part["ETag"]),
                        checksum_sha256=part.get("ChecksumSHA256"),
                    )
                )
            if not page.get("IsTruncated"):
                return parts
            following = int(page.get("NextPartNumberMarker") or 0)
            if following <= marker:
                raise StorageUnavailable("ListParts reported more parts without a next marker")
            marker = following
        raise StorageUnavailable("ListParts kept reporting more pages than 10,000 parts fill")

    def complete(
        self, key: str, upload_id: str, parts: Sequence[UploadedPart], *, deadline: float
    ) -> None:
        """Assemble the parts as listed. Each part carries the SHA-256 S3 reported for it:
        an upload created with a checksum algorithm must name every part's checksum, and
        S3 refuses a Complete that leaves one out, so S3 stays the judge of the checksums."""
        listed = []
        for part in sorted(parts, key=lambda part: part.part_number):
            entry = {"PartNumber": part.part_number, "ETag": part.etag}
            if part.checksum_sha256 is not None:
                entry["ChecksumSHA256"] = part.checksum_sha256
            listed.append(entry)
        self._call(
            "CompleteMultipartUpload",
            deadline,
            lambda: self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            ),
        )

    def object_size(self, key: str, *, deadline: float) -> int | None:
        """The size of the object at `key`, or None if there is none.

        S3 says "none" (404) only to a caller that may list the bucket (`s3:ListBucket`);
        to any other it answers 403 whether or not the object exists, which is not taken to
        mean "none" here: it is StorageUnavailable, so nothing is decided on it."""
        try:
            response = self._call(
                "HeadObject",
                deadline,
                lambda: self._s3.head_object(Bucket=self._bucket, Key=key),
                missing_ok=True,
            )
        except _Missing:
            return None
        return int(response["ContentLength"])

    def abort(self, key: str, upload_id: str, *, deadline: float) -> bool:
        """Abort the upload and free its parts: True if this call ended it, False if S3 no
        longer had it (aborted or completed before)."""
        try:
            self._call(
                "AbortMultipartUpload",
                deadline,
                lambda: self._s3.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                ),
            )
        except UploadGone:
            return False
        return True

    def _call(
        self, operation: str, deadline: float, call: Callable[[], Any], *, missing_ok: bool = False
    ) -> Any:
        if self._clock() >= deadline:
            raise StorageUnavailable(f"no time left in this request for {operation}")
        try:
            return call()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _GONE_CODES:
                raise UploadGone(f"{operation}: the upload no longer exists") from error
            if code in _PART_CODES:
                raise PartsRejected(f"{operation}: {code}") from error
            if missing_ok and code in {"404", "NoSuchKey", "NotFound"}:
                raise _Missing from error
            raise StorageUnavailable(f"{operation} failed: {code or error}") from error
        except BotoCoreError as error:
            raise StorageUnavailable(f"{operation} failed: {type(error).__name__}") from error


class _Missing(Exception):
    """HeadObject found nothing (internal to IngestStore)."""
