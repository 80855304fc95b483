"""H1, H2: the API as a hostile client would use it, against real PostgreSQL and Redis.

Every request gets the documented success or a 4xx with the stable error body, never a 5xx,
and leaves no state behind; a connection that saw a client-side error never serves the next
request."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import PurePosixPath
from typing import Any

import pytest
from conftest import STREAM, api_event, connect_as
from svc_support import read_stream

from services.api.app import ApiApp, Dependencies
from services.common.aws import EventStream
from services.common.cache import VideoCache
from services.common.redis_client import create_redis
from services.common.roles import API_DB_USER
from services.common.settings import RedisSettings

pytestmark = pytest.mark.services

MEDIA_ROOT = PurePosixPath("/mnt/media")
VALID = {"title": "Pilot", "creator": "Studio A", "source_path": "uploads/pilot.mp4"}


@pytest.fixture
def api_database(pg_server, admin_db):
    database = connect_as(pg_server, API_DB_USER, application_name="media-api")
    yield database
    database.close()


@pytest.fixture
def app(api_database, aws, redis_proc, redis_client) -> ApiApp:
    settings = RedisSettings(host="127.0.0.1", port=redis_proc.port, tls=False)
    cache = VideoCache(create_redis(settings, None, client_name="media-api"), 300)
    return ApiApp(
        Dependencies(api_database, EventStream(aws.kinesis, STREAM), lambda: cache, MEDIA_ROOT)
    )


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


def assert_untouched(admin_db, aws) -> None:
    assert counts(admin_db) == (0, 0)
    assert read_stream(aws.kinesis, STREAM) == []


def assert_valid_post_commits_whole(app: ApiApp, admin_db) -> None:
    """The next valid request commits its video and its job, and nothing else."""
    status, body = send(app, api_event("POST", "/videos", body=VALID))
    assert status == 202, body
    assert counts(admin_db) == (1, 1)
    cursor = admin_db.cursor()
    cursor.execute("SELECT video_id FROM jobs WHERE id = %s", (uuid.UUID(body["job_id"]),))
    assert cursor.fetchone() == [uuid.UUID(body["video_id"])]


# --- H1/H2: invalid Unicode ----------------------------------------------------------


@pytest.mark.parametrize("field", ["title", "creator", "source_path"])
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
    assert_valid_post_commits_whole(app, admin_db)


@pytest.mark.parametrize("field", ["title", "creator", "source_path"])
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
    assert_valid_post_commits_whole(app, admin_db)


@pytest.mark.parametrize("character", ["\x7f", "\x85", "\x9b", "\x80", "\x9f", "\u2028"])
@pytest.mark.parametrize("field", ["title", "creator", "source_path"])
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
    assert status == 202, body


# --- H1: deep, huge and odd JSON -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        '{"title": ' + "[" * 1000 + "]" * 1000 + "}",
        '{"a":' * 1000 + "1" + "}" * 1000,
        '{"title": ' + "1" * 5000 + ', "creator": "c", "source_path": "a.mp4"}',
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


# --- H1: source references -----------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "file:///etc/passwd",
        "file:uploads/a.mp4",
        "s3://other-bucket/x",
        "https://user:secret@host/a.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "concat:uploads/a.mp4|/etc/passwd",
        "subfile,,start,0,end,0,,:uploads/a.mp4",
        "C:\\media\\a.mp4",
        "uploads\\..\\..\\etc\\passwd",
        "uploads/" + "a" * 256 + ".mp4",
    ],
)
def test_h1_source_path_is_a_path_inside_the_media_root_never_a_uri(app, admin_db, aws, source):
    """URIs with any scheme (with credentials, which went onto the stream), ffmpeg protocol
    prefixes, Windows paths and names no file system allows were accepted and stored."""
    status, body = send(app, api_event("POST", "/videos", body={**VALID, "source_path": source}))
    assert_refused(status, body, "validation_failed", "source_path")
    assert "secret" not in body["error"]["message"]
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
