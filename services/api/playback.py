"""Signed playback grants (M8): CloudFront signed cookies with a custom policy scoped to one
title, and the same grant as a signed session URL.

The policy is `{"Statement": [{"Resource": "https://{domain}/media/{id}/*", "Condition":
{"DateLessThan": {"AWS:EpochTime": expiry}}}]}` (`contract.grant_resource`): a wildcard, so
one grant covers every version, playlist, segment and key of the title (a canned policy
cannot hold one). botocore's CloudFrontSigner builds it and its signed URL; the cookie
values are that URL's query values, so nothing is encoded by hand. The signature is RSA
PKCS#1 v1.5 over SHA-1, which is what CloudFront verifies.

The private key is the string of a Secrets Manager secret; it is read through the API's
budgeted client, parsed once and kept for `SIGNING_KEY_TTL_SECONDS`, so a rotated key is
in use within minutes. botocore's signer and `cryptography` are imported when the first
grant is signed, not with this module (cold starts, `scripts/bench_cold_start.py`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.common.secrets import RefreshingSecret
from services.common.settings import PlaybackSettings
from services.contract import (
    SIGNED_COOKIE_KEY_PAIR_ID,
    SIGNED_COOKIE_POLICY,
    SIGNED_COOKIE_SIGNATURE,
    SIGNED_QUERY_KEY_PAIR_ID,
    SIGNED_QUERY_POLICY,
    SIGNED_QUERY_SIGNATURE,
    grant_resource,
    session_path,
    title_path,
)

SIGNING_KEY_TTL_SECONDS = 300.0
SIGNING_KEY_RETRY_SECONDS = 30.0


class SigningKeyError(ValueError):
    """The signing secret does not hold an RSA private key PEM (a misconfiguration)."""


@dataclass(frozen=True)
class PlaybackGrant:
    """What a player needs to play one title: where, until when, and the signed access."""

    video_id: str
    playlist_url: str
    expires_at: datetime
    cookies: dict[str, str]
    cookie_path: str
    session_url: str

    def to_api(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "playlist_url": self.playlist_url,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
            "cookies": self.cookies,
            "cookie_path": self.cookie_path,
            "session_url": self.session_url,
        }


def load_private_key(pem: str) -> Any:
    """The RSA private key in a PEM string; SigningKeyError never quotes the text."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SigningKeyError("the playback signing secret is not a PEM private key") from None
    except Exception as error:  # UnsupportedAlgorithm and kin: named by type only
        raise SigningKeyError(
            f"the playback signing secret cannot be loaded ({type(error).__name__})"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError("the playback signing secret must hold an RSA private key")
    return key


def signing_key_source(secrets_client: Any, settings: PlaybackSettings) -> RefreshingSecret[Any]:
    return RefreshingSecret(
        secrets_client,
        settings.signing_secret_arn,
        load_private_key,
        ttl_seconds=SIGNING_KEY_TTL_SECONDS,
        retry_seconds=SIGNING_KEY_RETRY_SECONDS,
    )


class PlaybackSigner:
    """Signs grants for one title with the distribution's key pair."""

    def __init__(
        self,
        settings: PlaybackSettings,
        private_key: RefreshingSecret[Any],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._private_key = private_key
        self._clock = clock

    def grant(self, video_id: str, playlist_path: str) -> PlaybackGrant:
        """A grant for `video_id` whose master playlist is the bucket key `playlist_path`.

        Raises CredentialsError (secret unreadable) or SigningKeyError (malformed)."""
        from botocore.signers import CloudFrontSigner

        domain = self._settings.domain
        expires_at = datetime.fromtimestamp(
            int(self._clock()) + self._settings.grant_seconds, tz=UTC
        )
        signer = CloudFrontSigner(self._settings.key_pair_id, _rsa_signer(self._private_key.get()))
        policy = signer.build_policy(grant_resource(domain, video_id), expires_at)
        session_url = signer.generate_presigned_url(
            f"https://{domain}{session_path(video_id)}", policy=policy
        )
        signed = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(session_url).query))
        return PlaybackGrant(
            video_id=video_id,
            playlist_url=f"https://{domain}/{playlist_path}",
            expires_at=expires_at,
            cookies={
                SIGNED_COOKIE_POLICY: signed[SIGNED_QUERY_POLICY],
                SIGNED_COOKIE_SIGNATURE: signed[SIGNED_QUERY_SIGNATURE],
                SIGNED_COOKIE_KEY_PAIR_ID: signed[SIGNED_QUERY_KEY_PAIR_ID],
            },
            cookie_path=title_path(video_id),
            session_url=session_url,
        )


def _rsa_signer(private_key: Any) -> Callable[[bytes], bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def sign(message: bytes) -> bytes:
        # CloudFront verifies RSA PKCS#1 v1.5 over SHA-1 (CloudFront-Hash-Algorithm unset).
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA1())

    return sign
