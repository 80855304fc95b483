"""The delivery tier's CloudFront configuration as plain data (M7, M8, M9).

Which paths go where, what each behaviour caches and forwards, which headers every response
carries, and who may look at a request: pure functions of the settings and the ids of the
resources `components.delivery` creates, so each can be tested (and read) on its own.

    media/*/keys/*   -> key delivery (function URL), caching disabled, signed cookies and
    media/*/session  -> key delivery                  signed query forwarded, nothing else
    media/*.m3u8     -> media bucket, short TTL
    default (media/* segments, posters) -> media bucket, long TTL

Every behaviour requires a signed grant (the trusted key group): nothing is public. The bucket
behaviours keep cookies, headers and query strings out of their cache keys: the edge has
checked the grant already, and every viewer of a title shares one cached copy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from components.aws_limits import ISO_3166_ALPHA2
from services.contract import (
    KEY_PATH_PATTERN,
    PLAYLIST_PATH_PATTERN,
    SESSION_PATH_PATTERN,
    SIGNED_COOKIES,
    SIGNED_QUERY_PARAMETERS,
)

MEDIA_ORIGIN = "media"
KEYS_ORIGIN = "keys"
MANAGED_CACHING_DISABLED = "Managed-CachingDisabled"
# CloudFront's TLS floor for a custom certificate; the default *.cloudfront.net certificate
# is fixed at TLSv1 and takes no other value (PITFALLS 131).
MINIMUM_TLS = "TLSv1.2_2021"
ORIGIN_TLS = ("TLSv1.2",)
HSTS_SECONDS = 63_072_000  # two years, the preload list's minimum
CORS_MAX_AGE_SECONDS = 600
CORS_ALLOW_HEADERS = ("Range",)
READ_METHODS = ("GET", "HEAD")
CORS_METHODS = (*READ_METHODS, "OPTIONS")
_HTTPS_ORIGIN = re.compile(r"^https://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_HOSTED_ZONE = re.compile(r"^Z[A-Z0-9]{1,31}$")


class GeoRestriction(StrEnum):
    """Broadcast rights: everywhere, only the listed countries, or all but them."""

    NONE = "none"
    ALLOW = "allow"
    DENY = "deny"

    @property
    def restriction_type(self) -> str:
        """CloudFront's word for it."""
        return {"none": "none", "allow": "whitelist", "deny": "blacklist"}[self.value]


# -- settings checks -------------------------------------------------------------------------


def country_codes_ok(codes: Sequence[str]) -> bool:
    return len(set(codes)) == len(codes) and all(code in ISO_3166_ALPHA2 for code in codes)


def player_origins_ok(origins: Sequence[str]) -> bool:
    """Explicit https origins only: a credentialed CORS response may never say `*`."""
    return len(set(origins)) == len(origins) and all(
        isinstance(origin, str) and _HTTPS_ORIGIN.match(origin) for origin in origins
    )


def domain_name_ok(name: str) -> bool:
    return name == "" or bool(_DOMAIN.match(name))


def hosted_zone_ok(zone: str) -> bool:
    return zone == "" or bool(_HOSTED_ZONE.match(zone))


# -- cache, origin request and response headers policies -------------------------------------


def shared_cache_key(ttl_seconds: int) -> dict[str, Any]:
    """Arguments of a bucket behaviour's cache policy: no cookie, header or query string in
    the key (or forwarded to the bucket), compressed variants cached apart."""
    return {
        "min_ttl": 0,
        "default_ttl": ttl_seconds,
        "max_ttl": ttl_seconds,
        "parameters_in_cache_key_and_forwarded_to_origin": {
            "cookies_config": {"cookie_behavior": "none"},
            "headers_config": {"header_behavior": "none"},
            "query_strings_config": {"query_string_behavior": "none"},
            "enable_accept_encoding_gzip": True,
            "enable_accept_encoding_brotli": True,
        },
    }


def key_delivery_forwarding() -> dict[str, Any]:
    """Arguments of the key behaviours' origin request policy: exactly the signed cookies and
    the signed query parameters, so key delivery can check the grant again; no header (the
    origin access control signs for the function URL's own host)."""
    return {
        "cookies_config": {"cookie_behavior": "whitelist", "cookies": {"items": [*SIGNED_COOKIES]}},
        "headers_config": {"header_behavior": "none"},
        "query_strings_config": {
            "query_string_behavior": "whitelist",
            "query_strings": {"items": [*SIGNED_QUERY_PARAMETERS]},
        },
    }


def security_headers() -> dict[str, Any]:
    """What every response carries, whatever the origin said."""
    return {
        "strict_transport_security": {
            "access_control_max_age_sec": HSTS_SECONDS,
            "include_subdomains": True,
            "override": True,
        },
        "content_type_options": {"override": True},
        "frame_options": {"frame_option": "DENY", "override": True},
        # Nothing on the playback domain needs a referrer, and its URLs may carry a grant.
        "referrer_policy": {"referrer_policy": "no-referrer", "override": True},
    }


def cors(player_origins: Sequence[str]) -> dict[str, Any] | None:
    """Web players on other origins send the grant's cookies (credentials): that needs named
    origins and Allow-Credentials, never `*` (PITFALLS 130). None without player origins."""
    if not player_origins:
        return None
    return {
        "access_control_allow_credentials": True,
        "access_control_allow_origins": {"items": list(player_origins)},
        "access_control_allow_methods": {"items": list(CORS_METHODS)},
        "access_control_allow_headers": {"items": list(CORS_ALLOW_HEADERS)},
        "access_control_max_age_sec": CORS_MAX_AGE_SECONDS,
        "origin_override": True,
    }


# -- behaviours ------------------------------------------------------------------------------


def behaviour(
    *,
    origin: str,
    cache_policy_id: Any,
    key_group_id: Any,
    headers_policy_id: Any,
    methods: Sequence[str],
    origin_request_policy_id: Any = None,
    path_pattern: str | None = None,
) -> dict[str, Any]:
    """One cache behaviour: HTTPS only, a signed grant required, compressed, cached per the
    policy given."""
    found: dict[str, Any] = {
        "target_origin_id": origin,
        "viewer_protocol_policy": "https-only",
        "allowed_methods": list(methods),
        "cached_methods": list(READ_METHODS),
        "cache_policy_id": cache_policy_id,
        "response_headers_policy_id": headers_policy_id,
        "trusted_key_groups": [key_group_id],
        "compress": True,
    }
    if origin_request_policy_id is not None:
        found["origin_request_policy_id"] = origin_request_policy_id
    if path_pattern is not None:
        found = {"path_pattern": path_pattern, **found}
    return found


def ordered_behaviours(
    *,
    key_group_id: Any,
    headers_policy_id: Any,
    methods: Sequence[str],
    caching_disabled_id: Any,
    key_forwarding_id: Any,
    playlists_policy_id: Any,
) -> list[dict[str, Any]]:
    """Key delivery's two paths first, then playlists; segments are the default."""
    common = {"key_group_id": key_group_id, "headers_policy_id": headers_policy_id}
    keys = [
        behaviour(
            origin=KEYS_ORIGIN,
            cache_policy_id=caching_disabled_id,
            origin_request_policy_id=key_forwarding_id,
            methods=methods,
            path_pattern=pattern,
            **common,
        )
        for pattern in (KEY_PATH_PATTERN, SESSION_PATH_PATTERN)
    ]
    playlists = behaviour(
        origin=MEDIA_ORIGIN,
        cache_policy_id=playlists_policy_id,
        methods=methods,
        path_pattern=PLAYLIST_PATH_PATTERN,
        **common,
    )
    return [*keys, playlists]


def geo_restriction(kind: GeoRestriction, locations: Sequence[str]) -> dict[str, Any]:
    return {
        "geo_restriction": {
            "restriction_type": kind.restriction_type,
            "locations": sorted(locations),
        }
    }


def viewer_certificate(certificate_arn: Any | None) -> dict[str, Any]:
    """The stack's own certificate (SNI, TLS 1.2 or later) when it has a domain; else the
    *.cloudfront.net one, whose protocol floor CloudFront fixes."""
    if certificate_arn is None:
        return {"cloudfront_default_certificate": True}
    return {
        "acm_certificate_arn": certificate_arn,
        "ssl_support_method": "sni-only",
        "minimum_protocol_version": MINIMUM_TLS,
    }


def custom_origin() -> dict[str, Any]:
    """The function URL as an origin: HTTPS with TLS 1.2 only."""
    return {
        "http_port": 80,
        "https_port": 443,
        "origin_protocol_policy": "https-only",
        "origin_ssl_protocols": list(ORIGIN_TLS),
    }
