"""Shared pieces (R2, R3, R4): settings from env, events (W5), secrets, the database
wrapper, TLS (D6), logging."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from pg8000.exceptions import DatabaseError

from services.common.db import Database, DatabaseAuthError, DatabaseUnavailable, ssl_context_for
from services.common.events import (
    EventError,
    new_event,
    parse_event,
    parse_message_body,
)
from services.common.logs import JsonFormatter, configure_logging
from services.common.redis_client import create_redis
from services.common.roles import API_DB_USER, WORKER_DB_USER
from services.common.secrets import (
    CredentialsError,
    IamDbCredentials,
    SecretCache,
    StaticDbCredentials,
    db_credentials,
    redis_token,
)
from services.common.settings import (
    DatabaseSettings,
    RedisSettings,
    SettingsError,
    SslMode,
    UploadSettings,
    load_api_settings,
    load_migrate_settings,
    load_worker_settings,
)
from services.contract import DEFAULT_UPLOAD_CONTENT_TYPES, UPLOAD_MAX_BYTES_DEFAULT

pytestmark = pytest.mark.services

BASE_ENV = {
    "DB_HOST": "db.internal",
    "DB_NAME": "media",
    "REDIS_HOST": "cache.internal",
    "STREAM_NAME": "media-events",
    "INGEST_BUCKET": "media-ingest",
}
WORKER_ENV = {
    **BASE_ENV,
    "MEDIA_ROOT": "/mnt/media",
    "MEDIA_BUCKET": "media-renditions",
    "CONTENT_KEY_SECRET_ARN": "arn:content-key",
    "DB_USERNAME": "worker",
    "DB_PASSWORD": "pw",
    "JOBS_QUEUE_URL": "https://sqs/jobs",
    "DEAD_LETTER_QUEUE_URL": "https://sqs/dlq",
    "MAX_RECEIVE_COUNT": "5",
}


# --- settings ---------------------------------------------------------------------------


def api_common(env):
    return load_api_settings(env).common


def test_r2_api_settings_defaults_are_secure():
    settings = api_common({**BASE_ENV, "DB_SECRET_ARN": "arn:db"})
    assert settings.database.port == 5432
    assert settings.database.ssl_mode == SslMode.VERIFY_FULL
    assert settings.redis.port == 6379
    assert settings.redis.tls is True
    assert settings.cache_ttl_seconds == 300
    assert settings.log_level == "INFO"


def test_r3_worker_settings_read_every_variable():
    settings = load_worker_settings(
        {
            **WORKER_ENV,
            "DB_PORT": "6432",
            "DB_SSL": "false",
            "REDIS_TLS": "0",
            "REDIS_AUTH_TOKEN": "tok",
            "JOB_TIMEOUT_SECONDS": "60",
            "VISIBILITY_TIMEOUT_SECONDS": "120",
            "CONTENT_KEY_SECRET_ARN": "arn:key",
            "SCRATCH_DIR": "/scratch",
            "LOG_LEVEL": "debug",
            "AWS_REGION": "ap-northeast-1",
        }
    )
    assert (settings.common.database.port, settings.common.database.ssl_mode) == (6432, "disable")
    assert (settings.common.redis.tls, settings.common.redis.auth_token) == (False, "tok")
    assert (settings.job_timeout_seconds, settings.visibility_timeout_seconds) == (60, 120)
    assert settings.max_receive_count == 5
    assert str(settings.scratch_dir) == "/scratch"
    assert settings.common.log_level == "DEBUG"
    assert settings.common.aws_region == "ap-northeast-1"
    assert settings.content_key_secret_arn == "arn:key"
    assert (settings.batch_size, settings.receive_wait_seconds) == (10, 20)


def test_m1_api_upload_settings_default_to_the_contract_and_read_the_stack_values():
    defaults = load_api_settings({**BASE_ENV, "DB_SECRET_ARN": "arn:db"}).uploads
    assert defaults == UploadSettings(
        ingest_bucket="media-ingest",
        max_bytes=UPLOAD_MAX_BYTES_DEFAULT,
        content_types=DEFAULT_UPLOAD_CONTENT_TYPES,
        url_ttl_seconds=900,
    )
    stack = load_api_settings(
        {
            **BASE_ENV,
            "DB_SECRET_ARN": "arn:db",
            "UPLOAD_MAX_BYTES": "1048576",
            "UPLOAD_CONTENT_TYPES": " Video/MP4, ,video/webm ",
            "UPLOAD_URL_TTL_SECONDS": "600",
        }
    ).uploads
    assert (stack.max_bytes, stack.content_types, stack.url_ttl_seconds) == (
        1_048_576,
        ("video/mp4", "video/webm"),
        600,
    )


def test_m3_m4_worker_media_settings_default_to_the_contract_ladder():
    media = load_worker_settings(WORKER_ENV).media
    assert (media.ingest_bucket, media.media_bucket) == ("media-ingest", "media-renditions")
    assert [rung.name for rung in media.ladder] == ["1080p", "720p", "480p", "360p"]
    assert (media.segment_seconds, media.max_duration_seconds) == (4, 4 * 3600)
    assert media.delete_source_after_processing is False
    assert (media.transfer_concurrency, media.ffmpeg_path) == (8, "ffmpeg")
    tuned = load_worker_settings(
        {**WORKER_ENV, "TRANSCODE_LADDER": "360:700, 720:3000", "SEGMENT_SECONDS": "6"}
    ).media
    assert [(rung.height, rung.video_kbps) for rung in tuned.ladder] == [(720, 3000), (360, 700)]
    assert tuned.segment_seconds == 6


@pytest.mark.parametrize(
    ("load", "change", "variable", "text"),
    [
        (load_api_settings, {"INGEST_BUCKET": None}, "INGEST_BUCKET", "required"),
        (load_api_settings, {"UPLOAD_MAX_BYTES": "0"}, "UPLOAD_MAX_BYTES", "between"),
        (load_api_settings, {"UPLOAD_CONTENT_TYPES": " , "}, "UPLOAD_CONTENT_TYPES", "at least"),
        (load_api_settings, {"UPLOAD_URL_TTL_SECONDS": "7200"}, "UPLOAD_URL_TTL_SECONDS", "between"),
        (load_worker_settings, {"MEDIA_BUCKET": None}, "MEDIA_BUCKET", "required"),
        (load_worker_settings, {"CONTENT_KEY_SECRET_ARN": None}, "CONTENT_KEY_SECRET_ARN", "required"),
        (load_worker_settings, {"TRANSCODE_LADDER": "720p"}, "TRANSCODE_LADDER", "height:kbps"),
        (load_worker_settings, {"TRANSCODE_LADDER": "721:3000"}, "TRANSCODE_LADDER", "even"),
        (load_worker_settings, {"TRANSCODE_LADDER": "720:99"}, "TRANSCODE_LADDER", "kb/s"),
        (load_worker_settings, {"TRANSCODE_LADDER": "720:1,720:2"}, "TRANSCODE_LADDER", "kb/s"),
        (load_worker_settings, {"TRANSCODE_LADDER": "720:3000,720:2000"}, "TRANSCODE_LADDER", "same height"),
        (load_worker_settings, {"SEGMENT_SECONDS": "1"}, "SEGMENT_SECONDS", "between"),
        (load_worker_settings, {"TRANSFER_CONCURRENCY": "65"}, "TRANSFER_CONCURRENCY", "between"),
        (load_worker_settings, {"DELETE_SOURCE_AFTER_PROCESSING": "sometimes"}, "DELETE_SOURCE_AFTER_PROCESSING", "true or false"),
    ],
)  # fmt: skip
def test_m1_m4_invalid_media_settings_name_the_variable(load, change, variable, text):
    base = {**WORKER_ENV, "DB_SECRET_ARN": "arn:db"} if load is load_api_settings else WORKER_ENV
    if load is load_api_settings:
        base = {k: v for k, v in base.items() if k not in {"DB_USERNAME", "DB_PASSWORD"}}
    env = {k: v for k, v in {**base, **change}.items() if v is not None}
    with pytest.raises(SettingsError, match=text) as caught:
        load(env)
    assert caught.value.variable == variable


def test_r3_secrets_never_appear_in_settings_repr():
    settings = load_worker_settings({**WORKER_ENV, "REDIS_AUTH_TOKEN": "tok-value"})
    assert "pw" not in repr(settings.common.database).replace("port", "")
    assert "tok-value" not in repr(settings)


@pytest.mark.parametrize(
    ("change", "variable", "text"),
    [
        ({"DB_HOST": None}, "DB_HOST", "required"),
        ({"DB_PORT": "abc"}, "DB_PORT", "integer"),
        ({"DB_PORT": "70000"}, "DB_PORT", "between"),
        ({"DB_SSL": "maybe"}, "DB_SSL", "true, false or require"),
        ({"REDIS_TLS": "perhaps"}, "REDIS_TLS", "true or false"),
        ({"MEDIA_ROOT": "relative/path"}, "MEDIA_ROOT", "absolute"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "one of"),
        ({"CACHE_TTL_SECONDS": "0"}, "CACHE_TTL_SECONDS", "between"),
        ({"DB_USERNAME": None}, "DB_USERNAME", "is required with DB_PASSWORD$"),
        ({"DB_PASSWORD": ""}, "DB_PASSWORD", "is required with DB_USERNAME$"),
        ({"MAX_RECEIVE_COUNT": None}, "MAX_RECEIVE_COUNT", "required"),
        ({"RETRY_BASE_SECONDS": "x"}, "RETRY_BASE_SECONDS", "number"),
        ({"RETRY_MAX_SECONDS": "50000"}, "RETRY_MAX_SECONDS", "between"),
    ],
)
def test_r3_invalid_worker_settings_name_the_variable(change, variable, text):
    env = {**WORKER_ENV, **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(SettingsError, match=text) as caught:
        load_worker_settings(env)
    assert caught.value.variable == variable
    assert variable in str(caught.value)


def test_m4_job_timeout_may_outlast_the_visibility_timeout_because_the_lease_is_extended():
    """The worker extends a running job's visibility every third of it (M4), so a two-hour
    transcode no longer needs a visibility timeout above the job timeout."""
    settings = load_worker_settings(
        {
            **WORKER_ENV,
            "INGEST_BUCKET": "ingest",
            "MEDIA_BUCKET": "media",
            "CONTENT_KEY_SECRET_ARN": "arn:key",
            "JOB_TIMEOUT_SECONDS": "7200",
            "VISIBILITY_TIMEOUT_SECONDS": "300",
        }
    )
    assert (settings.job_timeout_seconds, settings.visibility_timeout_seconds) == (7200, 300)


# --- settings: how each service logs in to the database (D5, G5) -------------------------

IAM_ENV = {"DB_IAM_USER": API_DB_USER, "AWS_REGION": "eu-west-1"}
API_CHOICES = "set exactly one of DB_IAM_USER or DB_SECRET_ARN"
WORKER_CHOICES = "set exactly one of DB_IAM_USER, DB_SECRET_ARN or DB_USERNAME with DB_PASSWORD"
WORKER_BASE_ENV = {k: v for k, v in WORKER_ENV.items() if k not in {"DB_USERNAME", "DB_PASSWORD"}}


def _credential_fields(database: DatabaseSettings) -> tuple:
    return (database.iam_user, database.secret_arn, database.username, database.password)


def test_g5_api_logs_in_with_iam_and_needs_no_secret():
    settings = api_common({**BASE_ENV, **IAM_ENV})
    assert _credential_fields(settings.database) == ("media_api", None, None, None)
    assert settings.aws_region == "eu-west-1"


def test_d5_api_may_still_log_in_with_a_secret_by_arn():
    settings = api_common({**BASE_ENV, "DB_SECRET_ARN": "arn:db"})
    assert _credential_fields(settings.database) == (None, "arn:db", None, None)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"DB_IAM_USER": "media_worker", "AWS_REGION": "eu-west-1"},
            ("media_worker", None, None, None),
        ),
        ({"DB_SECRET_ARN": "arn:db"}, (None, "arn:db", None, None)),
        ({"DB_USERNAME": "w", "DB_PASSWORD": "p"}, (None, None, "w", "p")),
    ],
)
def test_g5_worker_logs_in_with_exactly_the_configured_source(change, expected):
    settings = load_worker_settings({**WORKER_BASE_ENV, **change})
    assert _credential_fields(settings.common.database) == expected


def test_g5_iam_region_may_come_from_aws_default_region():
    env = {**BASE_ENV, "DB_IAM_USER": "media_api", "AWS_DEFAULT_REGION": "ca-central-1"}
    assert api_common(env).aws_region == "ca-central-1"


@pytest.mark.parametrize(
    ("load", "env", "variable", "message"),
    [
        (load_api_settings, {**BASE_ENV, **IAM_ENV, "DB_SECRET_ARN": "arn:db"}, "DB_IAM_USER",
         f"environment variable DB_IAM_USER: cannot be combined with DB_SECRET_ARN; {API_CHOICES}"),
        (load_api_settings, {**BASE_ENV, "DB_USERNAME": "u", "DB_PASSWORD": "p"}, "DB_IAM_USER",
         f"environment variable DB_IAM_USER: is not set; {API_CHOICES}"),
        (load_worker_settings, {**WORKER_BASE_ENV, **IAM_ENV, "DB_SECRET_ARN": "arn:db"}, "DB_IAM_USER",
         f"environment variable DB_IAM_USER: cannot be combined with DB_SECRET_ARN; {WORKER_CHOICES}"),
        (load_worker_settings, {**WORKER_ENV, **IAM_ENV}, "DB_IAM_USER",
         "environment variable DB_IAM_USER: cannot be combined with DB_USERNAME and DB_PASSWORD;"
         f" {WORKER_CHOICES}"),
        (load_worker_settings, {**WORKER_BASE_ENV, "DB_SECRET_ARN": "arn:db", "DB_PASSWORD": "p"},
         "DB_SECRET_ARN",
         f"environment variable DB_SECRET_ARN: cannot be combined with DB_PASSWORD; {WORKER_CHOICES}"),
        (load_worker_settings, WORKER_BASE_ENV, "DB_IAM_USER",
         f"environment variable DB_IAM_USER: is not set; {WORKER_CHOICES}"),
        (load_worker_settings, {**WORKER_BASE_ENV, "DB_USERNAME": "w"}, "DB_PASSWORD",
         "environment variable DB_PASSWORD: is required with DB_USERNAME"),
        (load_api_settings, {**BASE_ENV, "DB_IAM_USER": "media_api"}, "AWS_REGION",
         "environment variable AWS_REGION: is required with DB_IAM_USER"
         " (the auth token is signed per region)"),
        (load_worker_settings, {**WORKER_BASE_ENV, **IAM_ENV, "DB_SSL": "false"}, "DB_IAM_USER",
         "environment variable DB_IAM_USER: needs TLS, so DB_SSL must be true or require,"
         " got 'false'"),
        (load_api_settings, {**BASE_ENV, **IAM_ENV, "DB_SSL": "disable"}, "DB_IAM_USER",
         "environment variable DB_IAM_USER: needs TLS, so DB_SSL must be true or require,"
         " got 'disable'"),
    ],
)  # fmt: skip
def test_g5_database_login_settings_errors_name_the_variables(load, env, variable, message):
    with pytest.raises(SettingsError) as caught:
        load(env)
    assert (caught.value.variable, str(caught.value)) == (variable, message)


def test_d6_iam_login_accepts_tls_without_verification():
    settings = api_common({**BASE_ENV, **IAM_ENV, "DB_SSL": "require"})
    assert (settings.database.ssl_mode, settings.database.iam_user) == ("require", "media_api")


def test_d5_migrate_settings_need_the_master_secret_and_nothing_of_the_runtime():
    env = {"DB_HOST": "db.internal", "DB_NAME": "media", "DB_SECRET_ARN": "arn:master",
           "DB_SSL": "require", "DB_SSL_ROOT_CERT": "/opt/rds-ca.pem", "LOG_LEVEL": "debug",
           "AWS_REGION": "us-east-1"}  # fmt: skip
    settings = load_migrate_settings(env)
    assert _credential_fields(settings.database) == (None, "arn:master", None, None)
    assert (settings.database.ssl_mode, settings.database.ssl_root_cert) == (
        "require",
        "/opt/rds-ca.pem",
    )
    assert (settings.log_level, settings.aws_region) == ("DEBUG", "us-east-1")
    with pytest.raises(SettingsError) as caught:
        load_migrate_settings({k: v for k, v in env.items() if k != "DB_SECRET_ARN"})
    assert str(caught.value) == "environment variable DB_SECRET_ARN: is required but not set"


@pytest.mark.parametrize(
    ("value", "mode"),
    [("true", "verify-full"), ("1", "verify-full"), ("require", "require"), ("off", "disable")],
)
def test_d6_db_ssl_values(value, mode):
    assert api_common({**BASE_ENV, "DB_SECRET_ARN": "a", "DB_SSL": value}).database.ssl_mode == mode


# --- TLS --------------------------------------------------------------------------------


def _db_settings(mode: str, **kwargs) -> DatabaseSettings:
    return DatabaseSettings(host="h", port=1, name="n", ssl_mode=mode, **kwargs)


def test_d6_tls_verifies_chain_and_host_name_by_default():
    context = ssl_context_for(_db_settings(SslMode.VERIFY_FULL))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_d6_tls_require_mode_encrypts_without_verifying():
    context = ssl_context_for(_db_settings(SslMode.REQUIRE))
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
    assert ssl_context_for(_db_settings(SslMode.DISABLE)) is False


def test_d6_tls_with_a_missing_root_cert_file_fails_loudly():
    with pytest.raises(FileNotFoundError):
        ssl_context_for(_db_settings(SslMode.VERIFY_FULL, ssl_root_cert="/nonexistent/ca.pem"))


def test_d6_tls_connection_is_refused_by_a_server_without_tls(pg_server):
    settings = DatabaseSettings(
        host=pg_server.host, port=pg_server.port, name="media", ssl_mode=SslMode.REQUIRE
    )
    db = Database(
        settings, StaticDbCredentials("media_app", "app-password-1"), application_name="t"
    )
    with pytest.raises(DatabaseUnavailable, match="SSL"):
        db.run(lambda c: c.execute("SELECT 1"))


# --- database wrapper -------------------------------------------------------------------


def _select_one(cursor):
    cursor.execute("SELECT 1")
    return cursor.fetchone()[0]


def test_r4_database_reconnects_once_after_the_backend_is_terminated(database, admin_db):
    assert database.run(_select_one) == 1
    admin_db.cursor().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'media-worker'"
    )
    assert database.run(_select_one) == 1


def test_r4_database_sql_errors_propagate_and_the_connection_stays_usable(database):
    with pytest.raises(DatabaseError) as caught:
        database.run(lambda c: c.execute("SELECT no_such_column FROM videos"))
    assert caught.value.args[0]["C"] == "42703"
    assert database.run(_select_one) == 1


def _statement_timeout(db: Database) -> str:
    return db.run(lambda c: (c.execute("SHOW statement_timeout"), c.fetchone()[0])[1])


def test_r4_a_slow_statement_is_cancelled_by_the_server_and_the_connection_survives(pg_server):
    """The server's statement timeout fires before the client's socket gives up, so a slow
    statement is a clean query_canceled error, not a dead connection."""
    credentials = StaticDbCredentials("media_app", "app-password-1")
    db = Database(pg_server.settings(), credentials, application_name="t")
    assert _statement_timeout(db) == "8s"  # the services' default
    slow = Database(
        pg_server.settings(), credentials, application_name="t", statement_timeout_seconds=0.5
    )
    with pytest.raises(DatabaseError) as caught:
        slow.run(lambda c: c.execute("SELECT pg_sleep(3)"))
    assert caught.value.args[0]["C"] == "57014"  # query_canceled
    assert slow.run(_select_one) == 1
    db.close()
    slow.close()


def test_r4_database_unreachable_is_unavailable(pg_server):
    from svc_support import free_port

    db = Database(
        pg_server.settings(port=free_port()),
        StaticDbCredentials("media_app", "app-password-1"),
        application_name="t",
    )
    with pytest.raises(DatabaseUnavailable) as caught:
        db.run(_select_one)
    assert not isinstance(caught.value, DatabaseAuthError)


def test_r4_database_wrong_static_password_is_an_auth_error(pg_server):
    db = Database(
        pg_server.settings(), StaticDbCredentials("media_app", "wrong"), application_name="t"
    )
    with pytest.raises(DatabaseAuthError):
        db.run(_select_one)


def test_r2_database_credentials_secret_unreadable_is_unavailable(pg_server, aws):
    arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:nope"
    provider = db_credentials(
        _db_settings(SslMode.DISABLE, secret_arn=arn), region=None, secrets=SecretCache(aws.secrets)
    )
    db = Database(pg_server.settings(), provider, application_name="t")
    with pytest.raises(DatabaseUnavailable, match="credentials unavailable"):
        db.run(_select_one)


# --- secrets ----------------------------------------------------------------------------


def _secret_provider(aws, arn: str):
    return db_credentials(
        _db_settings(SslMode.DISABLE, secret_arn=arn), region=None, secrets=SecretCache(aws.secrets)
    )


def test_r2_secret_cache_reads_once_until_refreshed(aws):
    provider = _secret_provider(aws, aws.db_secret_arn)
    assert provider.current().password == "app-password-1"
    aws.secrets.put_secret_value(
        SecretId=aws.db_secret_arn, SecretString=json.dumps({"username": "u", "password": "new"})
    )
    assert provider.current().password == "app-password-1"
    assert provider.refresh() is True
    assert provider.current().password == "new"


@pytest.mark.parametrize(
    ("secret", "message"),
    [("not json", "not JSON"), ("[1]", "not a JSON object"), ('{"username": "u"}', "lacks")],
)
def test_r2_malformed_database_secret_is_refused(aws, secret, message):
    aws.secrets.put_secret_value(SecretId=aws.db_secret_arn, SecretString=secret)
    with pytest.raises(CredentialsError, match=message):
        _secret_provider(aws, aws.db_secret_arn).current()


def test_r2_binary_secret_is_refused(aws):
    arn = aws.secrets.create_secret(Name="binary", SecretBinary=b"\x00\x01")["ARN"]
    with pytest.raises(CredentialsError, match="no SecretString"):
        SecretCache(aws.secrets).get(arn)


def test_r3_env_credentials_are_used_without_an_arn_and_cannot_refresh(aws):
    secrets = SecretCache(aws.secrets)
    provider = db_credentials(
        _db_settings(SslMode.DISABLE, username="w", password="p"), region=None, secrets=secrets
    )
    assert (provider.current().username, provider.refresh()) == ("w", False)
    with pytest.raises(CredentialsError, match=r"^no database credentials configured$"):
        db_credentials(_db_settings(SslMode.DISABLE, username="w"), region=None, secrets=secrets)


# --- IAM database authentication (G5, D6) -----------------------------------------------


def _token_parts(token: str) -> tuple[str, dict[str, str]]:
    """(host:port, query) of an RDS IAM auth token, a presigned URL without its scheme."""
    assert not token.startswith("https://")
    url = urlsplit(f"//{token}")
    return url.netloc, {key: values[0] for key, values in parse_qs(url.query).items()}


def _at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)


def test_g5_iam_credentials_are_a_connect_token_for_the_user_host_and_port(monkeypatch):
    rds = boto3.client("rds", region_name="eu-central-1")  # dummy keys from conftest
    provider = IamDbCredentials(
        rds, host="media.cluster-abc.eu-west-1.rds.amazonaws.com", port=5432,
        user=WORKER_DB_USER, region="eu-west-1",
    )  # fmt: skip
    _at(monkeypatch, datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC))
    first = provider.current()
    netloc, query = _token_parts(first.password)
    assert first.username == WORKER_DB_USER
    assert netloc == "media.cluster-abc.eu-west-1.rds.amazonaws.com:5432"
    assert (query["Action"], query["DBUser"]) == ("connect", WORKER_DB_USER)
    assert query["X-Amz-Credential"].endswith("/20250101/eu-west-1/rds-db/aws4_request")
    assert (query["X-Amz-Date"], query["X-Amz-Expires"]) == ("20250101T120000Z", "900")
    # A token is checked only at connect time: each new connection gets one signed now.
    _at(monkeypatch, datetime(2025, 1, 1, 12, 14, 0, tzinfo=UTC))
    second = provider.current()
    assert _token_parts(second.password)[1]["X-Amz-Date"] == "20250101T121400Z"
    assert second.password != first.password
    assert provider.refresh() is True


def test_g5_credential_factory_turns_db_iam_user_into_tokens_for_the_configured_endpoint(aws):
    settings = api_common({**BASE_ENV, **IAM_ENV, "DB_PORT": "6543"})
    provider = db_credentials(
        settings.database, region=settings.aws_region, secrets=SecretCache(aws.secrets)
    )
    netloc, query = _token_parts(provider.current().password)
    assert (netloc, query["DBUser"]) == ("db.internal:6543", API_DB_USER)
    assert "/eu-west-1/rds-db/" in query["X-Amz-Credential"]
    with pytest.raises(CredentialsError, match="IAM database authentication needs an AWS region"):
        db_credentials(settings.database, region=None, secrets=SecretCache(aws.secrets))


def test_g5_iam_token_without_aws_credentials_makes_the_database_unavailable(
    monkeypatch, tmp_path, pg_server
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    rds = boto3.session.Session().client("rds", region_name="eu-west-1")  # no cached keys
    provider = IamDbCredentials(
        rds, host=pg_server.host, port=pg_server.port, user=API_DB_USER, region="eu-west-1"
    )
    with pytest.raises(CredentialsError, match="cannot make an IAM auth token for media_api"):
        provider.current()
    db = Database(pg_server.settings(), provider, application_name="t")
    with pytest.raises(DatabaseUnavailable, match="credentials unavailable"):
        db.run(_select_one)


def test_c3_redis_token_prefers_the_secret_over_env(aws):
    aws.secrets.put_secret_value(SecretId=aws.redis_secret_arn, SecretString="from-secret")
    cache = SecretCache(aws.secrets)
    assert redis_token(cache, secret_arn=aws.redis_secret_arn, token="from-env") == "from-secret"
    assert redis_token(None, secret_arn=None, token="from-env") == "from-env"
    assert redis_token(None, secret_arn=None, token=None) is None
    with pytest.raises(
        CredentialsError, match="a Redis secret ARN is configured but no Secrets Manager client"
    ):
        redis_token(None, secret_arn="arn", token=None)


def test_c3_redis_client_uses_tls_and_the_auth_token_when_configured():
    client = create_redis(RedisSettings(host="h", port=6380, tls=True), "tok", client_name="x")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["password"] == "tok"
    assert kwargs["ssl_cert_reqs"] == "required"
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


# --- events -----------------------------------------------------------------------------


def _job_event() -> dict:
    return new_event(
        "job.requested", video_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()), source_uri="a.mp4"
    ).to_dict()


def test_r3_event_id_is_the_same_for_a_republished_outcome_and_differs_per_type_and_job():
    """Consumers deduplicate on event_id: a second publication of one outcome must carry
    the first one's id, and no two different outcomes may share one."""
    video_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())

    def event(event_type: str, job: str) -> dict:
        return new_event(event_type, video_id=video_id, job_id=job, source_uri="a.mp4").to_dict()

    first, again = event("video.processed", job_id), event("video.processed", job_id)
    assert first["event_id"] == again["event_id"]
    assert uuid.UUID(first["event_id"]).version == 5
    assert event("job.requested", job_id)["event_id"] != first["event_id"]
    assert event("video.processed", str(uuid.uuid4()))["event_id"] != first["event_id"]
    assert parse_message_body(json.dumps(first)).to_dict()["event_id"] == first["event_id"]


def test_w5_event_round_trips_with_extra_fields():
    event = new_event(
        "video.processed",
        video_id=str(uuid.uuid4()),
        job_id=str(uuid.uuid4()),
        source_uri="a.mp4",
        media={"width": 64},
    )
    parsed = parse_message_body(event.to_json())
    assert parsed == event
    assert parsed.partition_key == event.video_id
    assert parsed.occurred_at.endswith("Z")


def test_w5_event_accepts_kinesis_envelopes_base64_and_object():
    document = _job_event()
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    assert parse_message_body(json.dumps({"data": encoded})).job_id == document["job_id"]
    assert parse_message_body(json.dumps({"data": document})).job_id == document["job_id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ('{"data": "***"}', "base64"),
        ('{"data": 5}', "neither"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_w5_event_unreadable_bodies_are_event_errors(body, message):
    with pytest.raises(EventError, match=message):
        parse_message_body(body)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "video.deleted"}, "unknown event type"),
        ({"version": 2}, "unsupported event version"),
        ({"job_id": None}, "'job_id' is missing"),
        ({"video_id": "v-1"}, "not a UUID"),
        ({"source_uri": ""}, "'source_uri' is missing"),
    ],
)
def test_w5_event_fields_are_validated(change, message):
    with pytest.raises(EventError, match=message):
        parse_event({**_job_event(), **change})


# --- logging ----------------------------------------------------------------------------


def test_r4_logs_are_json_with_extra_fields_and_exceptions():
    record = logging.LogRecord("svc", logging.ERROR, __file__, 1, "job %s failed", ("j1",), None)
    record.job_id = "j1"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["message"], entry["level"], entry["job_id"]) == ("job j1 failed", "ERROR", "j1")
    assert "ValueError: boom" in entry["exception"]


def test_r4_configure_logging_replaces_root_handlers(capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("WARNING")
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        assert logging.getLogger("botocore").level == logging.WARNING
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_d6_verify_full_trusts_the_shipped_rds_ca_bundle_by_default():
    """Issue 14 item 6: verify-full (the default) checks the server against AWS's RDS roots
    shipped with the code, not the system store; an explicit bundle still wins."""
    settings = api_common({**BASE_ENV, "DB_SECRET_ARN": "arn:db"}).database
    assert settings.ssl_mode == SslMode.VERIFY_FULL
    assert settings.ssl_root_cert.endswith("services/common/certs/rds-ca-bundle.pem")
    context = ssl_context_for(settings)
    assert context.cert_store_stats()["x509_ca"] >= 40
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    explicit = {**BASE_ENV, "DB_SECRET_ARN": "arn:db", "DB_SSL_ROOT_CERT": "/opt/ca.pem"}
    assert api_common(explicit).database.ssl_root_cert == "/opt/ca.pem"
    required = {**BASE_ENV, "DB_SECRET_ARN": "arn:db", "DB_SSL": "require"}
    assert api_common(required).database.ssl_root_cert is None
