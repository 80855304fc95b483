"""Credentials from Secrets Manager (by ARN, cached) or from the environment.

The API Lambda reads secrets by ARN at run time. The worker gets them injected into its
environment by ECS, or reads them by ARN too when it is given one. Either way callers ask
a provider for the current value and call `refresh()` after the server rejects it, so a
rotated password is picked up without a restart.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


class CredentialsError(RuntimeError):
    """A secret could not be read or does not have the expected shape."""


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
        try:
            response = self._client.get_secret_value(SecretId=arn)
        except Exception as error:  # boto raises many types; the ARN is what matters here
            raise CredentialsError(f"cannot read secret {arn}: {error}") from error
        if "SecretString" not in response:
            raise CredentialsError(f"secret {arn} has no SecretString")
        return response["SecretString"]


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
    cache: SecretCache | None,
    *,
    secret_arn: str | None,
    username: str | None,
    password: str | None,
) -> DbCredentialProvider:
    """The secret ARN if one is configured, else the username and password from env."""
    if secret_arn is not None:
        if cache is None:
            raise CredentialsError("a secret ARN is configured but no Secrets Manager client")
        return SecretDbCredentials(cache, secret_arn)
    if username is None or password is None:
        raise CredentialsError("neither a database secret ARN nor a username and password")
    return StaticDbCredentials(username, password)


def redis_token(
    cache: SecretCache | None, *, secret_arn: str | None, token: str | None
) -> str | None:
    """The Redis AUTH token: the secret string by ARN, else the env value, else none."""
    if secret_arn is not None:
        if cache is None:
            raise CredentialsError("a Redis secret ARN is configured but no Secrets Manager client")
        return cache.get(secret_arn)
    return token
