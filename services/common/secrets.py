"""Database credentials: RDS IAM auth tokens, Secrets Manager (by ARN, cached) or the
environment; and the Redis AUTH token.

The API Lambda and the worker log in as their own roles with an IAM auth token made for
each new connection. The migration function reads the master secret by ARN. A worker may
instead get a user name and password injected into its environment by ECS. Whatever the
source, callers ask a provider for the current value and call `refresh()` after the server
rejects it, so a rotated password is picked up without a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from services.common.aws import AWS_ERRORS, LazyClient, aws_client
from services.common.settings import DatabaseSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class CredentialsError(RuntimeError):
    """A secret could not be read or does not have the expected shape."""


def read_secret_string(client: Any, arn: str) -> str:
    """A secret's current string; CredentialsError names the ARN, never a value."""
    try:
        response = client.get_secret_value(SecretId=arn)
    except Exception as error:  # boto raises many types; the ARN is what matters here
        raise CredentialsError(f"cannot read secret {arn}: {error}") from error
    if "SecretString" not in response:
        raise CredentialsError(f"secret {arn} has no SecretString")
    return response["SecretString"]


@dataclass(frozen=True)
class DbCredentials:
    username: str
    password: str = field(repr=False)


class SecretCache:
    """Secret strings by ARN, fetched once and kept until refreshed."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, arn: str) -> str:
        with self._lock:
            if arn not in self._values:
                self._values[arn] = self._fetch(arn)
            return self._values[arn]

    def refresh(self, arn: str) -> str:
        with self._lock:
            self._values[arn] = self._fetch(arn)
            return self._values[arn]

    def _fetch(self, arn: str) -> str:
        return read_secret_string(self._client, arn)


class RefreshingSecret(Generic[T]):
    """One secret by ARN, parsed, re-read once `ttl_seconds` old so a rotation (a new
    signing key, a new content-key version) is picked up without a restart.

    When a re-read fails (Secrets Manager unreachable, or a value that does not parse) the
    last good value is kept and the read is tried again `retry_seconds` later, rather than
    on every request: each attempt can cost a caller its whole AWS time budget. Without a
    good value yet, the failure is raised: CredentialsError (unreadable) or what `parse`
    raises (malformed)."""

    def __init__(
        self,
        client: Any,
        arn: str,
        parse: Callable[[str], T],
        *,
        ttl_seconds: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._arn = arn
        self._parse = parse
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._attempted_at = 0.0
        self._next_read = 0.0

    def get(self, *, max_age: float | None = None) -> T:
        """The value; read again first if it is due, or if the last read was longer than
        `max_age` ago (a caller that found something missing in it, e.g. a new key
        version: so such reads happen at most once per `max_age`)."""
        with self._lock:
            now = self._clock()
            stale = max_age is not None and now - self._attempted_at > max_age
            if self._value is None or now >= self._next_read or stale:
                self._read(now)
            assert self._value is not None
            return self._value

    def _read(self, now: float) -> None:
        self._attempted_at = now
        try:
            value = self._parse(read_secret_string(self._client, self._arn))
        except Exception as error:
            if self._value is None:
                raise
            # A parse error is named by type only: its text could quote the secret.
            reason = str(error) if isinstance(error, CredentialsError) else type(error).__name__
            log.warning(
                "secret re-read failed; keeping the last value",
                extra={"secret_arn": self._arn, "error": reason},
            )
            self._next_read = now + self._retry
            return
        self._value, self._next_read = value, now + self._ttl


class DbCredentialProvider(Protocol):
    def current(self) -> DbCredentials: ...

    def refresh(self) -> bool:
        """Fetch again; True if a new value may now be in use."""
        ...


class SecretDbCredentials:
    """The RDS-managed master secret: JSON with `username` and `password`."""

    def __init__(self, cache: SecretCache, arn: str) -> None:
        self._cache = cache
        self._arn = arn

    def current(self) -> DbCredentials:
        return _parse_db_secret(self._arn, self._cache.get(self._arn))

    def refresh(self) -> bool:
        self._cache.refresh(self._arn)
        return True


class IamDbCredentials:
    """RDS IAM database authentication: the password is a SigV4-presigned token.

    A token is made locally (no AWS call), lives 15 minutes and is checked only when a
    connection is opened, so a fresh one is made for every new connection.
    """

    def __init__(self, rds_client: Any, *, host: str, port: int, user: str, region: str) -> None:
        self._rds = rds_client
        self._host = host
        self._port = port
        self._user = user
        self._region = region

    def current(self) -> DbCredentials:
        try:
            token = self._rds.generate_db_auth_token(
                DBHostname=self._host, Port=self._port, DBUsername=self._user, Region=self._region
            )
        except AWS_ERRORS as error:
            raise CredentialsError(
                f"cannot make an IAM auth token for {self._user}: {error}"
            ) from error
        return DbCredentials(self._user, token)

    def refresh(self) -> bool:
        return True


class StaticDbCredentials:
    """Credentials fixed for the process lifetime (injected by ECS at task start)."""

    def __init__(self, username: str, password: str) -> None:
        self._credentials = DbCredentials(username, password)

    def current(self) -> DbCredentials:
        return self._credentials

    def refresh(self) -> bool:
        return False


def _parse_db_secret(arn: str, secret_string: str) -> DbCredentials:
    try:
        document = json.loads(secret_string)
    except json.JSONDecodeError:
        raise CredentialsError(f"secret {arn} is not JSON") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"secret {arn} is not a JSON object")
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise CredentialsError(f"secret {arn} lacks string 'username' and 'password'")
    return DbCredentials(username, password)


def db_credentials(
    database: DatabaseSettings, *, region: str | None, secrets: SecretCache
) -> DbCredentialProvider:
    """The provider for the one credential source the settings configured."""
    if database.iam_user is not None:
        if region is None:
            raise CredentialsError("IAM database authentication needs an AWS region")
        return IamDbCredentials(
            LazyClient(lambda: aws_client("rds", region=region)),
            host=database.host,
            port=database.port,
            user=database.iam_user,
            region=region,
        )
    if database.secret_arn is not None:
        return SecretDbCredentials(secrets, database.secret_arn)
    if database.username is None or database.password is None:
        raise CredentialsError("no database credentials configured")
    return StaticDbCredentials(database.username, database.password)


def redis_token(
    cache: SecretCache | None, *, secret_arn: str | None, token: str | None
) -> str | None:
    """The Redis AUTH token: the secret string by ARN, else the env value, else none."""
    if secret_arn is not None:
        if cache is None:
            raise CredentialsError("a Redis secret ARN is configured but no Secrets Manager client")
        return cache.get(secret_arn)
    return token
