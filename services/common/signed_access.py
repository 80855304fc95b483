"""CloudFront signed access (M8, M9): a grant's three values from signed cookies or signed
query parameters, checked the way CloudFront checks them at the edge.

Key delivery checks every grant again behind the distribution (defence in depth), and the
tests' edge double enforces the distribution's rules with this same code. A grant is:

* a `Key-Pair-Id` naming one of the key group's public keys;
* a `Policy` (CloudFront-safe base64 of the policy JSON) whose RSA PKCS#1 v1.5 signature
  over SHA-1 is `Signature`: what CloudFront verifies;
* a policy with exactly what the API issues (`services.api.playback`): one statement, a
  `Resource` string and `Condition.DateLessThan.AWS:EpochTime` as an integer. Anything
  else (an IP condition, a start date, a second statement) is refused: we never issue it;
* not expired, and a `Resource` that matches the request's URL with CloudFront's
  wildcards (`*` any run of characters, `?` one character).

Nothing here puts a cookie, a policy or a signature into an exception or a log line: a
refusal names its reason only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.common import safejson
from services.common.settings import KEY_PAIR_ID_PATTERN
from services.contract import (
    SIGNED_COOKIE_KEY_PAIR_ID,
    SIGNED_COOKIE_POLICY,
    SIGNED_COOKIE_SIGNATURE,
    SIGNED_QUERY_KEY_PAIR_ID,
    SIGNED_QUERY_PARAMETERS,
    SIGNED_QUERY_POLICY,
    SIGNED_QUERY_SIGNATURE,
)

POLICY_MAX_CHARS = 4096
"""Base64 of a policy; ours is about 200 characters."""
SIGNATURE_MAX_CHARS = 1024
"""Base64 of an RSA signature: 344 characters for 2048 bits, 684 for 4096."""
RSA_MIN_BITS = 2048
"""CloudFront's public keys are RSA 2048 (or larger)."""
URL_MAX_CHARS = 8192
_SAFE_BASE64 = re.compile(r"^[A-Za-z0-9~-]+_{0,2}$")
_TO_STANDARD_BASE64 = str.maketrans("-_~", "+=/")
_KEY_PAIR_ID = re.compile(KEY_PAIR_ID_PATTERN)
_RESOURCE_HOST = re.compile(r"^https://(?P<host>[^/*?]+)/")
_EXPIRY_MAX = 2**33
"""An epoch second far beyond any grant (the year 2242); bounds what a policy may hold."""


class GrantRefused(Exception):
    """The request carries no valid grant; the message is the reason (never a value)."""


@dataclass(frozen=True)
class SignedValues:
    """A grant's three values as the request carried them."""

    policy: str = field(repr=False)
    signature: str = field(repr=False)
    key_pair_id: str


@dataclass(frozen=True)
class Grant:
    """A verified, unexpired grant."""

    resource: str
    expires_at: int
    """Epoch seconds: the policy's DateLessThan."""
    key_pair_id: str

    @property
    def host(self) -> str:
        """The host the grant's resource names (a verified grant always has one)."""
        found = _RESOURCE_HOST.match(self.resource)
        assert found is not None
        return found.group("host")

    def covers(self, url: str) -> bool:
        return wildcard_match(self.resource, url)


def load_public_key(pem: Any) -> rsa.RSAPublicKey:
    """An RSA public key (at least 2048 bits) from its PEM; ValueError says what is wrong."""
    if not isinstance(pem, str) or not pem.strip():
        raise ValueError("the public key must be a PEM string")
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("the public key is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < RSA_MIN_BITS:
        raise ValueError(f"the public key must be RSA of at least {RSA_MIN_BITS} bits")
    return key


# -- where a request carries its grant ---------------------------------------------------


def cookie_pairs(header: str) -> list[str]:
    """`a=1; b=2` (a Cookie header) as `["a=1", "b=2"]`, the shape of a function URL
    event's `cookies`."""
    return [part.strip() for part in header.split(";") if part.strip()]


def grant_values(cookies: Iterable[str], query: Iterable[tuple[str, str]]) -> SignedValues:
    """The grant a request carries: the signed query parameters if it has any (a signed
    URL wins over cookies, as at CloudFront), else the signed cookies."""
    query = list(query)
    if any(name in SIGNED_QUERY_PARAMETERS for name, _ in query):
        return _three(
            query, (SIGNED_QUERY_POLICY, SIGNED_QUERY_SIGNATURE, SIGNED_QUERY_KEY_PAIR_ID)
        )
    pairs = []
    for cookie in cookies:
        name, _, value = cookie.partition("=")
        pairs.append((name.strip(), value.strip()))
    return _three(pairs, (SIGNED_COOKIE_POLICY, SIGNED_COOKIE_SIGNATURE, SIGNED_COOKIE_KEY_PAIR_ID))


def _three(pairs: list[tuple[str, str]], names: tuple[str, str, str]) -> SignedValues:
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in names:
            if name in found:
                raise GrantRefused(f"{name} is given more than once")
            found[name] = value
    missing = [name for name in names if name not in found]
    if missing:
        raise GrantRefused(f"no playback grant ({', '.join(missing)} missing)")
    policy, signature, key_pair_id = (found[name] for name in names)
    return SignedValues(policy=policy, signature=signature, key_pair_id=key_pair_id)


# -- checking a grant ----------------------------------------------------------------------


def verify(
    values: SignedValues, public_keys: Mapping[str, rsa.RSAPublicKey], *, now: float
) -> Grant:
    """The grant if its key is known, its signature verifies, its policy is one we issue
    and it has not expired; GrantRefused otherwise. The policy is parsed only once its
    signature verified, so no unsigned JSON is ever parsed."""
    if not _KEY_PAIR_ID.fullmatch(values.key_pair_id):
        raise GrantRefused("the key pair id is malformed")
    public_key = public_keys.get(values.key_pair_id)
    if public_key is None:
        raise GrantRefused("the key pair id is not one of the distribution's keys")
    policy = _safe_base64(values.policy, POLICY_MAX_CHARS, "policy")
    signature = _safe_base64(values.signature, SIGNATURE_MAX_CHARS, "signature")
    try:
        public_key.verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())
    except InvalidSignature:
        raise GrantRefused("the signature does not verify") from None
    resource, expires_at = _policy(policy)
    if now >= expires_at:
        raise GrantRefused("the grant has expired")
    return Grant(resource=resource, expires_at=expires_at, key_pair_id=values.key_pair_id)


def authorize(
    values: SignedValues,
    public_keys: Mapping[str, rsa.RSAPublicKey],
    *,
    url: str,
    now: float,
) -> Grant:
    """`verify`, and the grant's resource must match `url` (scheme, host and path: our
    resources end with `*`, so a query string never changes the verdict)."""
    grant = verify(values, public_keys, now=now)
    if len(url) > URL_MAX_CHARS or not grant.covers(url):
        raise GrantRefused("the grant does not cover this URL")
    return grant


def _safe_base64(value: str, max_chars: int, what: str) -> bytes:
    """CloudFront-safe base64 (`+` as `-`, `=` as `_`, `/` as `~`) decoded."""
    if not 0 < len(value) <= max_chars or not _SAFE_BASE64.fullmatch(value):
        raise GrantRefused(f"the {what} is not CloudFront-safe base64 of at most {max_chars} chars")
    try:
        return base64.b64decode(value.translate(_TO_STANDARD_BASE64), validate=True)
    except (binascii.Error, ValueError):
        raise GrantRefused(f"the {what} is not valid base64") from None


def _policy(policy: bytes) -> tuple[str, int]:
    """(Resource, DateLessThan) of a policy shaped exactly as the API issues it."""
    try:
        document = safejson.loads(policy, max_bytes=POLICY_MAX_CHARS, max_depth=5)
    except safejson.JsonError:
        raise GrantRefused("the policy is not JSON") from None
    statements = _only(document, "Statement", list)
    if len(statements) != 1:
        raise GrantRefused("the policy must have exactly one statement")
    statement = statements[0]
    if not isinstance(statement, dict) or set(statement) != {"Resource", "Condition"}:
        raise GrantRefused("the policy's statement must hold exactly Resource and Condition")
    resource = statement["Resource"]
    if not isinstance(resource, str) or not _RESOURCE_HOST.match(resource):
        raise GrantRefused("the policy's Resource must be an https:// URL with a host")
    less_than = _only(statement["Condition"], "DateLessThan", dict)
    expires_at = _only(less_than, "AWS:EpochTime", int)
    if isinstance(expires_at, bool) or not 0 < expires_at < _EXPIRY_MAX:
        raise GrantRefused("the policy's AWS:EpochTime must be an epoch second")
    return resource, expires_at


def _only(document: Any, key: str, kind: type) -> Any:
    """The one entry `key` of an object that holds nothing else, of type `kind`."""
    if not isinstance(document, dict) or set(document) != {key}:
        raise GrantRefused(f"the policy must hold exactly {key} at its place")
    value = document[key]
    if not isinstance(value, kind):
        raise GrantRefused(f"the policy's {key} has the wrong type")
    return value


# -- CloudFront's wildcards ------------------------------------------------------------------


def wildcard_match(pattern: str, text: str) -> bool:
    """CloudFront's matching of a policy Resource or a path pattern: `*` matches any run of
    characters (none included), `?` exactly one, everything else itself (case-sensitive).

    Iterative, backtracking only to the last `*`: time O(len(pattern) x len(text)) at worst,
    never exponential like a regular expression built from the pattern can be."""
    p = t = 0
    star_p, star_t = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p, star_t = p, t
            p += 1
        elif star_p >= 0:
            star_t += 1
            p, t = star_p + 1, star_t
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)
