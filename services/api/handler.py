"""Lambda entry point: `services.api.handler.handler`.

Clients, credentials and the database connection are built on the first invocation and
reused while the execution environment lives. Nothing slow is imported with this module
(boto3 and redis are imported when a request first needs them), so a cold start costs
little more than the interpreter (`scripts/bench_cold_start.py`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

from services.api.app import ApiApp, Dependencies, Uploads
from services.api.http import ApiError
from services.api.playback import PlaybackSigner, signing_key_source
from services.common.aws import EventStream, LazyClient, aws_client
from services.common.cache import VideoCache
from services.common.db import Database
from services.common.invocation import function_timeout
from services.common.logs import configure_logging
from services.common.redis_client import create_redis, redis_auth
from services.common.secrets import SecretCache, db_credentials
from services.common.settings import (
    ApiSettings,
    CommonSettings,
    SettingsError,
    load_api_settings,
)
from services.common.uploads import IngestStore, ingest_client

log = logging.getLogger(__name__)
_app: ApiApp | None = None

DEFAULT_FUNCTION_TIMEOUT_SECONDS = 15.0
"""The function's timeout when the context cannot tell (components/api.py's default)."""
CACHE_BYPASS_SECONDS = 10.0
"""After a cache failure, requests go straight to the database for this long."""
_AWS_ATTEMPTS = 2
_DATABASE_TRANSACTIONS = 3  # schema check (first request), reading the row, writing it
_AFTER_STORAGE_TRANSACTIONS = 2  # completion: the row with its job, then requested_at
_STORAGE_SHARE = 0.15  # of the budget, at least, for an upload request's S3 calls
# One attempt per S3 call: a retry would sleep first (botocore's backoff, up to a second)
# and every call of an upload request is safe to repeat, so the client retries the request
# (503 with Retry-After) instead.
_STORAGE_ATTEMPTS = 1
_STATEMENT_MARGIN_FRACTION = 0.3  # the server cancels a slow statement before the socket gives up


@dataclass(frozen=True)
class ApiTimeouts:
    """Every dependency's time limit, sized so a request answers inside the function's
    timeout even when each dependency accepts connections and never answers (H4)."""

    cache: float
    """Redis connect and each reply; a failure bypasses the cache for a while."""
    aws_connect: float
    aws_read: float
    aws_attempts: int
    database: float
    """PostgreSQL connect and each reply; a transaction that times out is not retried."""
    statement: float
    """PostgreSQL statement_timeout, below `database`."""
    storage: float
    """Seconds after a request arrives after which it starts no S3 call (M1 uploads)."""

    @property
    def aws_call(self) -> float:
        """One AWS call with its retries, each attempt at the limits."""
        return self.aws_attempts * (self.aws_connect + self.aws_read)

    @property
    def worst_case(self) -> float:
        return self.cache + self.aws_call + _DATABASE_TRANSACTIONS * self.database

    @property
    def storage_call(self) -> float:
        """One S3 call (a single attempt, `_STORAGE_ATTEMPTS`) at the limits."""
        return _STORAGE_ATTEMPTS * (self.aws_connect + self.aws_read)

    @property
    def upload_worst_case(self) -> float:
        """An upload request: the last S3 call starts before `storage`; after it come at
        most two database transactions (the row with its job, requested_at) and the put."""
        return (
            self.storage
            + self.storage_call
            + _AFTER_STORAGE_TRANSACTIONS * self.database
            + self.aws_call
        )


def api_timeouts(function_timeout: float) -> ApiTimeouts:
    """Timeouts whose worst case (one cache read, one stream put with its retries, three
    database transactions each at the limit) leaves a margin inside `function_timeout`,
    and the time an upload request may spend on S3 so that it does too."""
    margin = min(1.0, 0.05 * function_timeout)
    cache = min(0.5, 0.04 * function_timeout)
    aws_connect = min(1.0, 0.05 * function_timeout)
    aws_read = min(2.0, 0.1 * function_timeout)
    aws_call = _AWS_ATTEMPTS * (aws_connect + aws_read)
    storage_call = _STORAGE_ATTEMPTS * (aws_connect + aws_read)
    budget = function_timeout - margin
    # The database gets what is left after one AWS call, but no more than leaves an upload
    # request its share of the budget for S3 after the two transactions and the put.
    database = min(
        (budget - cache - aws_call) / _DATABASE_TRANSACTIONS,
        (budget - _STORAGE_SHARE * budget - storage_call - aws_call) / _AFTER_STORAGE_TRANSACTIONS,
    )
    storage = budget - storage_call - aws_call - _AFTER_STORAGE_TRANSACTIONS * database
    return ApiTimeouts(
        cache=cache,
        aws_connect=aws_connect,
        aws_read=aws_read,
        aws_attempts=_AWS_ATTEMPTS,
        database=database,
        statement=database * (1 - _STATEMENT_MARGIN_FRACTION),
        storage=max(0.0, storage),
    )


def build_app(api_settings: ApiSettings, function_timeout: float) -> ApiApp:
    settings, upload_settings = api_settings.common, api_settings.uploads
    timeouts = api_timeouts(function_timeout)
    region = settings.aws_region

    def client(service: str) -> LazyClient:
        return LazyClient(
            lambda: aws_client(
                service,
                region=region,
                connect_timeout=timeouts.aws_connect,
                read_timeout=timeouts.aws_read,
                max_attempts=timeouts.aws_attempts,
            )
        )

    secrets_client = client("secretsmanager")
    secrets = SecretCache(secrets_client)
    database = Database(
        settings.database,
        db_credentials(settings.database, region=region, secrets=secrets),
        application_name="media-api",
        statement_timeout_seconds=timeouts.statement,
        socket_timeout=timeouts.database,
    )
    stream = EventStream(client("kinesis"), settings.stream_name)
    s3 = LazyClient(
        lambda: ingest_client(
            region=region,
            connect_timeout=timeouts.aws_connect,
            read_timeout=timeouts.aws_read,
            max_attempts=_STORAGE_ATTEMPTS,
        )
    )
    uploads = Uploads(
        store=IngestStore(s3, upload_settings.ingest_bucket),
        max_bytes=upload_settings.max_bytes,
        content_types=upload_settings.content_types,
        url_ttl_seconds=upload_settings.url_ttl_seconds,
        storage_seconds=timeouts.storage,
    )
    playback = api_settings.playback
    signer = (
        None
        if playback is None
        else PlaybackSigner(playback, signing_key_source(secrets_client, playback))
    )
    return ApiApp(
        Dependencies(
            database=database,
            stream=stream,
            cache=partial(_build_cache, settings, secrets, timeouts.cache),
            uploads=uploads,
            playback=signer,
        )
    )


def _build_cache(settings: CommonSettings, secrets: SecretCache, timeout: float) -> VideoCache:
    # A token the cache refuses (rotated twice since it was read) is re-read once.
    token = redis_auth(secrets, settings.redis)
    client = create_redis(settings.redis, token, client_name="media-api", timeout=timeout)
    return VideoCache(client, settings.cache_ttl_seconds, bypass_seconds=CACHE_BYPASS_SECONDS)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _app
    if _app is None:
        try:
            settings = load_api_settings()
        except SettingsError as error:
            log.error("invalid configuration", extra={"error": str(error)})
            return ApiError(
                500, "configuration_error", "the service is misconfigured"
            ).to_response()
        configure_logging(settings.common.log_level)
        _app = build_app(settings, function_timeout(context, DEFAULT_FUNCTION_TIMEOUT_SECONDS))
    request_id = getattr(context, "aws_request_id", None) or os.environ.get("_X_AMZN_TRACE_ID")
    log.debug("request", extra={"request_id": request_id, "path": event.get("path")})
    return _app.handle(event)


def reset() -> None:
    """Close and forget the built app (tests change the environment between cases)."""
    global _app
    if _app is not None:
        _app.close()
    _app = None
