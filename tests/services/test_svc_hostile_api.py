"""H1, H2: the API as a hostile client would use it, against real PostgreSQL and Redis.

Every request gets the documented success or a 4xx with the stable error body, never a 5xx,
and leaves no state behind; a connection that saw a client-side error never serves the next
request."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from conftest import STREAM, api_event, connect_as
from svc_support import read_stream
from upload_support import VALID, event, make_app, sha256_b64

from services.api.app import ApiApp
from services.common.roles import API_DB_USER

pytestmark = pytest.mark.services


@pytest.fixture
def api_database(pg_server, admin_db):
    database = connect_as(pg_server, API_DB_USER, application_name="media-api")
    yield database
    database.close()


@pytest.fixture
def app(api_database, aws, redis_proc, redis_client) -> ApiApp:
    return make_app(api_database, aws, redis_proc.port)


def send(app: ApiApp, event: dict[str, Any]) -> tuple[int, dict]:
    response = app.handle(event)
    return response["statusCode"], json.loads(response["body"])


def post_raw(app: ApiApp, text: str, **kwargs: Any) -> tuple[int, dict]:
    return send(app, api_event("POST", "/videos", raw_body=text, **kwargs))


def counts(admin_db) -> tuple[int, int]:
    cursor = admin_db.cursor()
    cursor.execute("SELECT (SELECT count(*) FROM videos), (SELECT count(*) FROM jobs)")
    return tuple(cursor.fetchone())


def assert_refused(status: int, body: dict, code: str, field: str | None = None) -> None:
    """A 4xx with the stable error body (http.ApiError) and nothing else."""
    assert 400 <= status < 500, body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert "Traceback" not in body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field


def open_uploads(aws) -> list[dict]:
    return aws.s3.list_multipart_uploads(Bucket=aws.ingest_bucket).get("Uploads", [])


def assert_untouched(admin_db, aws) -> None:
    assert counts(admin_db) == (0, 0)
    assert read_stream(aws.kinesis, STREAM) == []
    assert open_uploads(aws) == []


def assert_valid_post_commits_whole(app: ApiApp, admin_db, aws) -> None:
    """The next valid request commits its video with its upload id, and nothing else."""
    status, body = send(app, api_event("POST", "/videos", body=VALID))
    assert status == 201, body
    assert counts(admin_db) == (1, 0)
    [upload] = open_uploads(aws)
    cursor = admin_db.cursor()
    cursor.execute("SELECT upload_id FROM videos WHERE id = %s", (uuid.UUID(body["video_id"]),))
    assert cursor.fetchone() == [upload["UploadId"]]


# --- H1/H2: invalid Unicode ----------------------------------------------------------


@pytest.mark.parametrize("field", ["title", "creator", "content_type"])
def test_h1_h2_lone_surrogate_escape_is_400_and_the_next_post_commits_whole(
    app, admin_db, aws, field
):
    """`"\\ud800"` in any text field: was 500 from the driver, and the desynchronised warm
    connection made the next valid POST commit a video without its job."""
    text = json.dumps({**VALID, field: "a\ud800b"})  # json.dumps writes the escape
    assert "\\ud800" in text
    for _ in range(3):
        status, body = post_raw(app, text)
        assert_refused(status, body, "invalid_json")
    assert_untouched(admin_db, aws)
    assert_valid_post_commits_whole(app, admin_db, aws)


@pytest.mark.parametrize("field", ["title", "creator", "content_type"])
def test_h1_lone_surrogate_as_raw_bytes_or_decoded_text_is_400(app, admin_db, aws, field):
    """The surrogate's raw UTF-8-style bytes (base64 body), and a body the runtime already
    decoded into a str holding one (`body.encode()` raised)."""
    raw = json.dumps({**VALID, field: "a\ud800b"}, ensure_ascii=False)
    as_bytes = raw.encode("utf-8", "surrogatepass")
    status, body = post_raw(app, base64.b64encode(as_bytes).decode(), base64_body=False)
    assert_refused(status, body, "invalid_json")
    event = api_event("POST", "/videos", raw_body="x")
    event.update(body=base64.b64encode(as_bytes).decode(), isBase64Encoded=True)
    status, body = send(app, event)
    assert_refused(status, body, "invalid_json")
    event.update(body=raw, isBase64Encoded=False)
    status, body = send(app, event)
    assert_refused(status, body, "invalid_body")
    assert_untouched(admin_db, aws)
    assert_valid_post_commits_whole(app, admin_db, aws)


@pytest.mark.parametrize("character", ["\x7f", "\x85", "\x9b", "\x80", "\x9f", "\u2028"])
@pytest.mark.parametrize("field", ["title", "creator", "content_type"])
def test_h1_control_characters_del_and_c1_are_refused(app, admin_db, aws, field, character):
    """U+007F, the C1 controls (U+0085 a line break, U+009B a terminal escape) and the line
    separator were accepted although the README promises no control characters."""
    status, body = send(
        app, api_event("POST", "/videos", body={**VALID, field: f"a{character}b.mp4"})
    )
    assert_refused(status, body, "validation_failed", field)
    assert_untouched(admin_db, aws)


def test_h1_text_outside_the_control_ranges_is_still_accepted(app, admin_db):
    title = "Ödipus \u2013 東京 🎬 ‮ zero\u200bwidth"
    status, body = send(app, api_event("POST", "/videos", body={**VALID, "title": title}))
    assert status == 201, body


# --- H1: deep, huge and odd JSON -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        '{"title": ' + "[" * 1000 + "]" * 1000 + "}",
        '{"a":' * 1000 + "1" + "}" * 1000,
        '{"title": "t", "creator": "c", "size_bytes": ' + "1" * 5000 + "}",
        '{"title": -' + "9" * 4301 + "}",
        '{"title": 1' + "0" * 5000 + ".5}",
        '{"title": 1e400}',
        '{"title": NaN}',
        '{"title": -Infinity}',
    ],
    ids=[
        "array-1000-deep",
        "field-1000-deep",
        "object-1000-deep",
        "int-5000-digits",
        "negative-int-4301-digits",
        "float-5000-digits",
        "float-overflow",
        "nan",
        "infinity",
    ],
)
def test_h1_deep_nesting_and_huge_numbers_are_400_invalid_json(app, admin_db, aws, text):
    """Was 500 from RecursionError (nesting) and ValueError (int literal over 4,300 digits)."""
    status, body = post_raw(app, text)
    assert_refused(status, body, "invalid_json")
    assert_untouched(admin_db, aws)


def test_h1_body_over_the_limit_is_413_however_it_is_nested(app, admin_db, aws):
    status, body = post_raw(app, "[" * 40_000 + "]" * 40_000)
    assert_refused(status, body, "payload_too_large")
    assert_untouched(admin_db, aws)


# --- H1: upload declarations and part requests (M1) -------------------------------------


SIZES = [
    (10**60, 413, "upload_too_large"),
    (2**63, 413, "upload_too_large"),
    (-(2**63), 400, "validation_failed"),
    (0, 400, "validation_failed"),
    (1.5, 400, "validation_failed"),
    (1e3, 400, "validation_failed"),
    ("1000", 400, "validation_failed"),
    (False, 400, "validation_failed"),
    (None, 400, "validation_failed"),
    ({"$gt": 0}, 400, "validation_failed"),
    ([1], 400, "validation_failed"),
]
CONTENT_TYPES = [
    "",
    "video/",
    "/mp4",
    "video/mp4\r\nx-amz-acl: public-read",
    "video/mp4 ",
    "VIDEO/MP4",
    "video/" + "a" * 101,
    "text/html",
    "application/vnd.apple.mpegurl",
    7,
    None,
]


def test_h1_m1_declared_size_and_content_type_of_any_type_are_refused_before_s3(app, admin_db, aws):
    """Huge, negative, fractional and non-numeric sizes; content types that smuggle a
    header into CreateMultipartUpload or name a playlist (M3): 4xx, and no upload opened.
    One app for all cases: each case is cheap, a fixture per case is not."""
    for size_bytes, status, code in SIZES:
        got, body = send(
            app, api_event("POST", "/videos", body={**VALID, "size_bytes": size_bytes})
        )
        assert got == status, size_bytes
        assert_refused(got, body, code, "size_bytes")
    for content_type in CONTENT_TYPES:
        got, body = send(
            app, api_event("POST", "/videos", body={**VALID, "content_type": content_type})
        )
        assert got in (400, 415), content_type
        assert_refused(got, body, body["error"]["code"], "content_type")
    assert_untouched(admin_db, aws)


GOOD = sha256_b64(b"part")


def _part(**fields: Any) -> dict[str, Any]:
    return {"parts": [{"part_number": 1, "checksum_sha256": GOOD, **fields}]}


HOSTILE_PARTS = [
    ({"parts": []}, "parts"),
    ({"parts": {}}, "parts"),
    ({"parts": "1"}, "parts"),
    ({}, "parts"),
    ({"parts": [{"part_number": 1, "checksum_sha256": GOOD}] * 2}, "parts[1].part_number"),
    (_part(part_number=0), "parts[0].part_number"),
    (_part(part_number=-1), "parts[0].part_number"),
    (_part(part_number=10_001), "parts[0].part_number"),
    (_part(part_number=10**40), "parts[0].part_number"),
    (_part(part_number="1"), "parts[0].part_number"),
    (_part(part_number=1.0), "parts[0].part_number"),
    (_part(part_number=True), "parts[0].part_number"),
    ({"parts": [{"checksum_sha256": GOOD}]}, "parts[0].part_number"),
    ({"parts": [{"part_number": 1}]}, "parts[0].checksum_sha256"),
    (_part(checksum_sha256=GOOD[:-1]), "parts[0].checksum_sha256"),
    (_part(checksum_sha256=GOOD[:-2] + "B="), "parts[0].checksum_sha256"),
    (_part(checksum_sha256="=" * 44), "parts[0].checksum_sha256"),
    (_part(checksum_sha256=" " + GOOD[1:]), "parts[0].checksum_sha256"),
    (_part(checksum_sha256="a" * 10_000), "parts[0].checksum_sha256"),
    (_part(checksum_sha256="é" * 44), "parts[0].checksum_sha256"),
    (_part(checksum_sha256=["x"]), "parts[0].checksum_sha256"),
    (_part(acl="public-read"), "parts[0].acl"),
    ({"parts": [1, 2]}, "parts[0]"),
    ({"parts": [{"part_number": n, "checksum_sha256": GOOD} for n in range(1, 102)]}, "parts"),
    ({**_part(), "upload_id": "x"}, "upload_id"),
]


def test_h1_m1_hostile_part_requests_are_400_naming_the_item_and_sign_nothing(app):
    """Duplicates, zero, huge numbers, strings, non-canonical or wrong-length checksums,
    an ACL and an upload id smuggled in: each is a 400 naming the item, and no URL."""
    status, body = send(app, api_event("POST", "/videos", body={**VALID, "size_bytes": 1}))
    video_id = body["video_id"]
    for parts_body, field in HOSTILE_PARTS:
        status, body = send(app, event("POST", f"/videos/{video_id}/upload/parts", body=parts_body))
        assert_refused(status, body, "validation_failed", field)
        assert "X-Amz-Signature" not in json.dumps(body)


def test_h1_m1_upload_routes_refuse_a_malformed_video_id(app, admin_db, aws):
    for video_id in ["..", "not-a-uuid", "%2e%2e", "0" * 31 + "g", "a" * 5000, "\x00"]:
        for method, route in (("POST", "/parts"), ("POST", "/complete"), ("DELETE", "")):
            body = {"parts": [{"part_number": 1, "checksum_sha256": GOOD}]} if route else None
            status, answer = send(
                app, event(method, f"/videos/{video_id}/upload{route}", body=body)
            )
            assert_refused(status, answer, "validation_failed", "videoId")
    assert_untouched(admin_db, aws)


# --- H1: list cursors ----------------------------------------------------------------


def _cursor(document: Any) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor({"u": "0001-01-01T00:00:00+14:00", "i": str(uuid.uuid4()), "s": None}),
        _cursor({"u": "9999-12-31T23:59:59-14:00", "i": str(uuid.uuid4()), "s": None}),
        _cursor(("[" * 1000 + "]" * 1000).encode()),
        _cursor(b'{"u": ' + b"1" * 5000 + b"}"),
        _cursor({"u": "2024-01-01T00:00:00+00:00", "i": 12345, "s": None}),
        _cursor({"u": ["2024"], "i": str(uuid.uuid4()), "s": None}),
        _cursor({"u": "2024-01-01T00:00:00+00:00", "i": str(uuid.uuid4())}),
        _cursor([1, 2, 3]),
        _cursor("just a string"),
        _cursor(b"\xed\xa0\x80"),
        "€" * 10,
        "A" * 100_000,
    ],
    ids=[
        "year-1-plus-14h",
        "year-9999-minus-14h",
        "nested-1000",
        "int-5000-digits",
        "id-not-a-string",
        "time-not-a-string",
        "missing-status",
        "a-list",
        "a-string",
        "surrogate-bytes",
        "not-ascii",
        "huge",
    ],
)
def test_h1_cursor_that_this_api_did_not_issue_is_400(app, cursor):
    """Range-edge timestamps (no UTC equivalent), deep JSON and wrong types were 500."""
    status, body = send(app, api_event("GET", "/videos", query={"cursor": cursor}))
    assert_refused(status, body, "validation_failed", "cursor")


# --- H2: the database connection -----------------------------------------------------


def _backend(cursor) -> int:
    cursor.execute("SELECT pg_backend_pid()")
    return cursor.fetchone()[0]


def test_h2_connection_that_saw_a_client_side_error_is_discarded(database, admin_db):
    """An error the server did not report (the driver failed to encode a parameter midway
    through a message) leaves the protocol state unknown: the next transaction must run on
    a new connection and see nothing of the failed one."""
    first = database.run(_backend)
    video_id = uuid.uuid4()

    def insert_then_fail_in_the_driver(cursor) -> None:
        cursor.execute(
            "INSERT INTO videos (id, title, creator, source_uri) VALUES (%s, 't', 'c', 'a')",
            (video_id,),
        )
        cursor.execute("SELECT %s", ("a\ud800b",))

    for _ in range(3):
        with pytest.raises(UnicodeEncodeError):
            database.run(insert_then_fail_in_the_driver)
    assert database.run(_backend) != first
    assert database.run(lambda c: (c.execute("SELECT count(*) FROM videos"), c.fetchone())[1]) == [
        0
    ]
    assert counts(admin_db) == (0, 0)


def test_h2_error_the_server_reported_keeps_the_connection(database):
    """A server-reported SQL error is rolled back cleanly; reconnecting would only cost."""
    first = database.run(_backend)
    with pytest.raises(Exception, match="no_such_column"):
        database.run(lambda c: c.execute("SELECT no_such_column FROM videos"))
    assert database.run(_backend) == first
