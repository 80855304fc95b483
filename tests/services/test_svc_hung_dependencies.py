"""H4: dependencies that accept connections and never answer, through the Lambda entry point.

Before: every GET took 8 s and a missing id 4 s behind a hung Redis (1 s timeout, retried,
plus the connection handshake), and with PostgreSQL hung as well the 503 came after 14 s
against a 15 s function timeout, whatever that timeout was."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
from conftest import STREAM, api_event

from services.api import handler as lambda_handler

pytestmark = pytest.mark.services


class HungServer:
    """Accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for connection in self._held:
            connection.close()


class Context:
    aws_request_id = "r-1"

    def __init__(self, function_timeout: float) -> None:
        self._deadline = time.monotonic() + function_timeout

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


@pytest.fixture
def hung():
    server = HungServer()
    yield server
    server.close()


@pytest.fixture
def env(monkeypatch, aws, pg_server, redis_proc, admin_db):
    values = {
        "DB_HOST": pg_server.host,
        "DB_PORT": str(pg_server.port),
        "DB_NAME": "media",
        "DB_SSL": "false",
        "DB_SECRET_ARN": aws.db_secret_arn,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_proc.port),
        "REDIS_TLS": "false",
        "STREAM_NAME": STREAM,
        "INGEST_BUCKET": aws.ingest_bucket,
        "LOG_LEVEL": "WARNING",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    lambda_handler.reset()
    yield monkeypatch
    lambda_handler.reset()


def invoke(event, function_timeout: float = 15.0) -> tuple[int, dict, dict, float]:
    started = time.monotonic()
    response = lambda_handler.handler(event, Context(function_timeout))
    elapsed = time.monotonic() - started
    return response["statusCode"], json.loads(response["body"]), response["headers"], elapsed


def _create() -> str:
    create = {"title": "t", "creator": "c", "size_bytes": 1000, "content_type": "video/mp4"}
    status, body, _, _ = invoke(api_event("POST", "/videos", body=create))
    assert status == 201, body
    return body["video_id"]


def test_h4_hung_cache_falls_back_to_the_database_quickly_and_stays_bypassed(env, hung):
    env.setenv("REDIS_PORT", str(hung.port))
    video_id = _create()
    status, body, headers, elapsed = invoke(api_event("GET", f"/videos/{video_id}"))
    assert (status, headers["X-Cache"], body["id"]) == (200, "BYPASS", video_id)
    assert elapsed < 1.5, f"first GET behind a hung cache took {elapsed:.1f} s (was 8 s)"
    started = time.monotonic()
    for _ in range(5):
        status, _, headers, _ = invoke(api_event("GET", f"/videos/{video_id}"))
        assert (status, headers["X-Cache"]) == (200, "BYPASS")
    assert time.monotonic() - started < 1.0, "the cache is not bypassed after a failure"


def test_h4_missing_id_behind_a_hung_cache_is_a_quick_404(env, hung):
    env.setenv("REDIS_PORT", str(hung.port))
    status, body, _, elapsed = invoke(api_event("GET", f"/videos/{uuid.uuid4()}"))
    assert (status, body["error"]["code"]) == (404, "video_not_found")
    assert elapsed < 1.5, f"took {elapsed:.1f} s (was 4 s)"


@pytest.mark.parametrize("function_timeout", [6.0, 15.0])
def test_h4_cache_and_database_both_hung_answer_503_inside_the_function_timeout(
    env, hung, function_timeout
):
    """Was 14 s whatever the function's timeout: a 6 s function was killed unanswered."""
    env.setenv("REDIS_PORT", str(hung.port))
    env.setenv("DB_PORT", str(hung.port))
    for path in (f"/videos/{uuid.uuid4()}", "/videos"):
        status, body, headers, elapsed = invoke(api_event("GET", path), function_timeout)
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
        assert headers["Retry-After"] == "1"
        assert elapsed < function_timeout * 0.6, f"{path}: {elapsed:.1f} s"


def test_h4_hung_database_costs_one_socket_timeout_and_says_so(pg_server, hung):
    from services.common.db import Database, DatabaseUnavailable
    from services.common.secrets import StaticDbCredentials

    database = Database(
        pg_server.settings(port=hung.port),
        StaticDbCredentials("u", "p"),
        application_name="media-api",
        statement_timeout_seconds=0.5,
        socket_timeout=1.0,
    )
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="did not answer within 1 s"):
        database.run(lambda cursor: cursor.execute("SELECT 1"))
    assert time.monotonic() - started < 1.8


@pytest.mark.parametrize("function_timeout", [1.0, 3.0, 6.0, 10.0, 15.0, 28.0])
def test_h4_timeouts_are_sized_to_the_function_budget(function_timeout):
    timeouts = lambda_handler.api_timeouts(function_timeout)
    assert timeouts.worst_case < function_timeout
    assert 0 < timeouts.statement < timeouts.database
    assert 0 < timeouts.cache <= 0.5
