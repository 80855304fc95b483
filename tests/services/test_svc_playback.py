"""M8: signed playback. The API's GET /videos/{id}/playback against real PostgreSQL (as the
API's role) and Redis, the signing key in Secrets Manager (moto); the grant it answers is
checked with the distribution's public key by the same verification key delivery and the
edge double use (services/common/signed_access.py). Also the settings of signing and key
delivery, and the verifier's refusals of every grant the API never issues (H1, H6)."""

from __future__ import annotations

import base64
import json
import string
import urllib.parse
import uuid
from datetime import UTC, datetime

import pytest
from conftest import connect_as
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playback_support import (
    DOMAIN,
    KEY_PAIR_ID,
    OTHER_KEY_PAIR_ID,
    distribution_key,
    ec_public_pem,
    grant_cookies,
    other_key,
    policy_for,
    public_keys,
    safe_b64,
    secret_signer,
    sign_policy,
    signer,
    small_key,
)
from test_svc_lambda import invoke, lambda_env, redis_proc_auth  # noqa: F401 - fixtures
from upload_support import call, event, make_app

from services.api.playback import SigningKeyError, load_private_key
from services.common.roles import API_DB_USER
from services.common.secrets import CredentialsError, RefreshingSecret
from services.common.settings import (
    SettingsError,
    load_api_settings,
    load_keys_settings,
)
from services.common.signed_access import (
    GrantRefused,
    SignedValues,
    authorize,
    cookie_pairs,
    grant_values,
    verify,
    wildcard_match,
)
from services.contract import (
    PLAYBACK_GRANT_SECONDS_DEFAULT,
    SIGNED_COOKIE_KEY_PAIR_ID,
    SIGNED_COOKIE_POLICY,
    SIGNED_COOKIE_SIGNATURE,
    SIGNED_COOKIES,
    EnvVar,
)

pytestmark = pytest.mark.services

NOW = 1_900_000_000
BOUNDED = settings(
    max_examples=100, deadline=1000, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def decode_safe(value: str) -> bytes:
    return base64.b64decode(value.translate(str.maketrans("-_~", "+=/")))


def values_of(cookies: dict[str, str]) -> SignedValues:
    return grant_values([f"{k}={v}" for k, v in cookies.items()], [])


# --- the API route ------------------------------------------------------------------------


@pytest.fixture
def api_database(pg_server, admin_db):
    database = connect_as(pg_server, API_DB_USER, application_name="media-api")
    yield database
    database.close()


@pytest.fixture
def signing_secret(aws) -> str:
    return aws.secrets.create_secret(
        Name="media-playback-signing-test", SecretString=distribution_key().private_pem
    )["ARN"]


@pytest.fixture
def playback_app(api_database, aws, redis_proc, redis_client, signing_secret):
    return make_app(
        api_database,
        aws,
        redis_proc.port,
        playback=secret_signer(aws.secrets, signing_secret, clock=lambda: NOW + 0.75),
    )


def insert_video(admin_db, status: str = "COMPLETED", *, published: bool = True) -> str:
    video_id = str(uuid.uuid4())
    cursor = admin_db.cursor()
    if published:
        prefix = f"media/{video_id}/v2/"
        cursor.execute(
            "INSERT INTO videos (id, title, creator, source_uri, status, media_versions,"
            " published_version, playlist_path, poster_path, key_version, renditions)"
            " VALUES (%s, 't', 'c', 'sources/x', %s, 2, 2, %s, %s, 'k2', %s::jsonb)",
            (video_id, status, prefix + "master.m3u8", prefix + "poster.jpg", "[]"),
        )
    else:
        cursor.execute(
            "INSERT INTO videos (id, title, creator, source_uri, status)"
            " VALUES (%s, 't', 'c', 'sources/x', %s)",
            (video_id, status),
        )
    return video_id


def test_m8_playback_answers_a_grant_for_the_titles_prefix_that_verifies_with_the_public_key(
    playback_app, admin_db, redis_client
):
    video_id = insert_video(admin_db)
    status, body, headers = call(playback_app, "GET", f"/videos/{video_id}/playback")
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    expires_at = NOW + PLAYBACK_GRANT_SECONDS_DEFAULT  # the clock's second, plus the default
    assert set(body) == {
        "video_id", "playlist_url", "expires_at", "cookies", "cookie_path", "session_url",
    }  # fmt: skip
    assert body["video_id"] == video_id
    assert body["playlist_url"] == f"https://{DOMAIN}/media/{video_id}/v2/master.m3u8"
    assert body["expires_at"] == datetime.fromtimestamp(expires_at, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert body["cookie_path"] == f"/media/{video_id}/"
    cookies = body["cookies"]
    assert list(cookies) == list(SIGNED_COOKIES)
    assert cookies[SIGNED_COOKIE_KEY_PAIR_ID] == KEY_PAIR_ID
    # The custom policy, exactly: one title's prefix with a wildcard, and the expiry.
    assert json.loads(decode_safe(cookies[SIGNED_COOKIE_POLICY])) == {
        "Statement": [
            {
                "Resource": f"https://{DOMAIN}/media/{video_id}/*",
                "Condition": {"DateLessThan": {"AWS:EpochTime": expires_at}},
            }
        ]
    }
    # The session URL carries the same grant as query parameters.
    session = urllib.parse.urlsplit(body["session_url"])
    assert (session.scheme, session.netloc, session.path) == (
        "https",
        DOMAIN,
        f"/media/{video_id}/session",
    )
    query = urllib.parse.parse_qsl(session.query)
    assert query == [
        ("Policy", cookies[SIGNED_COOKIE_POLICY]),
        ("Signature", cookies[SIGNED_COOKIE_SIGNATURE]),
        ("Key-Pair-Id", KEY_PAIR_ID),
    ]
    # It verifies with the distribution's public key and covers the title, nothing else.
    grant = values_of(cookies)
    for path in ("v2/master.m3u8", "v2/720p/index.m3u8", "v2/720p/seg_00001.ts", "keys/k2.key"):
        url = f"https://{DOMAIN}/media/{video_id}/{path}"
        assert authorize(grant, public_keys(), url=url, now=NOW).expires_at == expires_at
    assert authorize(grant_values([], query), public_keys(), url=body["session_url"], now=NOW)
    for url in (
        f"https://{DOMAIN}/media/{uuid.uuid4()}/v1/master.m3u8",
        f"https://other.example.com/media/{video_id}/v2/master.m3u8",
        f"http://{DOMAIN}/media/{video_id}/v2/master.m3u8",
        f"https://{DOMAIN}/media/{video_id}",
    ):
        with pytest.raises(GrantRefused, match="does not cover"):
            authorize(grant, public_keys(), url=url, now=NOW)
    with pytest.raises(GrantRefused, match="expired"):
        verify(grant, public_keys(), now=expires_at)
    # Never cached: Redis holds nothing after it.
    assert redis_client.keys("*") == []


def test_m8_grant_lifetime_is_playback_grant_seconds(api_database, aws, redis_proc, redis_client,
                                                     signing_secret, admin_db):  # fmt: skip
    app = make_app(
        api_database,
        aws,
        redis_proc.port,
        playback=secret_signer(aws.secrets, signing_secret, clock=lambda: NOW, grant_seconds=300),
    )
    video_id = insert_video(admin_db)
    _, body, _ = call(app, "GET", f"/videos/{video_id}/playback")
    grant = verify(values_of(body["cookies"]), public_keys(), now=NOW + 299)
    assert grant.expires_at == NOW + 300
    assert body["expires_at"] == "2030-03-17T17:51:40Z"  # NOW + 300 s
    with pytest.raises(GrantRefused, match="expired"):
        verify(values_of(body["cookies"]), public_keys(), now=NOW + 300)


def test_m8_unknown_video_is_404_and_a_malformed_id_400(playback_app):
    status, body, _ = call(playback_app, "GET", f"/videos/{uuid.uuid4()}/playback")
    assert (status, body["error"]["code"]) == (404, "video_not_found")
    status, body, _ = call(playback_app, "GET", "/videos/not-a-uuid/playback")
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "validation_failed",
        "videoId",
    )


@pytest.mark.parametrize(
    "bad_id",
    ["\ud800", "x" * 10_000, "..", "%2e%2e", "00000000-0000-0000-0000-00000000000g", "\x00", ""],
    ids=["surrogate", "huge", "dots", "encoded-dots", "almost-uuid", "nul", "empty"],
)
def test_h1_m8_hostile_video_ids_on_the_playback_route_are_400(playback_app, bad_id):
    response = playback_app.handle(event("GET", "/videos/x/playback") | {
        "pathParameters": {"videoId": bad_id}, "path": "/videos/x/playback"})  # fmt: skip
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]["code"]) == (400, "validation_failed")


@pytest.mark.parametrize("status", ["UPLOADING", "UPLOADED", "PROCESSING", "FAILED", "ABORTED"])
def test_m8_video_not_completed_is_409(playback_app, admin_db, status):
    video_id = insert_video(admin_db, status, published=False)
    code, body, headers = call(playback_app, "GET", f"/videos/{video_id}/playback")
    assert (code, body["error"]["code"]) == (409, "video_not_ready")
    assert status in body["error"]["message"]
    assert headers["Cache-Control"] == "no-store"


def test_m8_completed_video_without_renditions_is_409_not_playable(playback_app, admin_db):
    """A first-release row: COMPLETED from a file on EFS, never transcoded."""
    video_id = insert_video(admin_db, "COMPLETED", published=False)
    code, body, _ = call(playback_app, "GET", f"/videos/{video_id}/playback")
    assert (code, body["error"]["code"]) == (409, "video_not_playable")


def test_m8_stack_without_delivery_is_503_and_other_routes_still_work(
    api_database, aws, redis_proc, redis_client, admin_db
):
    app = make_app(api_database, aws, redis_proc.port)  # no playback signer
    video_id = insert_video(admin_db)
    status, body, headers = call(app, "GET", f"/videos/{video_id}/playback")
    assert (status, body["error"]["code"]) == (503, "delivery_not_configured")
    assert "Retry-After" not in headers  # not a passing condition: retrying will not help
    assert call(app, "GET", f"/videos/{video_id}")[0] == 200


def test_m8_unreadable_signing_secret_is_503_with_retry_after(
    api_database, aws, redis_proc, redis_client, admin_db
):
    missing = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:absent-AbCdEf"
    app = make_app(api_database, aws, redis_proc.port, playback=secret_signer(aws.secrets, missing))
    video_id = insert_video(admin_db)
    status, body, headers = call(app, "GET", f"/videos/{video_id}/playback")
    assert (status, body["error"]["code"], headers["Retry-After"]) == (
        503,
        "signing_unavailable",
        "1",
    )


@pytest.mark.parametrize("case", ["text", "public key", "truncated"])
def test_m8_malformed_signing_secret_is_500_configuration_error_and_never_echoed(
    api_database, aws, redis_proc, redis_client, admin_db, caplog, case
):
    secret = {
        "text": "not a key",
        "public key": distribution_key().public_pem,
        "truncated": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END",
    }[case]
    arn = aws.secrets.create_secret(Name="bad-signing", SecretString=secret)["ARN"]
    app = make_app(api_database, aws, redis_proc.port, playback=secret_signer(aws.secrets, arn))
    video_id = insert_video(admin_db)
    status, body, _ = call(app, "GET", f"/videos/{video_id}/playback")
    assert (status, body["error"]["code"]) == (500, "configuration_error")
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "signing secret" in logged and secret not in logged


def test_m8_playback_route_allows_only_get(playback_app, admin_db):
    video_id = insert_video(admin_db)
    status, body, headers = call(playback_app, "POST", f"/videos/{video_id}/playback")
    assert (status, body["error"]["code"], headers["Allow"]) == (405, "method_not_allowed", "GET")


def test_m8_route_is_found_by_path_when_the_resource_is_missing(playback_app, admin_db):
    video_id = insert_video(admin_db)
    response = playback_app.handle(
        {"httpMethod": "GET", "path": f"/videos/{video_id}/playback", "headers": {}}
    )
    assert response["statusCode"] == 200


@pytest.mark.usefixtures("lambda_env")
def test_m8_lambda_handler_signs_with_the_key_from_the_secret_named_in_its_environment(
    monkeypatch, aws, signing_secret, admin_db
):
    """The handler's own wiring: PLAYBACK_* from the environment, the private key read by
    ARN through the handler's Secrets Manager client."""
    for name, value in {**TRIO, "PLAYBACK_SIGNING_SECRET_ARN": signing_secret,
                        "PLAYBACK_GRANT_SECONDS": "600"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    video_id = insert_video(admin_db)
    status, body, headers = invoke(event("GET", f"/videos/{video_id}/playback"))
    assert (status, headers["Cache-Control"]) == (200, "no-store")
    grant = verify(values_of(body["cookies"]), public_keys(), now=datetime.now(UTC).timestamp())
    assert grant.resource == f"https://{DOMAIN}/media/{video_id}/*"
    assert 0 < grant.expires_at - datetime.now(UTC).timestamp() <= 600


@pytest.mark.usefixtures("lambda_env")
def test_m8_lambda_handler_with_a_partial_trio_answers_configuration_error(monkeypatch):
    monkeypatch.setenv("PLAYBACK_DOMAIN", DOMAIN)
    status, body, _ = invoke(event("GET", f"/videos/{uuid.uuid4()}/playback"))
    assert (status, body["error"]["code"]) == (500, "configuration_error")


# --- the signing key in Secrets Manager: rotation --------------------------------------------


class CountingSecrets:
    """Secrets Manager answers from a dict, counting reads; `fail` makes them raise."""

    def __init__(self, value: str) -> None:
        self.value, self.reads, self.fail = value, 0, False

    def get_secret_value(self, SecretId: str) -> dict:  # boto3's parameter name
        self.reads += 1
        if self.fail:
            raise ConnectionError("endpoint unreachable")
        return {"SecretString": self.value}


def test_m8_rotated_signing_key_is_used_after_the_ttl_and_an_outage_keeps_the_last_key():
    secrets, now = CountingSecrets(distribution_key().private_pem), [0.0]
    source = RefreshingSecret(
        secrets, "arn", load_private_key, ttl_seconds=300, retry_seconds=30, clock=lambda: now[0]
    )
    issue = signer(key_source=source, clock=lambda: NOW)
    video_id = str(uuid.uuid4())

    def grant_key() -> str:
        cookies = issue.grant(video_id, f"media/{video_id}/v1/master.m3u8").cookies
        for name, key in ((KEY_PAIR_ID, distribution_key()), ("K3OTHERKEYPAIR", other_key())):
            try:
                verify(values_of(cookies), {KEY_PAIR_ID: key.public}, now=NOW)
                return name
            except GrantRefused:
                continue
        raise AssertionError("signed with neither key")

    assert (grant_key(), secrets.reads) == (KEY_PAIR_ID, 1)
    secrets.value = other_key().private_pem  # rotated in the secret
    now[0] = 299.0
    assert (grant_key(), secrets.reads) == (KEY_PAIR_ID, 1)  # cached within the TTL
    now[0] = 300.0
    assert (grant_key(), secrets.reads) == ("K3OTHERKEYPAIR", 2)
    secrets.fail = True
    now[0] = 600.0
    assert (grant_key(), secrets.reads) == ("K3OTHERKEYPAIR", 3)  # the last key, kept
    now[0] = 629.0
    assert (grant_key(), secrets.reads) == ("K3OTHERKEYPAIR", 3)  # not retried at once
    now[0] = 630.0
    assert secrets.reads == 3 and grant_key() and secrets.reads == 4
    cold = RefreshingSecret(secrets, "arn", load_private_key, ttl_seconds=300, retry_seconds=30)
    with pytest.raises(CredentialsError, match="cannot read secret arn"):
        cold.get()


def test_m8_signing_key_must_be_an_rsa_private_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(SigningKeyError, match="must hold an RSA private key"):
        load_private_key(ec_pem)
    with pytest.raises(SigningKeyError, match="is not a PEM private key"):
        load_private_key("\ud800")


# --- settings --------------------------------------------------------------------------------

API_BASE = {
    "DB_HOST": "db",
    "DB_NAME": "media",
    "DB_SECRET_ARN": "arn:db",
    "REDIS_HOST": "cache",
    "STREAM_NAME": "events",
    "INGEST_BUCKET": "ingest",
}
TRIO = {
    "PLAYBACK_DOMAIN": DOMAIN,
    "PLAYBACK_KEY_PAIR_ID": KEY_PAIR_ID,
    "PLAYBACK_SIGNING_SECRET_ARN": "arn:aws:secretsmanager:eu-central-1:1:secret:sign",
}


def test_m8_api_settings_without_the_signing_trio_have_no_playback():
    assert load_api_settings(API_BASE).playback is None


def test_m8_api_settings_read_the_trio_and_the_grant_lifetime():
    playback = load_api_settings({**API_BASE, **TRIO, "PLAYBACK_GRANT_SECONDS": "900"}).playback
    assert playback is not None
    assert (playback.domain, playback.key_pair_id, playback.signing_secret_arn) == (
        DOMAIN,
        KEY_PAIR_ID,
        TRIO["PLAYBACK_SIGNING_SECRET_ARN"],
    )
    assert playback.grant_seconds == 900
    default = load_api_settings({**API_BASE, **TRIO}).playback
    assert default is not None and default.grant_seconds == PLAYBACK_GRANT_SECONDS_DEFAULT


@pytest.mark.parametrize("given", [("PLAYBACK_DOMAIN",), ("PLAYBACK_DOMAIN", "PLAYBACK_KEY_PAIR_ID"),
                                   ("PLAYBACK_SIGNING_SECRET_ARN",)])  # fmt: skip
def test_m8_a_partial_signing_trio_is_a_configuration_error_naming_the_missing_one(given):
    environ = {**API_BASE, **{name: TRIO[name] for name in given}}
    with pytest.raises(SettingsError) as raised:
        load_api_settings(environ)
    missing = next(name for name in TRIO if name not in given)
    assert raised.value.variable == missing
    assert str(raised.value) == (
        f"environment variable {missing}: is required with {' and '.join(given)}"
    )


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PLAYBACK_DOMAIN", "https://media.example.com", "must be a lower-case host name"),
        ("PLAYBACK_DOMAIN", "Media.Example.com", "must be a lower-case host name"),
        ("PLAYBACK_DOMAIN", "media.example.com/media", "must be a lower-case host name"),
        ("PLAYBACK_DOMAIN", "media.example.com:443", "must be a lower-case host name"),
        ("PLAYBACK_KEY_PAIR_ID", "K2 JC", "must be a CloudFront public key id"),
        ("PLAYBACK_GRANT_SECONDS", "299", "must be between 300 and 86400, got 299"),
        ("PLAYBACK_GRANT_SECONDS", "86401", "must be between 300 and 86400, got 86401"),
        ("PLAYBACK_GRANT_SECONDS", "1h", "must be an integer, got '1h'"),
    ],
)
def test_m8_bad_playback_values_name_their_variable(name, value, problem):
    with pytest.raises(SettingsError, match=problem) as raised:
        load_api_settings({**API_BASE, **TRIO, name: value})
    assert raised.value.variable == name


def test_m8_a_bad_grant_lifetime_is_refused_even_without_delivery():
    with pytest.raises(SettingsError) as raised:
        load_api_settings({**API_BASE, "PLAYBACK_GRANT_SECONDS": "10"})
    assert raised.value.variable == "PLAYBACK_GRANT_SECONDS"


KEYS_BASE = {"CONTENT_KEY_SECRET_ARN": "arn:keys"}


def test_m9_keys_settings_load_the_key_groups_public_keys():
    environ = {
        **KEYS_BASE,
        "PLAYBACK_PUBLIC_KEYS": json.dumps(
            {KEY_PAIR_ID: distribution_key().public_pem, OTHER_KEY_PAIR_ID: other_key().public_pem}
        ),
        "LOG_LEVEL": "debug",
        "AWS_REGION": "ap-northeast-1",
    }
    loaded = load_keys_settings(environ)
    assert sorted(loaded.public_keys) == sorted([KEY_PAIR_ID, OTHER_KEY_PAIR_ID])
    assert loaded.public_keys[KEY_PAIR_ID].public_numbers() == (
        distribution_key().private.public_key().public_numbers()
    )
    assert (loaded.content_key_secret_arn, loaded.log_level, loaded.aws_region) == (
        "arn:keys",
        "DEBUG",
        "ap-northeast-1",
    )
    assert "BEGIN PUBLIC KEY" not in repr(loaded)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("x", "must be a JSON object of 1 to 5 key pair ids"),
        ("{}", "must be a JSON object of 1 to 5 key pair ids"),
        ('["K1"]', "must be a JSON object of 1 to 5 key pair ids"),
        (json.dumps({f"K{i}": "p" for i in range(6)}), "of 1 to 5 key pair ids"),
        (json.dumps({"K-1": "pem"}), "key pair id 'K-1' is not 1-64 letters and digits"),
        (json.dumps({"K1": 5}), "key pair K1: the public key must be a PEM string"),
        (json.dumps({"K1": "-----BEGIN PUBLIC KEY-----"}), "key pair K1: the public key is not"),
        (json.dumps({"K1": "EC"}), "key pair K1: the public key must be RSA of at least 2048"),
        (json.dumps({"K1": "SMALL"}), "key pair K1: the public key must be RSA of at least 2048"),
    ],
)
def test_m9_bad_public_keys_name_playback_public_keys(value, problem):
    value = value.replace('"EC"', json.dumps(ec_public_pem()))
    value = value.replace('"SMALL"', json.dumps(small_key().public_pem))
    with pytest.raises(SettingsError, match=problem) as raised:
        load_keys_settings({**KEYS_BASE, "PLAYBACK_PUBLIC_KEYS": value})
    assert raised.value.variable == EnvVar.PLAYBACK_PUBLIC_KEYS


# --- the verifier: everything we never issue is refused ----------------------------------------


def signed(policy: dict | str, *, key=None, key_pair_id: str = KEY_PAIR_ID) -> SignedValues:
    text = policy if isinstance(policy, str) else json.dumps(policy, separators=(",", ":"))
    return values_of(grant_cookies(text, key=key, key_pair_id=key_pair_id))


def statement(resource: str = f"https://{DOMAIN}/media/v/*", **condition) -> dict:
    return {
        "Resource": resource,
        "Condition": condition or {"DateLessThan": {"AWS:EpochTime": NOW + 60}},
    }


def test_m8_the_api_policy_verifies_and_a_tampered_one_does_not():
    video_id = str(uuid.uuid4())
    policy = policy_for(video_id, NOW + 60)
    cookies = grant_cookies(policy)
    assert verify(values_of(cookies), public_keys(), now=NOW).resource.endswith(f"{video_id}/*")
    # Another title's policy under this signature; a signature with one character changed.
    forged = {**cookies, SIGNED_COOKIE_POLICY: safe_b64(policy_for("x", NOW + 60).encode())}
    signature = cookies[SIGNED_COOKIE_SIGNATURE]
    flipped = ("B" if signature[10] == "A" else "A").join((signature[:10], signature[11:]))
    for bad in (forged, {**cookies, SIGNED_COOKIE_SIGNATURE: flipped}):
        with pytest.raises(GrantRefused, match="signature does not verify"):
            verify(values_of(bad), public_keys(), now=NOW)
    with pytest.raises(GrantRefused, match="not one of the distribution's keys"):
        verify(values_of({**cookies, SIGNED_COOKIE_KEY_PAIR_ID: OTHER_KEY_PAIR_ID}), public_keys(),
               now=NOW)  # fmt: skip
    with pytest.raises(GrantRefused, match="signature does not verify"):
        verify(signed(policy, key=other_key()), public_keys(), now=NOW)


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ({"Statement": [statement(), statement()]}, "exactly one statement"),
        ({"Statement": []}, "exactly one statement"),
        ({"Statement": [statement()], "Version": "1"}, "exactly Statement"),
        ({"Statement": statement()}, "Statement has the wrong type"),
        ({"Statement": [{**statement(), "Effect": "Allow"}]}, "exactly Resource and Condition"),
        ({"Statement": [statement("media.example.com/media/v/*")]}, "an https:// URL with a host"),
        ({"Statement": [statement("https://*/media/v/*")]}, "an https:// URL with a host"),
        ({"Statement": [statement(["https://a/"])]}, "an https:// URL with a host"),
        (
            {
                "Statement": [
                    statement(
                        DateLessThan={"AWS:EpochTime": NOW + 60},
                        IpAddress={"AWS:SourceIp": "0.0.0.0/0"},
                    )
                ]
            },
            "exactly DateLessThan",
        ),
        ({"Statement": [statement(DateGreaterThan={"AWS:EpochTime": 1})]}, "exactly DateLessThan"),
        ({"Statement": [statement(DateLessThan={"AWS:EpochTime": "1900000060"})]}, "wrong type"),
        ({"Statement": [statement(DateLessThan={"AWS:EpochTime": 1.9e9})]}, "wrong type"),
        ({"Statement": [statement(DateLessThan={"AWS:EpochTime": True})]}, "an epoch second"),
        ({"Statement": [statement(DateLessThan={"AWS:EpochTime": 2**40})]}, "an epoch second"),
        ({"Statement": [statement(DateLessThan={"AWS:EpochTime": -5})]}, "an epoch second"),
        ('{"Statement": [', "not JSON"),
        ("[" * 50 + "]" * 50, "not JSON"),
    ],
)
def test_m8_signed_policies_we_never_issue_are_refused(policy, problem):
    """Signed with the distribution's own key, so only the policy's shape can refuse them."""
    with pytest.raises(GrantRefused, match=problem):
        verify(signed(policy), public_keys(), now=NOW)


def test_m8_expiry_is_the_first_second_refused():
    policy = policy_for("v", NOW + 10)
    assert verify(signed(policy), public_keys(), now=NOW + 9.999).expires_at == NOW + 10
    with pytest.raises(GrantRefused, match="expired"):
        verify(signed(policy), public_keys(), now=NOW + 10)


@pytest.mark.parametrize(
    ("cookies", "problem"),
    [
        ([], "CloudFront-Policy, CloudFront-Signature, CloudFront-Key-Pair-Id missing"),
        (["CloudFront-Policy=a", "CloudFront-Key-Pair-Id=K"], "CloudFront-Signature missing"),
        (
            [
                "CloudFront-Policy=a",
                "CloudFront-Policy=b",
                "CloudFront-Signature=s",
                "CloudFront-Key-Pair-Id=K",
            ],
            "CloudFront-Policy is given more than once",
        ),
    ],
)
def test_m8_missing_or_repeated_cookies_are_refused(cookies, problem):
    with pytest.raises(GrantRefused, match=problem):
        grant_values(cookies, [])


def test_m8_a_signed_url_wins_over_cookies_and_cookie_headers_split_like_function_urls():
    assert cookie_pairs(" a=1;b=2 ; ;c=") == ["a=1", "b=2", "c="]
    cookies = ["CloudFront-Policy=p", "CloudFront-Signature=s", "CloudFront-Key-Pair-Id=K"]
    query = [("Policy", "qp"), ("Signature", "qs"), ("Key-Pair-Id", "QK")]
    assert grant_values(cookies, query).key_pair_id == "QK"
    assert grant_values(cookies, [("x", "1")]).key_pair_id == "K"
    with pytest.raises(GrantRefused, match="Signature, Key-Pair-Id missing"):
        grant_values(cookies, [("Policy", "qp")])


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("https://d/media/a/*", "https://d/media/a/", True),
        ("https://d/media/a/*", "https://d/media/a/v1/x.ts", True),
        ("https://d/media/a/*", "https://d/media/ab/x.ts", False),
        ("https://d/media/a/*", "https://d/media/a", False),
        ("https://d/media/a/*", "HTTPS://d/media/a/x", False),
        ("media/*/keys/*", "media/a/keys/k1.key", True),
        ("media/*/keys/*", "media/a/v1/keys", False),
        ("media/*/session", "media/a/session", True),
        ("media/*/session", "media/a/session/x", False),
        ("media/*.m3u8", "media/a/v1/720p/index.m3u8", True),
        ("media/*.m3u8", "media/a/v1/seg.ts", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*", "", True),
        ("a**b", "ab", True),
    ],
)
def test_m7_m8_cloudfront_wildcards(pattern, text, matches):
    assert wildcard_match(pattern, text) is matches


def test_m8_wildcard_matching_stays_linear_on_a_pathological_pattern():
    pattern, text = "*a" * 200 + "b", "a" * 4000
    assert wildcard_match(pattern, text) is False


# --- H6: generated hostile grants are refused, never an exception ------------------------------

_reference_alphabet = st.sampled_from("ab*?")


@BOUNDED
@given(pattern=st.text(_reference_alphabet, max_size=8), text=st.text("ab*?", max_size=10))
def test_h6_wildcard_match_agrees_with_a_regular_expression(pattern, text):
    import re

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    assert wildcard_match(pattern, text) is bool(re.fullmatch(regex, text, re.DOTALL))


_b64ish = st.text(string.ascii_letters + string.digits + "-_~+/=%. ", max_size=400)
_anything = st.text(max_size=200)


@BOUNDED
@given(
    policy=st.one_of(_b64ish, _anything, st.just("A" * 100_000)),
    signature=st.one_of(_b64ish, _anything, st.just(sign_policy("{}"))),
    key_pair_id=st.one_of(st.just(KEY_PAIR_ID), _anything),
)
def test_h6_arbitrary_grant_values_are_refused_never_raised(policy, signature, key_pair_id):
    values = SignedValues(policy=policy, signature=signature, key_pair_id=key_pair_id)
    with pytest.raises(GrantRefused):
        verify(values, public_keys(), now=NOW)


@BOUNDED
@given(document=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["Statement", "Resource", "Condition",
                                                             "DateLessThan", "AWS:EpochTime"]),
                                            inner, max_size=3)),
    max_leaves=12,
))  # fmt: skip
def test_h6_any_signed_json_is_either_a_grant_we_issue_or_refused(document):
    try:
        text = json.dumps(document, allow_nan=True)
    except (TypeError, ValueError):
        return
    try:
        grant = verify(signed(text), public_keys(), now=NOW)
    except GrantRefused:
        return
    assert json.loads(text) == {
        "Statement": [
            {
                "Resource": grant.resource,
                "Condition": {"DateLessThan": {"AWS:EpochTime": grant.expires_at}},
            }
        ]
    }


@BOUNDED
@given(cookies=st.lists(st.one_of(_anything, st.sampled_from(
    [f"{name}={value}" for name in SIGNED_COOKIES for value in ("", "A", "~_-", "K1")]
)), max_size=8))  # fmt: skip
def test_h6_arbitrary_cookie_lists_are_refused_never_raised(cookies):
    try:
        values = grant_values(cookies, [])
    except GrantRefused:
        return
    with pytest.raises(GrantRefused):
        authorize(values, public_keys(), url=f"https://{DOMAIN}/media/x/a.ts", now=NOW)
