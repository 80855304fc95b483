"""Redis client factory: TLS and AUTH when configured, short timeouts, one quick retry.

The AUTH token comes from Secrets Manager and is rotated there (issue 14, item 7): each new
connection authenticates with the token last read, and when the cache refuses it (the
rotation after next retired it) the client re-reads the secret once and tries again, so a
long-lived worker or Lambda environment follows a rotation without a restart.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from services.common.secrets import CredentialsError, SecretCache, redis_token
from services.common.settings import RedisSettings

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 1.0
REFRESH_INTERVAL_SECONDS = 30.0
"""A refused token is re-read at most this often: a cache that refuses even the secret's
newest token (a rotation half done) must not cost a Secrets Manager call per command."""


class RedisAuth(Protocol):
    """Where a client's AUTH token comes from."""

    def current(self) -> str:
        """The token new connections authenticate with."""
        ...

    def refresh(self) -> bool:
        """Re-read the token after the cache refused it; True if a new one may be in use."""
        ...


class StaticAuth:
    """A token fixed for the process lifetime (REDIS_AUTH_TOKEN, injected by ECS)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def current(self) -> str:
        return self._token

    def refresh(self) -> bool:
        return False


class SecretAuth:
    """The token held by a Secrets Manager secret (REDIS_AUTH_SECRET_ARN), as last read."""

    def __init__(
        self,
        cache: SecretCache,
        arn: str,
        *,
        interval_seconds: float = REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self._arn = arn
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._refreshed_at: float | None = None

    def current(self) -> str:
        return self._cache.get(self._arn)

    def refresh(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._refreshed_at is not None and now - self._refreshed_at < self._interval:
                return False
            self._refreshed_at = now
        try:
            self._cache.refresh(self._arn)
        except CredentialsError as error:
            log.warning("cannot re-read the cache token", extra={"error": str(error)})
            return False
        log.info("cache token re-read after the cache refused it", extra={"secret_arn": self._arn})
        return True


def redis_auth(secrets: SecretCache | None, settings: RedisSettings) -> RedisAuth | None:
    """The configured token source, its token read now (CredentialsError if unreadable):
    the secret by ARN, else the environment's token, else none (no AUTH)."""
    token = redis_token(secrets, secret_arn=settings.auth_secret_arn, token=settings.auth_token)
    if token is None:
        return None
    if settings.auth_secret_arn is not None and secrets is not None:
        return SecretAuth(secrets, settings.auth_secret_arn)
    return StaticAuth(token)


def create_redis(
    settings: RedisSettings,
    token: RedisAuth | str | None,
    *,
    client_name: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> redis.Redis:
    """A synchronous client whose every connect and every reply is bounded by `timeout`.

    With a `RedisAuth` each new connection authenticates with its current token, and a
    command the cache refuses for the token is tried once more after `refresh()`.

    Imported here, not at module level: `import redis` also imports `redis.asyncio`, about
    a quarter of a second that the API pays only when it first uses the cache.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        ssl=settings.tls,
        ssl_cert_reqs="required",
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # The cache is an optimisation: fail fast so callers can fall back to the database.
        # One immediate retry covers a pooled connection that the server closed while idle
        # (a ConnectionError). A timeout is not retried: a server that did not answer within
        # `timeout` (H4: accepts and never answers) would only cost the caller another one.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        client_name=client_name,
        decode_responses=True,
    )
    if token is None or isinstance(token, str):
        return redis.Redis(password=token, **options)
    return _refreshing_client()(token, credential_provider=_credentials(token), **options)


def _credentials(auth: RedisAuth) -> Any:
    from redis.credentials import CredentialProvider

    class CurrentToken(CredentialProvider):
        def get_credentials(self) -> tuple[str]:
            return (auth.current(),)

    return CurrentToken()


@functools.cache
def _refreshing_client() -> type:
    """`redis.Redis` that re-reads a refused token once (defined when redis is first used)."""
    import redis
    from redis.exceptions import AuthenticationError

    class TokenRefreshingRedis(redis.Redis):
        def __init__(self, auth: RedisAuth, **options: Any) -> None:
            super().__init__(**options)
            self._auth = auth

        def execute_command(self, *args: Any, **options: Any) -> Any:
            try:
                return super().execute_command(*args, **options)
            except AuthenticationError:
                # The connection that was refused is already closed; the next one
                # authenticates with the re-read token.
                if not self._auth.refresh():
                    raise
                return super().execute_command(*args, **options)

    return TokenRefreshingRedis
