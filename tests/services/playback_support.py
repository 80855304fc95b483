"""Helpers for the signed-playback tests (M8-M10): the distribution's key pair as the stack
would hold it (private PEM in a secret, public PEM in the key group), the API's signer with a
chosen clock, grants minted outside the API (a past clock, another key, policies we never
issue), and function URL events shaped as the distribution sends them to key delivery."""

from __future__ import annotations

import base64
import json
import urllib.parse
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from services.api.playback import PlaybackSigner, load_private_key
from services.common.secrets import RefreshingSecret
from services.common.settings import PlaybackSettings
from services.common.signed_access import load_public_key
from services.contract import SIGNED_COOKIES, SIGNED_QUERY_PARAMETERS, grant_resource

DOMAIN = "media.example.com"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
OTHER_KEY_PAIR_ID = "K3OTHERKEYPAIR"
FUNCTION_URL_HOST = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-central-1.on.aws"


@dataclass(frozen=True)
class KeyPair:
    private: Any
    private_pem: str
    public_pem: str

    @property
    def public(self) -> Any:
        return load_public_key(self.public_pem)


def _key_pair(bits: int = 2048) -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return KeyPair(
        private=private,
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_pem=private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


@cache
def distribution_key() -> KeyPair:
    """The key group's key: its private half is the API's signing secret."""
    return _key_pair()


@cache
def other_key() -> KeyPair:
    """A key the distribution does not trust."""
    return _key_pair()


@cache
def small_key() -> KeyPair:
    return _key_pair(1024)


def ec_public_pem() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_keys() -> dict[str, Any]:
    return {KEY_PAIR_ID: distribution_key().public}


def public_keys_json() -> str:
    """PLAYBACK_PUBLIC_KEYS as the stack writes it."""
    return json.dumps({KEY_PAIR_ID: distribution_key().public_pem})


def playback_settings(grant_seconds: int = 3600) -> PlaybackSettings:
    return PlaybackSettings(
        domain=DOMAIN,
        key_pair_id=KEY_PAIR_ID,
        signing_secret_arn="unused",
        grant_seconds=grant_seconds,
    )


class FixedKey:
    """A RefreshingSecret stand-in that always answers one key."""

    def __init__(self, pem: str) -> None:
        self._key = load_private_key(pem)

    def get(self, **_: Any) -> Any:
        return self._key


def signer(
    *, clock=None, grant_seconds: int = 3600, key_source: Any = None, settings=None
) -> PlaybackSigner:
    return PlaybackSigner(
        settings or playback_settings(grant_seconds),
        key_source or FixedKey(distribution_key().private_pem),
        **({} if clock is None else {"clock": clock}),
    )


def secret_signer(secrets_client: Any, arn: str, *, clock=None, **kwargs: Any) -> PlaybackSigner:
    """The signer the handler builds: the private key read from the secret by ARN."""
    source = RefreshingSecret(
        secrets_client, arn, load_private_key, ttl_seconds=300, retry_seconds=30
    )
    return signer(clock=clock, key_source=source, **kwargs)


# -- grants minted outside the API ---------------------------------------------------------


def safe_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().translate(str.maketrans("+=/", "-_~"))


def sign_policy(policy: str | bytes, key: KeyPair | None = None) -> str:
    data = policy.encode() if isinstance(policy, str) else policy
    private = (key or distribution_key()).private
    return safe_b64(private.sign(data, padding.PKCS1v15(), hashes.SHA1()))


def policy_for(video_id: str, expires_at: int, *, domain: str = DOMAIN) -> str:
    """The policy the API issues, built by botocore as the API builds it."""
    from datetime import UTC, datetime

    builder = CloudFrontSigner(KEY_PAIR_ID, lambda message: b"")
    return builder.build_policy(
        grant_resource(domain, video_id), datetime.fromtimestamp(expires_at, tz=UTC)
    )


def grant_cookies(
    policy: str, *, key: KeyPair | None = None, key_pair_id: str = KEY_PAIR_ID
) -> dict[str, str]:
    """The three CloudFront-* cookies of a policy signed with `key`."""
    return dict(
        zip(
            SIGNED_COOKIES,
            (safe_b64(policy.encode()), sign_policy(policy, key), key_pair_id),
            strict=True,
        )
    )


def as_query(cookies: dict[str, str]) -> dict[str, str]:
    """The same grant as signed query parameters."""
    return dict(zip(SIGNED_QUERY_PARAMETERS, cookies.values(), strict=True))


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def new_video_id() -> str:
    return str(uuid.uuid4())


# -- function URL events ----------------------------------------------------------------------


def function_url_event(
    path: str,
    *,
    method: str = "GET",
    cookies: dict[str, str] | list[str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Lambda function URL event (payload format 2.0) as the distribution's origin request
    reaches the function: the viewer's path, only the forwarded cookies and query."""
    if isinstance(cookies, dict):
        cookies = [f"{name}={value}" for name, value in cookies.items()]
    raw_query = urllib.parse.urlencode(query or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"host": FUNCTION_URL_HOST, "x-amz-cf-id": "test"},
        "requestContext": {
            "domainName": FUNCTION_URL_HOST,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1"},
            "requestId": "req-1",
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = list(cookies)
    if query:
        event["queryStringParameters"] = dict(query)
    return event
