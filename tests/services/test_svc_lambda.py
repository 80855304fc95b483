"""R2, M1 through the Lambda entry point: settings from env, secrets by ARN, rotation, the
upload flow with the clients the handler builds itself."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import requests
from conftest import APP_PASSWORD, APP_USER, STREAM, api_event
from pytest_redis import factories as redis_factories
from svc_support import read_stream
from upload_support import event, sha256_b64

from services.api import handler as lambda_handler
from services.common.roles import API_DB_USER

pytestmark = pytest.mark.services

REDIS_TOKEN = "redis-auth-token-1"
CREATE = {"title": "t", "creator": "c", "size_bytes": 1000, "content_type": "video/mp4"}
redis_proc_auth = redis_factories.redis_proc(
    executable=shutil.which("redis-server"), port=None, password=REDIS_TOKEN
)


@pytest.fixture
def lambda_env(monkeypatch, aws, pg_server, redis_proc_auth, admin_db):
    aws.secrets.put_secret_value(SecretId=aws.redis_secret_arn, SecretString=REDIS_TOKEN)
    env = {
        "DB_HOST": pg_server.host,
        "DB_PORT": str(pg_server.port),
        "DB_NAME": "media",
        "DB_SSL": "false",
        "DB_SECRET_ARN": aws.db_secret_arn,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_proc_auth.port),
        "REDIS_TLS": "false",
        "REDIS_AUTH_SECRET_ARN": aws.redis_secret_arn,
        "STREAM_NAME": STREAM,
        "INGEST_BUCKET": aws.ingest_bucket,
        "UPLOAD_MAX_BYTES": str(64 * 2**20),
        "UPLOAD_CONTENT_TYPES": "video/mp4,video/webm",
        "UPLOAD_URL_TTL_SECONDS": "600",
        "CACHE_TTL_SECONDS": "60",
        "LOG_LEVEL": "INFO",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    lambda_handler.reset()
    yield env
    lambda_handler.reset()
    root.handlers[:] = handlers
    root.setLevel(level)


def invoke(event):
    response = lambda_handler.handler(event, type("Context", (), {"aws_request_id": "r-1"})())
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def set_app_password(admin_db, password: str) -> None:
    admin_db.cursor().execute(f"ALTER ROLE {APP_USER} PASSWORD '{password}'")


def kill_api_connections(admin_db) -> int:
    cursor = admin_db.cursor()
    cursor.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'media-api'"
    )
    return cursor.fetchone()[0]


def test_r2_lambda_handler_creates_and_reads_through_the_authenticated_cache(lambda_env, admin_db):
    """Credentials and the Redis AUTH token come from Secrets Manager by ARN."""
    status, created, _ = invoke(api_event("POST", "/videos", body=CREATE))
    assert status == 201
    path = f"/videos/{created['video_id']}"
    assert invoke(api_event("GET", path))[2]["X-Cache"] == "BYPASS"  # UPLOADING
    admin_db.cursor().execute("UPDATE videos SET status = 'FAILED', upload_id = NULL")
    assert invoke(api_event("GET", path))[2]["X-Cache"] == "MISS"
    status, body, headers = invoke(api_event("GET", path))
    assert (status, headers["X-Cache"], body["status"]) == (200, "HIT", "FAILED")


def test_m1_lambda_handler_runs_the_upload_with_the_stack_limits_from_its_environment(
    lambda_env, aws, admin_db
):
    """UPLOAD_* and INGEST_BUCKET reach the app: the limits answer 413/415, the URLs carry
    the TTL, and a part PUT through the URL (moto in process) completes the upload."""
    too_big = {**CREATE, "size_bytes": 64 * 2**20 + 1}
    assert invoke(api_event("POST", "/videos", body=too_big))[0] == 413
    quicktime = {**CREATE, "content_type": "video/quicktime"}
    assert invoke(api_event("POST", "/videos", body=quicktime))[0] == 415
    data = b"a whole clip"
    status, created, _ = invoke(
        api_event("POST", "/videos", body={**CREATE, "size_bytes": len(data)})
    )
    assert (status, created["upload"]["expires_in"]) == (201, 600)
    video_id = created["video_id"]
    parts = {"parts": [{"part_number": 1, "checksum_sha256": sha256_b64(data)}]}
    status, signed, _ = invoke(event("POST", f"/videos/{video_id}/upload/parts", body=parts))
    [part] = signed["parts"]
    assert status == 200 and "X-Amz-Expires=600" in part["url"]
    assert f"/sources/{video_id}/source?" in part["url"]
    response = requests.put(part["url"], data=data, headers=part["headers"], timeout=10)
    assert response.status_code == 200
    status, done, _ = invoke(event("POST", f"/videos/{video_id}/upload/complete"))
    assert (status, done["status"]) == (202, "UPLOADED")
    assert [event["job_id"] for event in read_stream(aws.kinesis, STREAM)] == [done["job_id"]]


def test_r2_rotated_database_password_is_picked_up_after_an_auth_failure(lambda_env, aws, admin_db):
    assert invoke(api_event("GET", "/videos"))[0] == 200
    try:
        set_app_password(admin_db, "rotated-password-2")
        aws.secrets.put_secret_value(
            SecretId=aws.db_secret_arn,
            SecretString=json.dumps({"username": APP_USER, "password": "rotated-password-2"}),
        )
        assert kill_api_connections(admin_db) == 1
        # The cached (old) password is rejected; the handler fetches the secret again.
        status, body, _ = invoke(api_event("GET", "/videos"))
        assert (status, body["items"]) == (200, [])
    finally:
        set_app_password(admin_db, APP_PASSWORD)


def test_r2_rejected_credentials_even_after_refresh_are_503(lambda_env, admin_db):
    assert invoke(api_event("GET", "/videos"))[0] == 200
    try:
        set_app_password(admin_db, "rotated-but-secret-not-updated")
        kill_api_connections(admin_db)
        status, body, _ = invoke(api_event("GET", "/videos"))
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
    finally:
        set_app_password(admin_db, APP_PASSWORD)


def test_r2_missing_configuration_is_a_json_500(lambda_env, monkeypatch):
    monkeypatch.delenv("DB_SECRET_ARN")
    status, body, _ = invoke(api_event("GET", "/videos"))
    assert (status, body["error"]["code"]) == (500, "configuration_error")


def test_g5_lambda_configured_like_the_stacks_connects_with_an_iam_token_over_tls(
    lambda_env, monkeypatch, capsys
):
    """DB_IAM_USER and no DB_SECRET_ARN: the handler makes a token and opens TLS. The local
    server has no TLS, so getting as far as its refusal shows the token was made."""
    monkeypatch.delenv("DB_SECRET_ARN")
    monkeypatch.setenv("DB_IAM_USER", API_DB_USER)
    monkeypatch.setenv("DB_SSL", "require")
    status, body, _ = invoke(api_event("GET", "/videos"))
    assert (status, body["error"]["code"]) == (503, "database_unavailable")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [failure] = [line for line in lines if line["message"] == "database unavailable"]
    assert failure["error"] == "cannot connect to the database: Server refuses SSL"
