"""Redis client factory: TLS and AUTH when configured, short timeouts, one quick retry."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.common.settings import RedisSettings


def create_redis(
    settings: RedisSettings, token: str | None, *, client_name: str, timeout: float = 1.0
) -> redis.Redis:
    # The cache is an optimisation: fail fast so callers can fall back to the database.
    # One immediate retry covers a pooled connection that the server closed while idle.
    return redis.Redis(
        host=settings.host,
        port=settings.port,
        password=token,
        ssl=settings.tls,
        ssl_cert_reqs="required",
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        client_name=client_name,
        decode_responses=True,
    )
