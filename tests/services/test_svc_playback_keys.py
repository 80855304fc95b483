"""M9: key delivery (services/keys/handler.py) with function URL events as the distribution
sends them, the content keyring in Secrets Manager (moto). A title's key goes only to a
valid, unexpired grant for that title, with no-store; every refusal is a 4xx, never an
exception (H1, H6); no key, cookie, policy or signature reaches a log line."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from conftest import CONTENT_KEYRING
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playback_support import (
    KEY_PAIR_ID,
    as_query,
    function_url_event,
    grant_cookies,
    other_key,
    policy_for,
    public_keys,
    public_keys_json,
)

from services.common.content_keys import derive_title_key, load_keyring
from services.common.logs import JsonFormatter, configure_logging
from services.common.secrets import RefreshingSecret
from services.contract import (
    SIGNED_COOKIE_KEY_PAIR_ID,
    SIGNED_COOKIE_POLICY,
    SIGNED_COOKIE_SIGNATURE,
)
from services.keys import handler as keys_handler
from services.keys.handler import KeyDelivery

pytestmark = pytest.mark.services

NOW = 1_900_000_000
VIDEO = "6f1c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
OTHER_VIDEO = "0d8e6a0c-1111-4222-8333-444455556666"
KEY_PATH = f"/media/{VIDEO}/keys/k2.key"
BOUNDED = settings(
    max_examples=100, deadline=1000, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def title_key(video_id: str, version: str) -> bytes:
    return derive_title_key(base64.b64decode(CONTENT_KEYRING["keys"][version]), video_id, version)


def cookies_for(video_id: str = VIDEO, expires_at: int = NOW + 60, **kwargs) -> dict[str, str]:
    return grant_cookies(policy_for(video_id, expires_at), **kwargs)


class CountingSecrets:
    """moto's Secrets Manager, counting the reads of key delivery."""

    def __init__(self, client) -> None:
        self._client, self.reads = client, 0

    def get_secret_value(self, **kwargs):
        self.reads += 1
        return self._client.get_secret_value(**kwargs)


@pytest.fixture
def secrets(aws) -> CountingSecrets:
    return CountingSecrets(aws.secrets)


@pytest.fixture
def clock() -> list[float]:
    """[epoch now, monotonic now]: the grant's clock and the keyring cache's."""
    return [float(NOW), 0.0]


@pytest.fixture
def delivery(aws, secrets, clock) -> KeyDelivery:
    keyring = RefreshingSecret(
        secrets,
        aws.content_key_arn,
        load_keyring,
        ttl_seconds=300,
        retry_seconds=30,
        clock=lambda: clock[1],
    )
    return KeyDelivery(keyring, public_keys(), clock=lambda: clock[0])


def get(delivery, path: str = KEY_PATH, **kwargs):
    return delivery.handle(function_url_event(path, **kwargs))


def refusal(response) -> tuple[int, str]:
    return response["statusCode"], json.loads(response["body"])["error"]["code"]


# --- keys ---------------------------------------------------------------------------------


def test_m9_key_for_a_valid_grant_is_the_titles_16_bytes_with_no_store(delivery):
    response = get(delivery, cookies=cookies_for())
    assert response["statusCode"] == 200
    assert response["headers"] == {
        "Content-Type": "application/octet-stream",
        "Cache-Control": "no-store",
    }
    assert response["isBase64Encoded"] is True
    key = base64.b64decode(response["body"])
    assert len(key) == 16 and key == title_key(VIDEO, "k2")
    assert "cookies" not in response


def test_m5_m9_a_title_keyed_from_an_earlier_version_still_gets_its_key(delivery):
    response = get(delivery, f"/media/{VIDEO}/keys/k1.key", cookies=cookies_for())
    assert base64.b64decode(response["body"]) == title_key(VIDEO, "k1") != title_key(VIDEO, "k2")


def test_m9_head_answers_the_headers_without_the_key(delivery):
    response = get(delivery, method="HEAD", cookies=cookies_for())
    assert (response["statusCode"], response["body"], response["isBase64Encoded"]) == (
        200,
        "",
        False,
    )
    assert response["headers"]["Cache-Control"] == "no-store"


def test_m9_a_signed_url_grant_on_a_key_request_is_checked_like_cookies(delivery):
    assert get(delivery, query=as_query(cookies_for()))["statusCode"] == 200
    other = as_query(cookies_for(OTHER_VIDEO))
    assert refusal(get(delivery, query=other, cookies=cookies_for())) == (403, "forbidden")


@pytest.mark.parametrize(
    "case",
    [
        "no grant",
        "expired",
        "another title",
        "tampered signature",
        "tampered policy",
        "unknown key pair",
        "signed by another key",
        "partial",
    ],
)
def test_m9_key_requests_without_a_valid_grant_for_this_title_are_403(delivery, case, caplog):
    cookies = cookies_for()
    signature = cookies[SIGNED_COOKIE_SIGNATURE]
    cookies = {
        "no grant": {},
        "expired": cookies_for(expires_at=NOW),
        "another title": cookies_for(OTHER_VIDEO),
        "tampered signature": {
            **cookies,
            SIGNED_COOKIE_SIGNATURE: signature[:-8] + ("A" if signature[-8] != "A" else "B")
            + signature[-7:],
        },
        "tampered policy": {
            **cookies,
            SIGNED_COOKIE_POLICY: cookies_for(expires_at=NOW + 86_400)[SIGNED_COOKIE_POLICY],
        },
        "unknown key pair": {**cookies, SIGNED_COOKIE_KEY_PAIR_ID: "K3OTHERKEYPAIR"},
        "signed by another key": cookies_for(key=other_key()),
        "partial": {SIGNED_COOKIE_POLICY: cookies[SIGNED_COOKIE_POLICY]},
    }[case]  # fmt: skip
    caplog.set_level(logging.INFO)
    response = get(delivery, cookies=cookies)
    assert refusal(response) == (403, "forbidden")
    assert response["headers"]["Cache-Control"] == "no-store"
    assert "body" in response and "Content-Type" in response["headers"]
    [record] = [r for r in caplog.records if r.getMessage() == "grant refused"]
    assert record.video_id == VIDEO and record.reason


def test_m9_expiry_is_checked_against_the_clock_of_each_request(delivery, clock):
    cookies = cookies_for(expires_at=NOW + 60)
    clock[0] = NOW + 59.9
    assert get(delivery, cookies=cookies)["statusCode"] == 200
    clock[0] = NOW + 60
    assert refusal(get(delivery, cookies=cookies)) == (403, "forbidden")


@pytest.mark.parametrize(
    "path",
    [
        f"/media/{VIDEO}/keys/k9.key",  # a version the keyring does not have
        f"/media/{VIDEO}/v1/master.m3u8",
        f"/media/{VIDEO}/keys/k2",
        f"/media/{VIDEO}/keys/../keys/k2.key",
        f"/media/{VIDEO.upper()}/keys/k2.key",
        "/media/not-a-uuid/keys/k2.key",
        f"/media/{VIDEO}/keys/{'k' * 65}.key",
        f"/media/{VIDEO}/sessions",
        "/",
    ],
)
def test_m9_unknown_paths_and_versions_are_404(delivery, path):
    assert refusal(get(delivery, path, cookies=cookies_for())) == (404, "not_found")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_m9_methods_other_than_get_and_head_are_405(delivery, method):
    response = get(delivery, method=method, cookies=cookies_for())
    assert refusal(response) == (405, "method_not_allowed")
    assert response["headers"]["Allow"] == "GET, HEAD"


# --- the keyring: cached, rotation, outages -------------------------------------------------


def test_m9_keyring_is_read_once_per_ttl(delivery, secrets, clock):
    for _ in range(3):
        assert get(delivery, cookies=cookies_for())["statusCode"] == 200
    assert secrets.reads == 1
    clock[1] = 300.0
    get(delivery, cookies=cookies_for())
    assert secrets.reads == 2


def test_m5_m9_a_rotated_version_is_served_at_once_and_made_up_versions_do_not_hammer(
    delivery, aws, secrets, clock
):
    assert get(delivery, cookies=cookies_for())["statusCode"] == 200
    k3 = base64.b64encode(b"3" * 32).decode()
    rotated = {"current": "k3", "keys": {**CONTENT_KEYRING["keys"], "k3": k3}}
    aws.secrets.put_secret_value(SecretId=aws.content_key_arn, SecretString=json.dumps(rotated))
    clock[1] = 31.0  # a worker keyed a new title from k3 since the keyring was cached
    response = get(delivery, f"/media/{VIDEO}/keys/k3.key", cookies=cookies_for())
    assert base64.b64decode(response["body"]) == derive_title_key(b"3" * 32, VIDEO, "k3")
    assert secrets.reads == 2
    for version in ("k7", "k8", "k9"):  # within 30 s of that read: no more reads
        path = f"/media/{VIDEO}/keys/{version}.key"
        assert refusal(get(delivery, path, cookies=cookies_for())) == (404, "not_found")
    assert secrets.reads == 2


def test_m9_unreadable_keyring_is_503_and_a_malformed_one_500(aws, clock):
    missing = RefreshingSecret(
        aws.secrets, "arn:aws:secretsmanager:eu-central-1:1:secret:none", load_keyring,
        ttl_seconds=300, retry_seconds=30,
    )  # fmt: skip
    response = KeyDelivery(missing, public_keys(), clock=lambda: clock[0]).handle(
        function_url_event(KEY_PATH, cookies=cookies_for())
    )
    assert refusal(response) == (503, "keyring_unavailable")
    assert response["headers"]["Retry-After"] == "1"
    arn = aws.secrets.create_secret(Name="broken-keyring", SecretString='{"current": "k1"}')["ARN"]
    broken = RefreshingSecret(aws.secrets, arn, load_keyring, ttl_seconds=300, retry_seconds=30)
    response = KeyDelivery(broken, public_keys(), clock=lambda: clock[0]).handle(
        function_url_event(KEY_PATH, cookies=cookies_for())
    )
    assert refusal(response) == (500, "configuration_error")


# --- sessions --------------------------------------------------------------------------------


def test_m8_session_url_sets_the_three_cookies_on_the_titles_path_until_expiry(delivery, clock):
    cookies = cookies_for(expires_at=NOW + 3600)
    clock[0] = NOW + 600.5
    response = get(delivery, f"/media/{VIDEO}/session", query=as_query(cookies))
    assert response["statusCode"] == 204
    assert response["headers"] == {"Cache-Control": "no-store"}
    attributes = f"Path=/media/{VIDEO}/; Max-Age=3000; Secure; HttpOnly; SameSite=None"
    assert response["cookies"] == [
        f"{name}={value}; {attributes}" for name, value in cookies.items()
    ]


@pytest.mark.parametrize("case", ["broken signature", "another title", "expired", "no grant"])
def test_m8_session_url_without_a_valid_grant_for_this_title_is_403_and_sets_nothing(
    delivery, case
):
    query = as_query(cookies_for())
    query = {
        "broken signature": {**query, "Signature": query["Signature"][::-1]},
        "another title": as_query(cookies_for(OTHER_VIDEO)),
        "expired": as_query(cookies_for(expires_at=NOW - 1)),
        "no grant": {},
    }[case]
    response = get(delivery, f"/media/{VIDEO}/session", query=query)
    assert refusal(response) == (403, "forbidden")
    assert "cookies" not in response


# --- logs: never a key, a cookie, a policy or a signature -------------------------------------


@pytest.fixture
def production_logging_at_debug():
    """The function's own logging set-up at its most verbose level. It keeps botocore at
    WARNING: botocore's DEBUG records carry response bodies, the keyring's among them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("botocore", "boto3", "urllib3")}
    configure_logging("DEBUG")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.mark.usefixtures("production_logging_at_debug")
def test_m9_no_key_cookie_policy_or_signature_is_ever_logged(delivery, caplog):
    caplog.set_level(logging.DEBUG)
    cookies = cookies_for()
    get(delivery, cookies=cookies)
    get(delivery, f"/media/{VIDEO}/session", query=as_query(cookies))
    get(delivery, cookies={**cookies, SIGNED_COOKIE_SIGNATURE: "AAAA"})
    get(delivery, cookies=cookies_for(OTHER_VIDEO))
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "key delivered" in logged and "grant refused" in logged and "session opened" in logged
    key = title_key(VIDEO, "k2")
    secrets = [key.hex(), base64.b64encode(key).decode(), *CONTENT_KEYRING["keys"].values()]
    secrets += [cookies[SIGNED_COOKIE_POLICY], cookies[SIGNED_COOKIE_SIGNATURE]]
    secrets += [cookies[SIGNED_COOKIE_SIGNATURE][:40], cookies[SIGNED_COOKIE_POLICY][:40]]
    for secret in secrets:
        assert secret not in logged


# --- H1/H6: any event is a 4xx, never a 5xx or an exception --------------------------------------

_text = st.text(max_size=80)
_values = st.one_of(st.none(), st.integers(), st.booleans(), _text, st.lists(_text, max_size=3))


@BOUNDED
@given(
    event=st.one_of(
        _values,
        st.dictionaries(st.sampled_from(["rawPath", "rawQueryString", "cookies",
                                         "requestContext", "headers"]), _values, max_size=5),
        st.builds(
            lambda path, method, cookies, query: {
                "rawPath": path, "rawQueryString": query, "cookies": cookies,
                "requestContext": {"http": {"method": method}},
            },
            st.one_of(st.just(KEY_PATH), st.just(f"/media/{VIDEO}/session"), _text),
            st.one_of(st.sampled_from(["GET", "HEAD", "get", "POST"]), _values),
            st.one_of(st.lists(st.one_of(_text, st.sampled_from(
                ["CloudFront-Policy=", "CloudFront-Signature=~~", "CloudFront-Key-Pair-Id=" +
                 KEY_PAIR_ID, "CloudFront-Policy=" + "A" * 5000])), max_size=6), _values),
            st.one_of(_text, st.just("Policy=a&Signature=b&Key-Pair-Id=K"),
                      st.just("&".join(["a=b"] * 50)), _values),
        ),
    )
)  # fmt: skip
def test_h6_any_event_is_answered_with_a_4xx_never_a_key_or_an_error(event):
    delivery = KeyDelivery(_unreachable_keyring(), public_keys(), clock=lambda: NOW)
    response = delivery.handle(event)
    assert response["statusCode"] in {400, 403, 404, 405}, response
    assert response["headers"]["Cache-Control"] == "no-store"


class _NoSecrets:
    def get_secret_value(self, **_):
        raise AssertionError("a refused request must not read the keyring")


def _unreachable_keyring() -> RefreshingSecret:
    return RefreshingSecret(_NoSecrets(), "arn", load_keyring, ttl_seconds=300, retry_seconds=30)


# --- the Lambda entry point ---------------------------------------------------------------------


@pytest.fixture
def keys_env(monkeypatch, aws):
    monkeypatch.setenv("CONTENT_KEY_SECRET_ARN", aws.content_key_arn)
    monkeypatch.setenv("PLAYBACK_PUBLIC_KEYS", public_keys_json())
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    keys_handler.reset()
    yield
    keys_handler.reset()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_m9_lambda_handler_serves_keys_with_settings_from_its_environment(keys_env):
    """Real time here: the grant is minted to expire a minute from now."""
    import time

    cookies = grant_cookies(policy_for(VIDEO, int(time.time()) + 60))
    context = type("Context", (), {"get_remaining_time_in_millis": lambda self: 5000})()
    response = keys_handler.handler(function_url_event(KEY_PATH, cookies=cookies), context)
    assert response["statusCode"] == 200
    assert base64.b64decode(response["body"]) == title_key(VIDEO, "k2")
    refused = keys_handler.handler(function_url_event(KEY_PATH), context)
    assert refused["statusCode"] == 403


def test_m9_lambda_handler_with_bad_public_keys_answers_configuration_error(keys_env, monkeypatch):
    monkeypatch.setenv("PLAYBACK_PUBLIC_KEYS", json.dumps({KEY_PAIR_ID: "not a pem"}))
    response = keys_handler.handler(function_url_event(KEY_PATH), None)
    assert refusal(response) == (500, "configuration_error")
