"""R2, M1: API handlers against real PostgreSQL and Redis, moto for S3, Kinesis and Secrets
Manager (in process; tests/services/test_svc_uploads.py runs the upload over moto's server).

The app logs in as the API's role (media_api, G5) with only the grants of migrations 003 and
005, so every flow here (create with its upload, fetch, list) also proves those grants are
enough."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import APP_PASSWORD, APP_USER, STREAM, api_event, connect_as
from svc_support import TcpProxy, read_stream
from upload_support import VALID, make_app, make_cache, make_uploads

from services.api.app import ApiApp, Dependencies
from services.common.aws import EventStream
from services.common.cache import VideoCache
from services.common.db import Database
from services.common.migrations import apply_migrations
from services.common.roles import API_DB_USER
from services.common.secrets import StaticDbCredentials
from services.common.uploads import plan_parts
from services.contract import source_key

pytestmark = pytest.mark.services


@pytest.fixture
def api_database(pg_server, admin_db):
    """Logged in as the API's role (R2 with least privilege), as the Lambda is."""
    database = connect_as(pg_server, API_DB_USER, application_name="media-api")
    yield database
    database.close()


@pytest.fixture
def app(api_database, aws, redis_proc, redis_client) -> ApiApp:
    return make_app(api_database, aws, redis_proc.port)


def call(app: ApiApp, method: str, path: str, **kwargs: Any) -> tuple[int, dict, dict]:
    response = app.handle(api_event(method, path, **kwargs))
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def create(app: ApiApp, **overrides: Any) -> dict:
    status, body, _ = call(app, "POST", "/videos", body={**VALID, **overrides})
    assert status == 201, body
    return body


def row(admin_db, sql: str, *params: Any) -> Any:
    cursor = admin_db.cursor()
    cursor.execute(sql, params)
    return cursor.fetchone()


# --- POST /videos ---------------------------------------------------------------------


def test_r2_m1_create_writes_an_uploading_row_and_opens_its_upload_without_an_event(
    app, aws, admin_db
):
    """Processing is requested when the upload completes, not at creation: no job, no event."""
    status, body, headers = call(app, "POST", "/videos", body=VALID)
    assert status == 201
    assert body["status"] == "UPLOADING"
    assert headers["Location"] == f"/videos/{body['video_id']}"
    key = source_key(body["video_id"])
    [upload] = aws.s3.list_multipart_uploads(Bucket=aws.ingest_bucket)["Uploads"]
    assert upload["Key"] == key
    video = row(
        admin_db,
        "SELECT status, title, creator, source_uri, content_type, upload_size_bytes, upload_id"
        " FROM videos WHERE id = %s",
        uuid.UUID(body["video_id"]),
    )
    assert video == [
        "UPLOADING",
        "Pilot",
        "Studio A",
        key,
        "video/mp4",
        VALID["size_bytes"],
        upload["UploadId"],
    ]
    assert row(admin_db, "SELECT count(*) FROM jobs")[0] == 0
    assert read_stream(aws.kinesis, STREAM) == []


@pytest.mark.parametrize(
    ("size_bytes", "part_size", "part_count"),
    [
        (1, 8 * 2**20, 1),
        (8 * 2**20, 8 * 2**20, 1),
        (8 * 2**20 + 1, 8 * 2**20, 2),
        (100 * 2**30, 11 * 2**20, 9_310),
        (5 * 2**40, 525 * 2**20, 9_987),
    ],
)
def test_m1_part_size_is_at_least_8_mib_in_whole_mib_and_fits_10000_parts(
    size_bytes, part_size, part_count
):
    """AWS-PITFALLS 118: a fixed 8 MiB would cap uploads at 78 GiB."""
    plan = plan_parts(size_bytes)
    assert (plan.part_size, plan.part_count) == (part_size, part_count)
    assert (plan.part_count - 1) * plan.part_size < size_bytes <= plan.part_count * plan.part_size


def test_m1_sizes_s3_cannot_hold_in_10000_parts_are_refused_by_the_plan():
    with pytest.raises(ValueError, match="larger than S3's 5 GiB"):
        plan_parts(10_000 * 5 * 2**30 + 1)


def test_m1_create_answers_the_plan(app):
    upload = create(app, size_bytes=8 * 2**20 + 1)["upload"]
    assert upload == {
        "part_size": 8 * 2**20,
        "part_count": 2,
        "max_parts_per_request": 100,
        "expires_in": 900,
    }


def test_r2_create_accepts_a_base64_encoded_body(app, admin_db):
    """API Gateway base64-encodes some bodies; the decoded fields are what gets stored."""
    status, body, _ = call(app, "POST", "/videos", body=VALID, base64_body=True)
    assert status == 201
    video = row(
        admin_db,
        "SELECT status, title, creator FROM videos WHERE id = %s",
        uuid.UUID(body["video_id"]),
    )
    assert video == ["UPLOADING", "Pilot", "Studio A"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"creator": "c", "size_bytes": 1, "content_type": "video/mp4"}, "title"),
        ({**VALID, "title": "   "}, "title"),
        ({**VALID, "title": "x" * 201}, "title"),
        ({**VALID, "title": 42}, "title"),
        ({**VALID, "title": "bad\x07bell"}, "title"),
        ({**VALID, "creator": ""}, "creator"),
        ({**VALID, "creator": "y" * 101}, "creator"),
        ({**VALID, "size_bytes": "100"}, "size_bytes"),
        ({**VALID, "size_bytes": 100.0}, "size_bytes"),
        ({**VALID, "size_bytes": True}, "size_bytes"),
        ({**VALID, "size_bytes": -1}, "size_bytes"),
        ({k: v for k, v in VALID.items() if k != "size_bytes"}, "size_bytes"),
        ({**VALID, "content_type": "video"}, "content_type"),
        ({**VALID, "content_type": "video/mp4; codecs=avc1"}, "content_type"),
        ({**VALID, "content_type": ["video/mp4"]}, "content_type"),
        ({**VALID, "source_path": "uploads/pilot.mp4"}, "source_path"),
        ({**VALID, "priority": "high"}, "priority"),
    ],
)
def test_r2_create_rejects_invalid_fields_with_400_naming_the_field(
    app, admin_db, aws, payload, field
):
    status, body, _ = call(app, "POST", "/videos", body=payload)
    assert status == 400
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["field"] == field
    assert row(admin_db, "SELECT count(*) FROM videos")[0] == 0
    assert aws.s3.list_multipart_uploads(Bucket=aws.ingest_bucket).get("Uploads", []) == []


def test_r2_create_rejects_a_non_object_body(app):
    status, body, _ = call(app, "POST", "/videos", body=["not", "an", "object"])
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "validation_failed",
        "body",
    )


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"raw_body": "{not json"}, 400, "invalid_json"),
        ({"raw_body": ""}, 400, "invalid_json"),
        ({"body": VALID, "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"body": VALID, "headers": {}}, 415, "unsupported_media_type"),
        ({"body": {**VALID, "title": "t" * 70_000}}, 413, "payload_too_large"),
    ],
)
def test_r2_create_rejects_unusable_bodies(app, kwargs, status, code):
    got_status, body, _ = call(app, "POST", "/videos", **kwargs)
    assert (got_status, body["error"]["code"]) == (status, code)


def test_r2_create_rejects_a_body_flagged_base64_that_is_not(app):
    event = api_event("POST", "/videos", raw_body="%%%")
    event["isBase64Encoded"] = True
    response = app.handle(event)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid_body"


def test_r2_database_outage_returns_503_without_details(aws, redis_proc, pg_server, admin_db):
    proxy = TcpProxy(pg_server.port)
    proxy.cut()
    db = connect_as(pg_server, API_DB_USER, application_name="media-api", port=proxy.port)
    try:
        app = make_app(db, aws, redis_proc.port)
        status, body, _ = call(app, "POST", "/videos", body=VALID)
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
        assert "Traceback" not in json.dumps(body)
        status, body, _ = call(app, "GET", f"/videos/{uuid.uuid4()}")
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
        proxy.restore()
        status, body, _ = call(app, "POST", "/videos", body=VALID)
        assert status == 201
    finally:
        db.close()
        proxy.close()


# --- GET /videos/{videoId} --------------------------------------------------------------


def test_r2_get_is_cache_aside_miss_then_hit_with_ttl_for_a_settled_video(
    app, redis_client, admin_db
):
    created = create(app)
    path = f"/videos/{created['video_id']}"
    assert call(app, "GET", path)[2]["X-Cache"] == "BYPASS"  # UPLOADING: never cached
    admin_db.cursor().execute("UPDATE videos SET status = 'FAILED', upload_id = NULL")
    status, first, headers = call(app, "GET", path)
    assert (status, headers["X-Cache"]) == (200, "MISS")
    assert first["id"] == created["video_id"]
    assert first["status"] == "FAILED"
    assert first["duration_s"] is None
    key = VideoCache.key(created["video_id"])
    assert 0 < redis_client.ttl(key) <= 300
    # Change the row behind the cache's back: a hit must come from Redis, not the database.
    admin_db.cursor().execute("UPDATE videos SET title = 'changed'")
    status, second, headers = call(app, "GET", path)
    assert (status, headers["X-Cache"]) == (200, "HIT")
    assert second == first


def test_r2_get_unknown_video_is_404(app):
    status, body, _ = call(app, "GET", f"/videos/{uuid.uuid4()}")
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        404,
        "video_not_found",
        "videoId",
    )


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1234", "'; DROP TABLE videos;--"])
def test_r2_get_malformed_id_is_400(app, bad_id):
    status, body, _ = call(app, "GET", f"/videos/{bad_id}")
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "validation_failed",
        "videoId",
    )


def test_r2_redis_outage_degrades_to_the_database(
    api_database, aws, redis_proc, redis_client, admin_db
):
    """C5: the cache is an optimisation; with Redis gone GET still answers from PostgreSQL."""
    proxy = TcpProxy(redis_proc.port)
    app = make_app(api_database, aws, proxy.port)
    try:
        created = create(app)
        admin_db.cursor().execute("UPDATE videos SET status = 'COMPLETED'")
        proxy.cut()
        status, body, headers = call(app, "GET", f"/videos/{created['video_id']}")
        assert (status, headers["X-Cache"], body["id"]) == (200, "BYPASS", created["video_id"])
        proxy.restore()
        status, _, headers = call(app, "GET", f"/videos/{created['video_id']}")
        assert (status, headers["X-Cache"]) == (200, "MISS")
    finally:
        proxy.close()


def test_r2_cache_that_cannot_be_built_is_bypassed(api_database, aws):
    from services.common.secrets import CredentialsError

    def broken_cache() -> VideoCache:
        raise CredentialsError("cannot read the redis token")

    app = ApiApp(
        Dependencies(
            api_database, EventStream(aws.kinesis, STREAM), broken_cache, make_uploads(aws)
        )
    )
    created = create(app)
    status, _, headers = call(app, "GET", f"/videos/{created['video_id']}")
    assert (status, headers["X-Cache"]) == (200, "BYPASS")


def test_r2_unexpected_error_is_500_without_a_stack_trace(api_database, aws):
    def exploding_cache() -> VideoCache:
        raise RuntimeError("secret internals")

    app = ApiApp(
        Dependencies(
            api_database, EventStream(aws.kinesis, STREAM), exploding_cache, make_uploads(aws)
        )
    )
    status, body, _ = call(app, "GET", f"/videos/{uuid.uuid4()}")
    assert (status, body) == (
        500,
        {"error": {"code": "internal_error", "message": "internal error"}},
    )


def test_r1_api_refuses_to_serve_until_the_migration_function_has_run(
    pg_server, empty_database, aws, redis_proc, redis_client, caplog
):
    """The API does not migrate: against a schema missing migrations it answers 500
    configuration_error (logging which ones), and serves once they are applied."""
    database = connect_as(pg_server, API_DB_USER, application_name="media-api", name=empty_database)
    owner = Database(
        pg_server.settings(name=empty_database),
        StaticDbCredentials(APP_USER, APP_PASSWORD),
        application_name="tests",
    )
    try:
        app = make_app(database, aws, redis_proc.port)
        status, body, _ = call(app, "GET", "/videos")
        assert (status, body["error"]["code"]) == (500, "configuration_error")
        [record] = [r for r in caplog.records if r.message == "database schema is not current"]
        assert "missing migration(s) 001_videos_and_jobs" in record.error
        apply_migrations(owner)
        assert call(app, "GET", "/videos")[:2] == (200, {"items": [], "next_cursor": None})
    finally:
        database.close()
        owner.close()


def test_c5_cache_never_replaces_a_newer_entry_with_an_older_one(redis_proc, redis_client):
    cache = make_cache(redis_proc.port, ttl=60)
    video_id = str(uuid.uuid4())
    assert cache.put(video_id, {"status": "COMPLETED"}, 2_000)
    assert not cache.put(video_id, {"status": "PROCESSING"}, 1_000)
    assert cache.get(video_id) == {"status": "COMPLETED"}
    assert cache.put(video_id, {"status": "FAILED"}, 3_000)
    assert cache.get(video_id) == {"status": "FAILED"}


# --- GET /videos ------------------------------------------------------------------------


def test_r2_list_pages_newest_first_with_an_opaque_cursor(app, admin_db):
    ids = [create(app, title=f"v{i}")["video_id"] for i in range(5)]
    # Same-second uploads: the id breaks ties, so force distinct, known timestamps too.
    for offset, video_id in enumerate(ids):
        admin_db.cursor().execute(
            "UPDATE videos SET uploaded_at = now() - %s * interval '1 minute' WHERE id = %s",
            (len(ids) - offset, uuid.UUID(video_id)),
        )
    seen, cursor = [], None
    for _ in range(3):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page, _ = call(app, "GET", "/videos", query=query)
        assert status == 200
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert cursor is None


def test_r2_list_keyset_breaks_timestamp_ties_by_id(app, admin_db):
    ids = [create(app)["video_id"] for _ in range(4)]
    admin_db.cursor().execute("UPDATE videos SET uploaded_at = '2024-01-01T00:00:00Z'")
    first_status, first, _ = call(app, "GET", "/videos", query={"limit": "3"})
    second_status, second, _ = call(
        app, "GET", "/videos", query={"limit": "3", "cursor": first["next_cursor"]}
    )
    assert (first_status, second_status) == (200, 200)
    listed = [item["id"] for item in first["items"] + second["items"]]
    assert listed == sorted(ids, reverse=True)
    assert second["next_cursor"] is None


def test_r2_list_filters_by_status(app, admin_db):
    done = create(app)["video_id"]
    create(app)
    admin_db.cursor().execute(
        "UPDATE videos SET status = 'COMPLETED' WHERE id = %s", (uuid.UUID(done),)
    )
    status, page, _ = call(app, "GET", "/videos", query={"status": "completed"})
    assert status == 200
    assert [item["id"] for item in page["items"]] == [done]
    status, page, _ = call(app, "GET", "/videos", query=None)
    assert len(page["items"]) == 2


def test_r2_list_default_limit_is_20(app, admin_db):
    cursor = admin_db.cursor()
    for i in range(25):
        cursor.execute(
            "INSERT INTO videos (id, title, creator, source_uri) VALUES (%s, %s, 'c', 'a.mp4')",
            (uuid.uuid4(), f"t{i}"),
        )
    status, page, _ = call(app, "GET", "/videos")
    assert (status, len(page["items"])) == (200, 20)
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "eyJ1IjogMX0"}, "cursor"),
        ({"cursor": "WzEsMl0"}, "cursor"),
    ],
)
def test_r2_list_rejects_bad_parameters_with_400(app, query, field):
    status, body, _ = call(app, "GET", "/videos", query=query)
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "validation_failed",
        field,
    )


def test_r2_list_rejects_a_cursor_from_another_status_listing(app):
    from datetime import UTC, datetime

    from services.api.validation import encode_cursor

    naive = encode_cursor(datetime(2024, 1, 1), uuid.uuid4(), None)
    other = encode_cursor(datetime(2024, 1, 1, tzinfo=UTC), uuid.uuid4(), "FAILED")
    for cursor in (naive, other):
        status, body, _ = call(app, "GET", "/videos", query={"status": "QUEUED", "cursor": cursor})
        assert (status, body["error"]["field"]) == (400, "cursor")


# --- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    # A fixed id: pytest-xdist needs every worker to collect the same test ids.
    [("DELETE", "/videos", "GET, POST"), ("PUT", f"/videos/{uuid.UUID(int=7)}", "GET")],
)
def test_r2_wrong_method_is_405_with_allow(app, method, path, allow):
    status, body, headers = call(app, method, path)
    assert (status, body["error"]["code"], headers["Allow"]) == (405, "method_not_allowed", allow)


def test_r2_unknown_route_is_404(app):
    status, body, _ = call(app, "GET", "/nothing/here")
    assert (status, body["error"]["code"]) == (404, "route_not_found")


def test_r2_routes_by_path_when_resource_is_missing(app):
    """A proxy resource ({proxy+}) or a direct invocation carries only the path."""
    created = create(app)
    event = api_event("GET", f"/videos/{created['video_id']}/")
    event["resource"], event["pathParameters"] = "/{proxy+}", {"proxy": "ignored"}
    response = app.handle(event)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["id"] == created["video_id"]
