"""Key delivery (M9): `services.keys.handler.handler`, a Lambda function URL (payload format
2.0, AWS_IAM auth) reached only through the distribution (Lambda origin access control).

* `GET /media/{id}/keys/{version}.key`: the title's AES-128 key, derived from the content
  keyring (K3) for that version, as 16 bytes, `Cache-Control: no-store`.
* `GET /media/{id}/session?Policy&Signature&Key-Pair-Id`: a web player redeems the API's
  signed session URL here and gets the same grant as the three CloudFront-* cookies, set
  on the playback domain itself (browsers send cookies only to the domain that set them).

Every request's grant is checked again here, behind the edge's own check (defence in
depth): the distribution's origin request policy forwards only the three signed cookies
and the three signed query parameters. The function sees its own URL's host, not the
viewer's, so a grant must cover `https://{the host its resource names}{request path}`; the
edge has already matched the host.

Answers: 403 for a missing, invalid, expired or other title's grant; 404 for another path
or a key version the keyring does not have; 405 for anything but GET and HEAD; 503 when the
keyring cannot be read. Keys, cookies, policies and signatures are never logged.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.aws import aws_client
from services.common.content_keys import ContentKeyError, Keyring, load_keyring
from services.common.invocation import function_timeout
from services.common.logs import configure_logging
from services.common.secrets import CredentialsError, RefreshingSecret
from services.common.settings import KeysSettings, SettingsError, load_keys_settings
from services.common.signed_access import (
    URL_MAX_CHARS,
    GrantRefused,
    SignedValues,
    grant_values,
    verify,
)
from services.contract import (
    KEY_VERSION_PATTERN,
    KEYS_DIRECTORY,
    MEDIA_PREFIX,
    SESSION_PATH,
    SIGNED_COOKIE_KEY_PAIR_ID,
    SIGNED_COOKIE_POLICY,
    SIGNED_COOKIE_SIGNATURE,
    title_path,
)

log = logging.getLogger(__name__)

KEYRING_TTL_SECONDS = 300.0
KEYRING_RETRY_SECONDS = 30.0
KEYRING_MISS_REFRESH_SECONDS = 30.0
"""A key version the cached keyring lacks may be a fresh rotation: the secret is read again,
but at most this often, so requests for made-up versions cannot hammer Secrets Manager."""
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 10.0
QUERY_MAX_FIELDS = 16
ALLOWED_METHODS = ("GET", "HEAD")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_VERSION = KEY_VERSION_PATTERN.removeprefix("^").removesuffix("$")
_KEY_PATH = re.compile(
    rf"^/{MEDIA_PREFIX}(?P<video_id>{_UUID})/{KEYS_DIRECTORY}/(?P<version>{_VERSION})\.key$"
)
_SESSION_PATH = re.compile(rf"^/{MEDIA_PREFIX}(?P<video_id>{_UUID})/{SESSION_PATH}$")
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class KeyRequest:
    """What key delivery reads of a function URL event."""

    method: str
    path: str
    cookies: tuple[str, ...] = field(repr=False)
    query: tuple[tuple[str, str], ...] = field(repr=False)


class BadRequest(Exception):
    """The event cannot be read as a request (a 400 no viewer should ever see)."""


def parse_event(event: Any) -> KeyRequest:
    """A function URL event (payload format 2.0), read defensively: the fields this
    function needs, each of the type it needs, or BadRequest."""
    if not isinstance(event, dict):
        raise BadRequest("the event is not an object")
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    method = http.get("method") if isinstance(http, dict) else None
    path = event.get("rawPath")
    cookies = event.get("cookies") or []
    raw_query = event.get("rawQueryString") or ""
    if not isinstance(method, str) or not isinstance(path, str) or not isinstance(raw_query, str):
        raise BadRequest("the event lacks a method or a path")
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise BadRequest("the event's cookies are not a list of strings")
    if len(path) + len(raw_query) > URL_MAX_CHARS:
        raise BadRequest("the URL is too long")
    try:
        query = urllib.parse.parse_qsl(
            raw_query, keep_blank_values=True, max_num_fields=QUERY_MAX_FIELDS
        )
    except ValueError:
        raise BadRequest("the query has too many parameters") from None
    return KeyRequest(method.upper(), path, tuple(cookies), tuple(query))


class KeyDelivery:
    """Checks grants and answers keys and sessions."""

    def __init__(
        self,
        keyring: RefreshingSecret[Keyring],
        public_keys: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keyring = keyring
        self._public_keys = public_keys
        self._clock = clock

    def handle(self, event: Any) -> dict[str, Any]:
        try:
            return self._handle(parse_event(event))
        except BadRequest as error:
            return error_response(400, "bad_request", str(error))
        except Exception:
            log.exception("unhandled error")
            return error_response(500, "internal_error", "internal error")

    def _handle(self, request: KeyRequest) -> dict[str, Any]:
        key_path = _KEY_PATH.fullmatch(request.path)
        session = _SESSION_PATH.fullmatch(request.path)
        if key_path is None and session is None:
            return error_response(404, "not_found", "no such key or session")
        if request.method not in ALLOWED_METHODS:
            return error_response(
                405,
                "method_not_allowed",
                f"{request.method or 'this method'} is not allowed",
                {"Allow": ", ".join(ALLOWED_METHODS)},
            )
        match = key_path or session
        assert match is not None
        video_id = match.group("video_id")
        try:
            values = grant_values(request.cookies, request.query)
            expires_at = self._check(values, request.path)
        except GrantRefused as refusal:
            log.warning(
                "grant refused",
                extra={"video_id": video_id, "path": request.path, "reason": str(refusal)},
            )
            return error_response(
                403, "forbidden", "a valid playback grant for this title is required"
            )
        if session is not None:
            return self._session(video_id, values, expires_at, request.method)
        return self._key(video_id, match.group("version"), request.method)

    def _check(self, values: SignedValues, path: str) -> int:
        """The grant's expiry, once it verifies and covers this path on its own host."""
        grant = verify(values, self._public_keys, now=self._clock())
        if not grant.covers(f"https://{grant.host}{path}"):
            raise GrantRefused("the grant is for another title")
        return grant.expires_at

    def _key(self, video_id: str, version: str, method: str) -> dict[str, Any]:
        try:
            keyring = self._keyring.get()
            if version not in keyring.versions:
                keyring = self._keyring.get(max_age=KEYRING_MISS_REFRESH_SECONDS)
        except CredentialsError as error:
            log.error("content keyring unavailable", extra={"error": str(error)})
            return error_response(
                503, "keyring_unavailable", "keys cannot be served right now", {"Retry-After": "1"}
            )
        except ContentKeyError as error:  # names versions only, never key material
            log.error("content keyring misconfigured", extra={"error": str(error)})
            return error_response(500, "configuration_error", "the service is misconfigured")
        if version not in keyring.versions:
            log.warning("unknown key version", extra={"video_id": video_id, "version": version})
            return error_response(404, "not_found", "no such key")
        key = keyring.title_key(video_id, version).key
        log.info("key delivered", extra={"video_id": video_id, "version": version})
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream", **_NO_STORE},
            "body": base64.b64encode(key).decode() if method == "GET" else "",
            "isBase64Encoded": method == "GET",
        }

    def _session(
        self, video_id: str, values: SignedValues, expires_at: int, method: str
    ) -> dict[str, Any]:
        """204 with the grant as the three signed cookies on the playback domain, for the
        title's path only, until the grant expires."""
        max_age = max(0, expires_at - int(self._clock()))
        attributes = (
            f"Path={title_path(video_id)}; Max-Age={max_age}; Secure; HttpOnly; SameSite=None"
        )
        cookies = {
            SIGNED_COOKIE_POLICY: values.policy,
            SIGNED_COOKIE_SIGNATURE: values.signature,
            SIGNED_COOKIE_KEY_PAIR_ID: values.key_pair_id,
        }
        log.info("session opened", extra={"video_id": video_id, "max_age": max_age})
        return {
            "statusCode": 204,
            "headers": dict(_NO_STORE),
            # Values were checked to be CloudFront-safe base64 and a key id: nothing in them
            # can end the cookie or add an attribute.
            "cookies": [f"{name}={value}; {attributes}" for name, value in cookies.items()],
            "body": "",
            "isBase64Encoded": False,
        }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **_NO_STORE, **(headers or {})},
        "body": json.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }


# -- Lambda entry point -----------------------------------------------------------------------

_delivery: KeyDelivery | None = None


def build_delivery(settings: KeysSettings, function_timeout: float) -> KeyDelivery:
    """Secrets Manager bounded so that a read with its retry ends well inside the function's
    timeout (the distribution waits for the origin meanwhile)."""
    secrets = aws_client(
        "secretsmanager",
        region=settings.aws_region,
        connect_timeout=min(1.0, 0.1 * function_timeout),
        read_timeout=min(2.0, 0.2 * function_timeout),
        max_attempts=2,
    )
    keyring = RefreshingSecret(
        secrets,
        settings.content_key_secret_arn,
        load_keyring,
        ttl_seconds=KEYRING_TTL_SECONDS,
        retry_seconds=KEYRING_RETRY_SECONDS,
    )
    return KeyDelivery(keyring, settings.public_keys)


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _delivery
    if _delivery is None:
        try:
            settings = load_keys_settings()
        except SettingsError as error:
            log.error("invalid configuration", extra={"error": str(error)})
            return error_response(500, "configuration_error", "the service is misconfigured")
        configure_logging(settings.log_level)
        _delivery = build_delivery(
            settings, function_timeout(context, DEFAULT_FUNCTION_TIMEOUT_SECONDS)
        )
    return _delivery.handle(event)


def reset() -> None:
    """Forget the built delivery (tests change the environment between cases)."""
    global _delivery
    _delivery = None
