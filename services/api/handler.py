"""Lambda entry point: `services.api.handler.handler`.

Clients, credentials and the database connection are built on the first invocation and
reused while the execution environment lives.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

from services.api.app import ApiApp, Dependencies
from services.api.http import ApiError
from services.common.aws import EventStream, aws_client
from services.common.cache import VideoCache
from services.common.db import Database
from services.common.logs import configure_logging
from services.common.redis_client import create_redis
from services.common.secrets import SecretCache, db_credentials, redis_token
from services.common.settings import CommonSettings, SettingsError, load_api_settings

log = logging.getLogger(__name__)
_app: ApiApp | None = None


def build_app(settings: CommonSettings) -> ApiApp:
    secrets = SecretCache(aws_client("secretsmanager", region=settings.aws_region))
    database = Database(
        settings.database,
        db_credentials(settings.database, region=settings.aws_region, secrets=secrets),
        application_name="media-api",
    )
    stream = EventStream(aws_client("kinesis", region=settings.aws_region), settings.stream_name)
    return ApiApp(
        Dependencies(
            database=database,
            stream=stream,
            cache=partial(_build_cache, settings, secrets),
            media_root=settings.media_root,
        )
    )


def _build_cache(settings: CommonSettings, secrets: SecretCache) -> VideoCache:
    token = redis_token(
        secrets, secret_arn=settings.redis.auth_secret_arn, token=settings.redis.auth_token
    )
    client = create_redis(settings.redis, token, client_name="media-api")
    return VideoCache(client, settings.cache_ttl_seconds)


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
        configure_logging(settings.log_level)
        _app = build_app(settings)
    request_id = getattr(context, "aws_request_id", None) or os.environ.get("_X_AMZN_TRACE_ID")
    log.debug("request", extra={"request_id": request_id, "path": event.get("path")})
    return _app.handle(event)


def reset() -> None:
    """Close and forget the built app (tests change the environment between cases)."""
    global _app
    if _app is not None:
        _app.close()
    _app = None
