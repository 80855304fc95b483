"""Per-title AES-128 keys derived from the content-key secret (K3, M5).

The secret is a keyring (`services.contract`: `{"current": "<version>", "keys": {"<version>":
"<base64>"}}`). A title's key is HKDF-SHA256 of one keyring version, bound to the video id
and that version, so no per-title key is ever stored: the worker derives it to encrypt and
key delivery derives it again to serve it. Rotation adds a version and moves `current`; a
title records the version it was keyed from and keeps deriving the same key from it.

Nothing here puts key material into an exception, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.contract import (
    CONTENT_KEY_BYTES,
    KEY_VERSION_PATTERN,
    KEYRING_CURRENT,
    KEYRING_KEYS,
)

TITLE_KEY_BYTES = 16
"""HLS AES-128 (RFC 8216 4.3.2.4): a 128-bit key."""
# The salt names the purpose, so the same content key used for anything else some day
# derives unrelated keys. Changing it changes every title's key: never edit, add a /v2.
HKDF_SALT = b"media-platform/hls-aes-128-title-key/v1"
_VERSION = re.compile(KEY_VERSION_PATTERN)
_VIDEO_ID_MAX = 128


class ContentKeyError(ValueError):
    """The keyring is malformed or lacks a version: a misconfiguration, not retryable."""


@dataclass(frozen=True)
class TitleKey:
    """One title's AES-128 key and the keyring version it was derived from."""

    version: str
    """Recorded on the video (videos.key_version), so the key can be derived again."""
    key: bytes = field(repr=False)
    """16 bytes; never logged."""


@dataclass(frozen=True)
class Keyring:
    """The content keys by version; `current` keys new titles."""

    current: str
    _keys: MappingProxyType[str, bytes] = field(repr=False)

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def title_key(self, video_id: str, version: str | None = None) -> TitleKey:
        """The key of `video_id` from `version` (None: the current version)."""
        version = self.current if version is None else version
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ContentKeyError("the key version is not a valid version name")
        secret = self._keys.get(version)
        if secret is None:
            raise ContentKeyError(f"the content keyring has no version {version!r}")
        return TitleKey(version=version, key=derive_title_key(secret, video_id, version))


def derive_title_key(content_key: bytes, video_id: str, version: str) -> bytes:
    """HKDF-SHA256(content key, salt=purpose label, info=video id NUL version), 16 bytes."""
    if not isinstance(video_id, str) or not 0 < len(video_id) <= _VIDEO_ID_MAX:
        raise ContentKeyError(f"a video id is 1 to {_VIDEO_ID_MAX} characters")
    if "\x00" in video_id:
        raise ContentKeyError("a video id may not contain NUL")
    # NUL separates the two so that no (id, version) pair shares its info with another.
    info = video_id.encode() + b"\x00" + version.encode()
    return HKDF(
        algorithm=hashes.SHA256(), length=TITLE_KEY_BYTES, salt=HKDF_SALT, info=info
    ).derive(content_key)


def load_keyring(secret_string: str) -> Keyring:
    """The keyring in the content-key secret's string; ContentKeyError says what is wrong
    (naming versions, never echoing a key)."""
    try:
        document = json.loads(secret_string)
    except (TypeError, ValueError):
        # The decoder's message quotes the text around the error: it could be key material.
        raise ContentKeyError("the content-key secret is not JSON") from None
    if not isinstance(document, dict):
        raise ContentKeyError("the content-key secret is not a JSON object")
    keys = _keys(document.get(KEYRING_KEYS))
    current = document.get(KEYRING_CURRENT)
    if not isinstance(current, str) or not _VERSION.fullmatch(current):
        raise ContentKeyError(
            f"the content-key secret's {KEYRING_CURRENT!r} must be a version name"
            f" matching {KEY_VERSION_PATTERN}"
        )
    if current not in keys:
        raise ContentKeyError(
            f"the content-key secret's {KEYRING_CURRENT!r} version {current!r} is not"
            f" among its {KEYRING_KEYS!r}"
        )
    return Keyring(current=current, _keys=MappingProxyType(keys))


def _keys(value: Any) -> dict[str, bytes]:
    if not isinstance(value, dict) or not value:
        raise ContentKeyError(
            f"the content-key secret's {KEYRING_KEYS!r} must be a non-empty object of"
            " version: base64 key"
        )
    keys = {}
    for version, encoded in value.items():
        if not _VERSION.fullmatch(version):
            # Not echoed: a version name in the wrong place might be a key.
            raise ContentKeyError(
                f"a version name in the content-key secret does not match {KEY_VERSION_PATTERN}"
            )
        keys[version] = _decode(version, encoded)
    return keys


def _decode(version: str, encoded: Any) -> bytes:
    if not isinstance(encoded, str):
        raise ContentKeyError(f"content key version {version!r} is not a base64 string")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ContentKeyError(f"content key version {version!r} is not valid base64") from None
    if len(key) != CONTENT_KEY_BYTES:
        raise ContentKeyError(
            f"content key version {version!r} is {len(key)} bytes, must be {CONTENT_KEY_BYTES}"
        )
    return key
