"""Rotation of the cache's AUTH token (issue 14, item 7): ElastiCache's ROTATE strategy.

Secrets Manager runs the four steps of `services.rotation.protocol` for the cache token
secret (`REDIS_AUTH_SECRET_ARN`, the only secret this function accepts):

* `createSecret` stores a fresh token as AWSPENDING: `CACHE_AUTH_TOKEN_LENGTH` characters from
  letters, digits and the specials ElastiCache accepts, at least one of each kind, drawn with
  Python's `secrets` (the operating system's CSPRNG). Secrets Manager's GetRandomPassword
  would do as well, but IAM grants it only on "*" and it costs a network call per token.
* `setSecret` calls ModifyReplicationGroup with the pending token, `AuthTokenUpdateStrategy`
  ROTATE and ApplyImmediately: the group accepts it *beside* the token it had. A group that
  is not `available` is refused (the step fails, Secrets Manager tries the rotation again
  later); a pending token that already authenticates is not applied twice.
* `testSecret` connects to the primary endpoint (TLS, server verified, like the services),
  authenticates with the pending token and pings, waiting a bounded time while the
  modification applies, then fails naming the group's status.
* `finishSecret` makes it AWSCURRENT; the old token becomes AWSPREVIOUS.

Retiring: ElastiCache keeps at most the two most recent tokens. "If this modification is
performed on a server that already supports two AUTH tokens, the oldest AUTH token will also
be removed during this operation" (ElastiCache user guide, "Modifying the AUTH token on an
existing cluster": https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html). So after
every rotation exactly AWSCURRENT and AWSPREVIOUS authenticate, and the ROTATE of the next
rotation removes AWSPREVIOUS; no SET is needed (SET would cut AWSPREVIOUS off at once, before
clients that still hold it have re-read the secret). The overlap a client gets: a token stays
valid for one whole rotation period after it stopped being current.

Tokens are never logged, nor put in an error message.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from services.common.aws import AWS_ERRORS, aws_client
from services.common.invocation import function_timeout
from services.common.logs import configure_logging
from services.common.redis_client import create_redis
from services.common.settings import (
    CacheTokenRotationSettings,
    load_cache_token_rotation_settings,
)
from services.contract import CACHE_AUTH_TOKEN_LENGTH, CACHE_AUTH_TOKEN_SPECIALS
from services.rotation.protocol import RotationError, RotationEvent, rotate

log = logging.getLogger(__name__)

TOKEN_CLASSES = (
    string.ascii_uppercase,
    string.ascii_lowercase,
    string.digits,
    CACHE_AUTH_TOKEN_SPECIALS,
)
TOKEN_ALPHABET = "".join(TOKEN_CLASSES)
AVAILABLE = "available"
ROTATE = "ROTATE"
CLIENT_NAME = "cache-token-rotation"
REDIS_TIMEOUT_SECONDS = 3.0
POLL_SECONDS = 10.0
# What the test step leaves of the invocation's time for answering Secrets Manager.
MARGIN_SECONDS = 10.0
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 300.0
"""The function's timeout when the context cannot tell (components/cache.py's setting)."""
# Each step is a fresh invocation: a few quick attempts per AWS call.
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 3


def new_token(length: int = CACHE_AUTH_TOKEN_LENGTH) -> str:
    """A token ElastiCache accepts, with every kind of character it allows at least once."""
    chosen = [secrets.choice(kind) for kind in TOKEN_CLASSES]
    chosen += [secrets.choice(TOKEN_ALPHABET) for _ in range(length - len(chosen))]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


class CacheUnreachable(RotationError):
    """The cache did not answer: neither accepted nor refused the token."""


class AuthTokenCredential:
    """The cache's AUTH token as a `services.rotation.protocol.Credential`."""

    def __init__(
        self,
        elasticache: Any,
        connect: Callable[[str], Any],
        replication_group_id: str,
        *,
        apply_wait_seconds: float,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`connect(token)` gives a Redis client of the primary endpoint using `token`;
        `apply_wait_seconds` bounds how long the test step waits for a modification."""
        self._elasticache = elasticache
        self._connect = connect
        self._group_id = replication_group_id
        self._apply_wait = apply_wait_seconds
        self._poll = poll_seconds
        self._clock = clock
        self._sleep = sleep

    def new_value(self) -> str:
        return new_token()

    def set(self, pending: str, current: str) -> None:
        if self._authenticates(pending):
            log.info("the pending token is already accepted", extra={"group": self._group_id})
            return
        status = self._status()
        if status != AVAILABLE:
            raise RotationError(
                f"replication group {self._group_id} is {status}, not {AVAILABLE}: "
                "the token is not changed now; the rotation is tried again later"
            )
        try:
            self._elasticache.modify_replication_group(
                ReplicationGroupId=self._group_id,
                AuthToken=pending,
                AuthTokenUpdateStrategy=ROTATE,
                ApplyImmediately=True,
            )
        except AWS_ERRORS as error:
            raise RotationError(
                f"ModifyReplicationGroup of {self._group_id} failed: {_error_code(error)}"
            ) from None
        log.info("pending token applied with ROTATE", extra={"group": self._group_id})

    def test(self, pending: str) -> None:
        deadline = self._clock() + self._apply_wait
        while True:
            try:
                if self._authenticates(pending):
                    return
                reason = "refuses the pending token"
            except CacheUnreachable as error:
                reason = str(error)
            if self._clock() + self._poll > deadline:
                break
            self._sleep(self._poll)
        raise RotationError(
            f"the cache of {self._group_id} {reason} after {self._apply_wait:.0f} s "
            f"(group {self._status()}): the modification may still be applying; "
            "the rotation is tried again later"
        )

    def retire(self, current: str, previous: str | None) -> None:
        # ElastiCache's next ROTATE drops the oldest of its two tokens (module docstring):
        # until then `previous` keeps working for clients that have not re-read the secret.
        log.info(
            "rotation finished; the previous token stays valid until the next rotation",
            extra={"group": self._group_id, "has_previous": previous is not None},
        )

    def _authenticates(self, token: str) -> bool:
        """Whether the primary accepts `token`; CacheUnreachable if it does not answer."""
        from redis.exceptions import AuthenticationError, RedisError

        client = self._connect(token)
        try:
            return bool(client.ping())
        except AuthenticationError:  # WRONGPASS, NOAUTH, invalid password
            return False
        except (RedisError, OSError) as error:
            raise CacheUnreachable(f"cannot be reached ({type(error).__name__})") from None
        finally:
            client.close()

    def _status(self) -> str:
        try:
            groups = self._elasticache.describe_replication_groups(
                ReplicationGroupId=self._group_id
            )["ReplicationGroups"]
        except AWS_ERRORS as error:
            raise RotationError(
                f"DescribeReplicationGroups of {self._group_id} failed: {_error_code(error)}"
            ) from None
        return str(groups[0].get("Status", "unknown")) if groups else "missing"


def _error_code(error: Exception) -> str:
    """An AWS error by its code only: its message is not ours to trust with a token."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(error).__name__))
    return type(error).__name__


def build_credential(
    settings: CacheTokenRotationSettings, elasticache: Any, function_seconds: float
) -> AuthTokenCredential:
    """The credential of the configured group, waiting at most what the invocation has left."""

    def connect(token: str) -> Any:
        return create_redis(
            settings.redis, token, client_name=CLIENT_NAME, timeout=REDIS_TIMEOUT_SECONDS
        )

    return AuthTokenCredential(
        elasticache,
        connect,
        settings.replication_group_id,
        apply_wait_seconds=max(0.0, function_seconds - MARGIN_SECONDS - REDIS_TIMEOUT_SECONDS),
    )


def check_secret(event: Any, secrets: Any, settings: CacheTokenRotationSettings) -> None:
    """Only the configured secret is rotated here, whoever asks (by name or by ARN)."""
    request = RotationEvent.parse(event if isinstance(event, dict) else {})
    try:
        arn = secrets.describe_secret(SecretId=request.secret_id)["ARN"]
    except AWS_ERRORS as error:
        raise RotationError(f"cannot describe the secret: {_error_code(error)}") from None
    if arn != settings.redis.auth_secret_arn:
        raise RotationError("this function rotates only the cache's AUTH token secret")


def _client(service: str, region: str | None) -> Any:
    return aws_client(
        service,
        region=region,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_attempts=MAX_ATTEMPTS,
    )


_settings: CacheTokenRotationSettings | None = None


def _configured() -> CacheTokenRotationSettings:
    """The settings, read (and logging set up) once per execution environment."""
    global _settings
    if _settings is None:
        settings = load_cache_token_rotation_settings()
        configure_logging(settings.log_level)
        _settings = settings
    return _settings


def handler(event: Any, context: Any) -> None:
    """Lambda entry point (`CACHE_TOKEN_ROTATION_HANDLER`): one step of one rotation."""
    settings = _configured()
    secrets = _client("secretsmanager", settings.aws_region)
    check_secret(event, secrets, settings)
    credential = build_credential(
        settings,
        _client("elasticache", settings.aws_region),
        function_timeout(context, DEFAULT_FUNCTION_TIMEOUT_SECONDS),
    )
    rotate(event, secrets, credential)


def reset() -> None:
    """Forget the settings read (tests change the environment between cases)."""
    global _settings
    _settings = None
