"""M1: uploads through the API against moto's S3 server over real HTTP, real PostgreSQL
(logged in as the API's role, so the grants of migration 005 are proven enough) and Redis.

The parts travel as a browser sends them: PUT to the presigned URL with the headers the API
gave. moto's server checks neither presigned signatures, their expiry nor the part
checksums, so every URL is also judged by `presigned_request_problem`, which recomputes the
SigV4 signature the way S3 does: that is what shows a wrong checksum header, a missing one
or an expired URL is refused."""

from __future__ import annotations

import os
import socket
import time
import uuid

import boto3
import pytest
from conftest import STREAM, connect_as
from svc_support import TcpProxy, read_stream
from upload_support import (
    VALID,
    call,
    create,
    make_app,
    make_cache,
    part_urls,
    presigned_request_problem,
    put_part,
    sha256_b64,
    split,
    upload_video,
)

from services.api.handler import api_timeouts
from services.common.roles import API_DB_USER
from services.common.uploads import IngestStore, ingest_client
from services.contract import CHECKSUM_HEADER, MIB, PART_URLS_PER_REQUEST, source_key

pytestmark = pytest.mark.services

PART = 8 * MIB
SECRET_KEY = os.environ["AWS_SECRET_ACCESS_KEY"]


@pytest.fixture(scope="module")
def source() -> bytes:
    """Two full parts and a short last one: 16 MiB + 1000 bytes of noise."""
    return os.urandom(2 * PART + 1000)


@pytest.fixture
def api_database(pg_server, admin_db):
    database = connect_as(pg_server, API_DB_USER, application_name="media-api")
    yield database
    database.close()


@pytest.fixture
def app(api_database, served_aws, redis_proc, redis_client):
    return make_app(api_database, served_aws, redis_proc.port)


def row(admin_db, sql: str, *params):
    cursor = admin_db.cursor()
    cursor.execute(sql, params)
    return cursor.fetchone()


def open_uploads(aws) -> list[dict]:
    return aws.s3.list_multipart_uploads(Bucket=aws.ingest_bucket).get("Uploads", [])


def upload_all(app, video_id: str, data: bytes, part_size: int = PART) -> None:
    chunks = split(data, part_size)
    urls = part_urls(app, video_id, chunks)
    for number, chunk in chunks.items():
        status, etag = put_part(urls[number], chunk)
        assert (status, bool(etag)) == (200, True), etag


def complete(app, video_id: str) -> tuple[int, dict, dict]:
    return call(app, "POST", f"/videos/{video_id}/upload/complete")


# --- the whole flow ----------------------------------------------------------------------


def test_m1_upload_in_parts_through_presigned_urls_then_complete_requests_processing_once(
    app, served_aws, admin_db, source
):
    status, created, headers = call(
        app, "POST", "/videos", body={**VALID, "size_bytes": len(source)}
    )
    assert status == 201, created
    video_id = created["video_id"]
    assert headers["Location"] == f"/videos/{video_id}"
    assert created == {
        "video_id": video_id,
        "status": "UPLOADING",
        "upload": {
            "part_size": PART,
            "part_count": 3,
            "max_parts_per_request": PART_URLS_PER_REQUEST,
            "expires_in": 900,
        },
    }
    key = source_key(video_id)
    stored = row(
        admin_db,
        "SELECT status, source_uri, content_type, upload_size_bytes, upload_part_size, upload_id"
        " FROM videos WHERE id = %s",
        uuid.UUID(video_id),
    )
    [upload] = open_uploads(served_aws)
    assert stored == ["UPLOADING", key, "video/mp4", len(source), PART, upload["UploadId"]]
    assert (upload["Key"], upload["ChecksumAlgorithm"]) == (key, "SHA256")
    assert upload["UploadId"] not in str(created)

    chunks = split(source, PART)
    urls = part_urls(app, video_id, chunks)
    for number, chunk in chunks.items():
        part = urls[number]
        assert part["method"] == "PUT"
        assert part["headers"] == {CHECKSUM_HEADER: sha256_b64(chunk)}
        assert (
            presigned_request_problem(part["url"], "PUT", part["headers"], secret_key=SECRET_KEY)
            is None
        )
        assert put_part(part, chunk)[0] == 200

    status, body, _ = complete(app, video_id)
    assert status == 202, body
    assert (body["video_id"], body["status"]) == (video_id, "UPLOADED")
    assert (
        served_aws.s3.get_object(Bucket=served_aws.ingest_bucket, Key=key)["Body"].read() == source
    )
    assert open_uploads(served_aws) == []
    video = row(admin_db, "SELECT status, upload_id FROM videos WHERE id = %s", uuid.UUID(video_id))
    assert video == ["UPLOADED", None]
    job = row(
        admin_db,
        "SELECT video_id, state, requested_at IS NOT NULL FROM jobs WHERE id = %s",
        uuid.UUID(body["job_id"]),
    )
    assert job == [uuid.UUID(video_id), "QUEUED", True]
    [event] = read_stream(served_aws.kinesis, STREAM)
    assert (event["type"], event["video_id"], event["job_id"], event["source_uri"]) == (
        "job.requested",
        video_id,
        body["job_id"],
        key,
    )

    # Completing again (a client that lost the answer) is the same answer and no new event.
    assert complete(app, video_id)[:2] == (202, body)
    assert len(read_stream(served_aws.kinesis, STREAM)) == 1
    assert row(admin_db, "SELECT count(*) FROM jobs")[0] == 1


# --- checksums and expiry of the part URLs ----------------------------------------------


def test_m1_part_url_admits_only_the_declared_checksum_header(app, served_aws):
    """The checksum is a signed header (X-Amz-SignedHeaders), not a query parameter S3 would
    ignore (AWS-PITFALLS 117): without it, or with another digest, the signature no longer
    matches and S3 refuses the PUT. moto's server does not check signatures, so the
    verdict comes from the SigV4 verifier."""
    video_id = create(app)["video_id"]
    part = part_urls(app, video_id, {1: b"first part"})[1]
    query = part["url"].split("?", 1)[1]
    assert "X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256" in query
    assert "checksum" not in query.replace("X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256", "")
    assert "x-amz-acl" not in query.lower()
    verdict = lambda headers: presigned_request_problem(  # noqa: E731
        part["url"], "PUT", headers, secret_key=SECRET_KEY
    )
    assert verdict(part["headers"]) is None
    assert verdict({}) == "signed header(s) x-amz-checksum-sha256 not sent"
    assert verdict({CHECKSUM_HEADER: sha256_b64(b"other bytes")}) == "SignatureDoesNotMatch"
    tampered = part["url"].replace("partNumber=1", "partNumber=2")
    assert (
        presigned_request_problem(tampered, "PUT", part["headers"], secret_key=SECRET_KEY)
        == "SignatureDoesNotMatch"
    )
    assert presigned_request_problem(
        part["url"], "GET", part["headers"], secret_key=SECRET_KEY
    ) == ("SignatureDoesNotMatch")


def test_m1_part_url_expires_after_the_configured_ttl(api_database, served_aws, admin_db):
    """Signed through the upload module with a 1 s expiry. moto's server does not enforce
    X-Amz-Expires (a PUT after expiry still succeeds there), so the verifier decides."""
    store = IngestStore(served_aws.s3, served_aws.ingest_bucket)
    key = source_key(str(uuid.uuid4()))
    upload_id = store.open(key, "video/mp4", deadline=time.monotonic() + 10)
    checksum = sha256_b64(b"tail")
    part = store.presign_part(key, upload_id, 1, checksum, ttl_seconds=1)
    assert "X-Amz-Expires=1&" in part.url
    assert presigned_request_problem(part.url, "PUT", part.headers, secret_key=SECRET_KEY) is None
    time.sleep(2.1)
    assert (
        presigned_request_problem(part.url, "PUT", part.headers, secret_key=SECRET_KEY)
        == "Request has expired"
    )


# --- completion checks ---------------------------------------------------------------------


def test_m1_completion_before_every_part_is_uploaded_is_409_and_leaves_the_upload_open(
    app, served_aws, admin_db, source
):
    video_id = create(app, size_bytes=len(source))["video_id"]
    chunks = split(source, PART)
    urls = part_urls(app, video_id, chunks)
    for number in (1, 3):
        assert put_part(urls[number], chunks[number])[0] == 200
    status, body, _ = complete(app, video_id)
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        409,
        "upload_incomplete",
        "parts",
    )
    assert "part 2 of 3" in body["error"]["message"]
    assert len(open_uploads(served_aws)) == 1
    assert row(admin_db, "SELECT status FROM videos")[0] == "UPLOADING"
    assert read_stream(served_aws.kinesis, STREAM) == []
    assert put_part(urls[2], chunks[2])[0] == 200
    assert complete(app, video_id)[0] == 202


def test_m1_wrong_part_sizes_are_named_at_completion_and_can_be_uploaded_again(
    app, served_aws, admin_db, source
):
    """The last part holding more or less than the declared size, or a middle part not
    exactly part_size: 409 naming the part, upload still open; the re-uploaded part fixes it."""
    video_id = create(app, size_bytes=len(source))["video_id"]
    chunks = split(source, PART)
    urls = part_urls(app, video_id, chunks)
    for number, chunk in chunks.items():
        assert put_part(urls[number], chunk)[0] == 200
    short = chunks[3][:-1]
    assert put_part(part_urls(app, video_id, {3: short})[3], short)[0] == 200
    status, body, _ = complete(app, video_id)
    assert (status, body["error"]["code"]) == (409, "part_size_mismatch")
    assert "part 3 is 999 bytes, expected 1000" in body["error"]["message"]
    middle = chunks[2][: PART - 1]
    assert put_part(part_urls(app, video_id, {2: middle})[2], middle)[0] == 200
    status, body, _ = complete(app, video_id)
    assert (status, body["error"]["code"]) == (409, "part_size_mismatch")
    assert "part 2 is" in body["error"]["message"]
    fixed = part_urls(app, video_id, {2: chunks[2], 3: chunks[3]})
    assert put_part(fixed[2], chunks[2])[0] == 200
    assert put_part(fixed[3], chunks[3])[0] == 200
    assert complete(app, video_id)[0] == 202
    key = source_key(video_id)
    assert served_aws.s3.head_object(Bucket=served_aws.ingest_bucket, Key=key)[
        "ContentLength"
    ] == len(source)


def test_m1_stream_failure_at_completion_is_503_and_a_retried_completion_requests_once(
    api_database, served_aws, redis_proc, redis_client, admin_db
):
    """The video stays UPLOADED with its job QUEUED and requested_at unset; the retry puts
    the event (requested_at tells that no put succeeded) and a third completion puts none."""
    data = b"tiny source"
    broken = make_app(api_database, served_aws, redis_proc.port, stream_name="no-such-stream")
    video_id = create(broken, size_bytes=len(data))["video_id"]
    upload_all(broken, video_id, data)
    status, body, headers = complete(broken, video_id)
    assert (status, body["error"]["code"], headers["Retry-After"]) == (
        503,
        "stream_unavailable",
        "1",
    )
    state = "SELECT v.status, j.state, j.requested_at IS NOT NULL FROM videos v JOIN jobs j ON j.video_id = v.id"
    assert row(admin_db, state) == ["UPLOADED", "QUEUED", False]
    working = make_app(api_database, served_aws, redis_proc.port)
    status, first, _ = complete(working, video_id)
    assert status == 202
    assert row(admin_db, state) == ["UPLOADED", "QUEUED", True]
    assert complete(working, video_id)[:2] == (202, first)
    [event] = read_stream(served_aws.kinesis, STREAM)
    assert event["job_id"] == first["job_id"]


# --- abort ---------------------------------------------------------------------------------


def test_m1_abort_frees_the_upload_marks_the_video_aborted_and_is_idempotent(
    app, served_aws, admin_db
):
    video_id = create(app)["video_id"]
    assert put_part(part_urls(app, video_id, {1: b"x" * 100})[1], b"x" * 100)[0] == 200
    for _ in range(2):
        status, body, _ = call(app, "DELETE", f"/videos/{video_id}/upload")
        assert (status, body) == (200, {"video_id": video_id, "status": "ABORTED"})
    assert open_uploads(served_aws) == []
    assert row(admin_db, "SELECT status, upload_id FROM videos") == ["ABORTED", None]
    for path in ("parts", "complete"):
        body = {"parts": [{"part_number": 1, "checksum_sha256": sha256_b64(b"")}]}
        status, answer, _ = call(app, "POST", f"/videos/{video_id}/upload/{path}", body=body)
        assert (status, answer["error"]["code"]) == (409, "upload_not_open")
    assert row(admin_db, "SELECT count(*) FROM jobs")[0] == 0


def test_m1_abort_after_completion_is_409(app, served_aws):
    video_id, _ = upload_video(app, b"done")
    status, body, _ = call(app, "DELETE", f"/videos/{video_id}/upload")
    assert (status, body["error"]["code"]) == (409, "upload_not_open")
    assert "UPLOADED" in body["error"]["message"]


def test_m1_completion_of_an_upload_s3_no_longer_has_ends_it_aborted(app, served_aws, admin_db):
    """Aborted behind the API's back (the bucket's lifecycle rule after days): 409, and the
    video is ABORTED instead of UPLOADING forever."""
    video_id = create(app)["video_id"]
    [upload] = open_uploads(served_aws)
    served_aws.s3.abort_multipart_upload(
        Bucket=served_aws.ingest_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
    )
    status, body, _ = complete(app, video_id)
    assert (status, body["error"]["code"]) == (409, "upload_not_open")
    assert row(admin_db, "SELECT status FROM videos")[0] == "ABORTED"


def test_m1_completion_whose_answer_was_lost_is_recognised_by_the_object(app, served_aws, admin_db):
    """S3 completed the upload but the API never recorded it (its answer lost, the function
    timed out): an abort now is 409 (the object is there, the upload went through) and a
    retried completion finds the object of the declared size and requests processing."""
    data = b"assembled already"
    video_id = create(app, size_bytes=len(data))["video_id"]
    upload_all(app, video_id, data)
    [upload_id] = row(admin_db, "SELECT upload_id FROM videos")
    key = source_key(video_id)
    parts = served_aws.s3.list_parts(Bucket=served_aws.ingest_bucket, Key=key, UploadId=upload_id)
    served_aws.s3.complete_multipart_upload(
        Bucket=served_aws.ingest_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts["Parts"]]
        },
    )
    status, body, _ = call(app, "DELETE", f"/videos/{video_id}/upload")
    assert (status, body["error"]["code"]) == (409, "upload_not_open")
    assert row(admin_db, "SELECT status FROM videos")[0] == "UPLOADING"
    status, body, _ = complete(app, video_id)
    assert (status, body["status"]) == (202, "UPLOADED")
    assert [event["job_id"] for event in read_stream(served_aws.kinesis, STREAM)] == [
        body["job_id"]
    ]


# --- limits and failures at creation -------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "status", "code", "field"),
    [
        ({"size_bytes": 10 * 1024**3 + 1}, 413, "upload_too_large", "size_bytes"),
        ({"content_type": "image/png"}, 415, "unsupported_content_type", "content_type"),
        (
            {"content_type": "application/x-mpegurl"},
            415,
            "unsupported_content_type",
            "content_type",
        ),
        ({"content_type": "Video/MP4"}, 400, "validation_failed", "content_type"),
        ({"size_bytes": 0}, 400, "validation_failed", "size_bytes"),
    ],
)
def test_m1_size_and_content_type_limits_refuse_before_any_upload_exists(
    app, served_aws, admin_db, overrides, status, code, field
):
    got, body, _ = call(app, "POST", "/videos", body={**VALID, **overrides})
    assert (got, body["error"]["code"], body["error"]["field"]) == (status, code, field)
    assert open_uploads(served_aws) == []
    assert row(admin_db, "SELECT count(*) FROM videos")[0] == 0


def test_m1_largest_allowed_upload_is_accepted_with_parts_under_the_s3_limit(app):
    upload = create(app, size_bytes=10 * 1024**3)["upload"]
    assert upload["part_count"] <= 10_000
    assert upload["part_size"] % MIB == 0


def test_m1_row_that_cannot_be_written_aborts_the_upload_it_created(
    served_aws, pg_server, redis_proc, redis_client, admin_db
):
    proxy = TcpProxy(pg_server.port)
    database = connect_as(pg_server, API_DB_USER, application_name="media-api", port=proxy.port)
    try:
        app = make_app(database, served_aws, redis_proc.port)
        assert call(app, "GET", "/videos")[0] == 200  # the schema check has run
        proxy.cut()
        status, body, _ = call(app, "POST", "/videos", body=VALID)
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
        assert open_uploads(served_aws) == []
    finally:
        database.close()
        proxy.close()


def test_m1_h4_request_with_no_time_left_for_s3_is_503_and_writes_nothing(
    api_database, served_aws, redis_proc, redis_client, admin_db
):
    app = make_app(api_database, served_aws, redis_proc.port, storage_seconds=0.0)
    status, body, headers = call(app, "POST", "/videos", body=VALID)
    assert (status, body["error"]["code"], headers["Retry-After"]) == (
        503,
        "storage_unavailable",
        "1",
    )
    assert open_uploads(served_aws) == []
    assert row(admin_db, "SELECT count(*) FROM videos")[0] == 0


# --- part URL requests ---------------------------------------------------------------------


def test_m1_part_numbers_beyond_the_upload_are_400_and_unknown_videos_404(app):
    video_id = create(app, size_bytes=PART + 1)["video_id"]
    body = {
        "parts": [
            {"part_number": 1, "checksum_sha256": sha256_b64(b"a")},
            {"part_number": 3, "checksum_sha256": sha256_b64(b"b")},
        ]
    }
    status, answer, _ = call(app, "POST", f"/videos/{video_id}/upload/parts", body=body)
    assert (status, answer["error"]["field"]) == (400, "parts[1].part_number")
    assert "beyond the upload's 2 parts" in answer["error"]["message"]
    status, answer, _ = call(app, "POST", f"/videos/{uuid.uuid4()}/upload/parts", body=body)
    assert (status, answer["error"]["code"]) == (404, "video_not_found")


def test_m1_get_shows_upload_status_without_the_upload_id_and_caches_only_settled_videos(
    app, admin_db, redis_client
):
    video_id = create(app)["video_id"]
    status, video, headers = call(app, "GET", f"/videos/{video_id}")
    assert (status, headers["X-Cache"], video["status"]) == (200, "BYPASS", "UPLOADING")
    assert video["progress"] is None and video["published_version"] is None
    assert not any("upload_id" in key for key in video)
    [upload_id] = row(admin_db, "SELECT upload_id FROM videos")
    assert upload_id not in str(video)
    assert redis_client.keys("*") == []
    admin_db.cursor().execute("UPDATE videos SET status = 'ABORTED', upload_id = NULL")
    assert call(app, "GET", f"/videos/{video_id}")[2]["X-Cache"] == "MISS"
    assert call(app, "GET", f"/videos/{video_id}")[2]["X-Cache"] == "HIT"


def test_m1_a_cached_entry_of_an_unsettled_video_is_not_served(app, admin_db, redis_proc):
    """Another writer (the worker refreshing the cache) may store a PROCESSING entry: the
    API reads such a video from the database, so its progress is current."""
    video_id = create(app)["video_id"]
    admin_db.cursor().execute("UPDATE videos SET status = 'PROCESSING', progress = 0.5")
    make_cache(redis_proc.port).put(video_id, {"status": "PROCESSING", "progress": 0.1}, 1)
    status, video, headers = call(app, "GET", f"/videos/{video_id}")
    assert (status, headers["X-Cache"], video["progress"]) == (200, "BYPASS", 0.5)


# --- H4: S3 that accepts connections and never answers --------------------------------------


@pytest.mark.parametrize("function_timeout", [1.0, 3.0, 6.0, 15.0, 28.0])
def test_m1_h4_upload_requests_fit_the_function_timeout(function_timeout):
    """The last S3 call starts before `storage`; with it, the two transactions after it and
    the stream put, an upload request still answers inside the function's timeout."""
    timeouts = api_timeouts(function_timeout)
    assert timeouts.storage > 0
    assert timeouts.upload_worst_case < function_timeout
    assert timeouts.worst_case < function_timeout


def test_m1_h4_hung_s3_answers_503_inside_the_function_timeout_and_leaves_the_upload_open(
    app, api_database, served_aws, redis_proc, monkeypatch, admin_db
):
    """Creation and completion behind an S3 that never answers: 503 storage_unavailable
    well inside a 6 s function, no row written, an open upload left UPLOADING."""
    video_id = create(app)["video_id"]
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{silent.getsockname()[1]}")
        timeouts = api_timeouts(6.0)
        s3 = ingest_client(
            region="eu-central-1",
            connect_timeout=timeouts.aws_connect,
            read_timeout=timeouts.aws_read,
            max_attempts=1,  # as the handler builds it
        )
        hung = make_app(
            api_database, served_aws, redis_proc.port, s3=s3, storage_seconds=timeouts.storage
        )
        for method, path, body in (
            ("POST", "/videos", VALID),
            ("POST", f"/videos/{video_id}/upload/complete", None),
            ("DELETE", f"/videos/{video_id}/upload", None),
        ):
            started = time.monotonic()
            status, answer, headers = call(hung, method, path, body=body)
            elapsed = time.monotonic() - started
            assert (status, answer["error"]["code"], headers["Retry-After"]) == (
                503,
                "storage_unavailable",
                "1",
            )
            assert elapsed < 6.0 * 0.6, f"{method} {path}: {elapsed:.1f} s"
    finally:
        silent.close()
    assert row(admin_db, "SELECT count(*), min(status) FROM videos") == [1, "UPLOADING"]
    assert len(open_uploads(served_aws)) == 1


def test_m1_parts_are_listed_across_listparts_pages(app, served_aws, monkeypatch):
    """ListParts answers at most 1,000 parts a page: every page is followed."""
    from services.common import uploads

    video_id = create(app, size_bytes=3 * PART)["video_id"]
    chunks = {1: b"a", 2: b"bb", 3: b"ccc"}
    urls = part_urls(app, video_id, chunks)
    for number, chunk in chunks.items():
        assert put_part(urls[number], chunk)[0] == 200
    monkeypatch.setattr(uploads, "_LIST_PAGE", 2)
    markers = []

    class CountingS3:
        def list_parts(self, **kwargs):
            markers.append(kwargs["PartNumberMarker"])
            return served_aws.s3.list_parts(**kwargs)

    store = IngestStore(CountingS3(), served_aws.ingest_bucket)
    [upload] = open_uploads(served_aws)
    listed = store.list_parts(upload["Key"], upload["UploadId"], deadline=time.monotonic() + 10)
    assert [(part.part_number, part.size) for part in listed] == [(1, 1), (2, 2), (3, 3)]
    assert markers == [0, 2]


def test_m1_assembled_object_of_another_size_ends_the_video_failed(app, served_aws, admin_db):
    """The object S3 assembled is not the declared size (parts replaced behind the API's
    back and completed): 409 upload_size_mismatch, the video FAILED, no job, no event."""
    video_id = create(app, size_bytes=10)["video_id"]
    [upload_id] = row(admin_db, "SELECT upload_id FROM videos")
    key = source_key(video_id)
    etag = served_aws.s3.upload_part(
        Bucket=served_aws.ingest_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"short"
    )["ETag"]
    served_aws.s3.complete_multipart_upload(
        Bucket=served_aws.ingest_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    status, body, _ = complete(app, video_id)
    assert (status, body["error"]["code"]) == (409, "upload_size_mismatch")
    assert "5 bytes, not the declared 10" in body["error"]["message"]
    assert row(admin_db, "SELECT status, upload_id FROM videos") == ["FAILED", None]
    assert row(admin_db, "SELECT count(*) FROM jobs")[0] == 0
    assert read_stream(served_aws.kinesis, STREAM) == []


def test_m1_racing_completions_write_one_job_and_answer_it_to_both(
    pg_server, served_aws, redis_proc, redis_client, admin_db
):
    """Two completions of one upload at once (a client retrying before its first answer):
    one job, the same job id in both answers, every event for that job. The event id is
    derived from the job, so even two puts (both saw requested_at unset) are one request
    to the worker."""
    import threading

    databases = [connect_as(pg_server, API_DB_USER, application_name="media-api") for _ in range(2)]
    try:
        apps = [make_app(database, served_aws, redis_proc.port) for database in databases]
        data = b"raced"
        video_id = create(apps[0], size_bytes=len(data))["video_id"]
        upload_all(apps[0], video_id, data)
        barrier, answers = threading.Barrier(2), []

        def finish(app) -> None:
            barrier.wait()
            answers.append(complete(app, video_id)[:2])

        threads = [threading.Thread(target=finish, args=(app,)) for app in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for database in databases:
            database.close()
    assert [status for status, _ in answers] == [202, 202], answers
    [job_id] = {body["job_id"] for _, body in answers}
    assert row(admin_db, "SELECT count(*), min(id::text) FROM jobs") == [1, job_id]
    events = read_stream(served_aws.kinesis, STREAM)
    assert 1 <= len(events) <= 2
    assert {(event["job_id"], event["event_id"]) for event in events} == {
        (job_id, events[0]["event_id"])
    }


def test_m1_part_urls_without_credentials_to_sign_with_are_503(
    app, api_database, served_aws, redis_proc, monkeypatch, tmp_path
):
    video_id = create(app)["video_id"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    # A fresh session: boto3's default one has cached the test credentials.
    s3 = boto3.session.Session(region_name="eu-central-1").client("s3")
    unsigned = make_app(api_database, served_aws, redis_proc.port, s3=s3)
    body = {"parts": [{"part_number": 1, "checksum_sha256": sha256_b64(b"x")}]}
    status, answer, headers = call(unsigned, "POST", f"/videos/{video_id}/upload/parts", body=body)
    assert (status, answer["error"]["code"], headers["Retry-After"]) == (
        503,
        "storage_unavailable",
        "1",
    )


def test_m1_parts_s3_refuses_to_assemble_are_409_and_the_upload_stays_open(
    app, api_database, served_aws, redis_proc, admin_db
):
    """A part replaced between the listing and the Complete call (S3: InvalidPart): the
    client is told to re-upload and complete again; nothing is written."""
    from botocore.exceptions import ClientError

    class RefusingS3:
        def __getattr__(self, name):
            return getattr(served_aws.s3, name)

        def complete_multipart_upload(self, **kwargs):
            raise ClientError(
                {"Error": {"Code": "InvalidPart", "Message": "part not found"}},
                "CompleteMultipartUpload",
            )

    data = b"replaced meanwhile"
    video_id = create(app, size_bytes=len(data))["video_id"]
    upload_all(app, video_id, data)
    refusing = make_app(api_database, served_aws, redis_proc.port, s3=RefusingS3())
    status, body, _ = complete(refusing, video_id)
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        409,
        "part_size_mismatch",
        "parts",
    )
    assert row(admin_db, "SELECT status FROM videos")[0] == "UPLOADING"
    assert len(open_uploads(served_aws)) == 1
    assert complete(app, video_id)[0] == 202
