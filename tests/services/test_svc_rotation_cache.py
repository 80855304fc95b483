"""Cache AUTH token rotation (issue 14, item 7; C3) against moto's Secrets Manager and a real
Redis standing in for the replication group.

Secrets Manager's side: moto stages AWSPENDING on a new version when a rotation starts (its
own RotateSecret, stopped before it invokes the function), then each step is invoked as
Secrets Manager invokes it. ElastiCache's side: a stand-in whose ModifyReplicationGroup does
to a real redis-server what ElastiCache documents for the token (auth.html, "Modifying the
AUTH token on an existing cluster"): ROTATE adds the token beside the others and drops the
oldest of more than two (`ACL SETUSER default >new <oldest`), SET keeps only the given one
(`resetpass >token`); the group is `modifying` until the change is applied. TLS is off here
(REDIS_TLS=false): the server-verified TLS path is the services' own redis client.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import redis
from botocore.exceptions import ClientError, EndpointConnectionError
from conftest import REGION
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core import DEFAULT_ACCOUNT_ID as ACCOUNT_ID
from moto.secretsmanager.models import secretsmanager_backends
from pytest_redis import factories as redis_factories
from redis.backoff import NoBackoff
from redis.retry import Retry
from svc_support import rotation_function_arn

from services.common.cache import VideoCache
from services.common.redis_client import SecretAuth, StaticAuth, create_redis, redis_auth
from services.common.secrets import CredentialsError, SecretCache
from services.common.settings import (
    RedisSettings,
    SettingsError,
    load_cache_token_rotation_settings,
)
from services.contract import CACHE_AUTH_TOKEN_LENGTH, CACHE_AUTH_TOKEN_SPECIALS, EnvVar
from services.rotation import cache_token
from services.rotation.cache_token import AuthTokenCredential, new_token
from services.rotation.protocol import CURRENT, PENDING, PREVIOUS, STEPS, RotationError

pytestmark = pytest.mark.services

GROUP_ID = "media-cache-test"
FIRST_TOKEN = "F1rst-token-made-by-pulumi-up-0123456789-ABCDEFGHIJ-klmnopqrstuv"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-of-the-test"
# A Redis of its own: its default user's passwords change here, other tests' must not.
token_redis_proc = redis_factories.redis_proc(executable=shutil.which("redis-server"), port=None)


class Started(Exception):
    """Raised by the stand-in Lambda: Secrets Manager has staged AWSPENDING and invokes."""


@dataclass
class ElastiCacheStandIn:
    """ModifyReplicationGroup and DescribeReplicationGroups of one group, on a real Redis."""

    admin: Any
    tokens: list[str]
    apply_at_once: bool = True
    status: str = "available"
    calls: list[dict[str, Any]] = field(default_factory=list)
    waiting: tuple[str, str] | None = None

    def describe_replication_groups(self, ReplicationGroupId: str) -> dict[str, Any]:
        assert ReplicationGroupId == GROUP_ID
        return {"ReplicationGroups": [{"ReplicationGroupId": GROUP_ID, "Status": self.status}]}

    def modify_replication_group(self, **call: Any) -> dict[str, Any]:
        self.calls.append(call)
        assert call["ReplicationGroupId"] == GROUP_ID and call["ApplyImmediately"] is True
        self.waiting, self.status = (
            (call["AuthTokenUpdateStrategy"], call["AuthToken"]),
            "modifying",
        )
        if self.apply_at_once:
            self.settle()
        return {"ReplicationGroup": {"Status": self.status}}

    def settle(self) -> None:
        """The modification has been applied."""
        assert self.waiting is not None
        strategy, token = self.waiting
        if strategy == "ROTATE":
            self.tokens.append(token)
            self.admin.execute_command("ACL", "SETUSER", "default", f">{token}")
            while len(self.tokens) > 2:
                oldest = self.tokens.pop(0)
                self.admin.execute_command("ACL", "SETUSER", "default", f"<{oldest}")
        else:
            self.tokens = [token]
            self.admin.execute_command("ACL", "SETUSER", "default", "resetpass", f">{token}")
        self.waiting, self.status = None, "available"


@dataclass
class Stack:
    secrets: Any
    secret_arn: str
    function_arn: str
    cache: ElastiCacheStandIn
    host: str
    port: int
    invoked: list[str] = field(default_factory=list)

    def invoke(self, body: bytes | str) -> bytes:
        event = json.loads(body)
        self.invoked.append(event["Step"])
        if event["Step"] != "testSecret" or event["ClientRequestToken"] in self.stages():
            raise Started(event["ClientRequestToken"])
        return b"null"

    def start(self) -> str:
        """Secrets Manager starts a rotation: AWSPENDING on a new version without a value."""
        self._forget_finished_pending()
        token = str(uuid.uuid4())
        with pytest.raises(Started):
            self.secrets.rotate_secret(
                SecretId=self.secret_arn,
                ClientRequestToken=token,
                RotationLambdaARN=self.function_arn,
                RotationRules={"AutomaticallyAfterDays": 30},
            )
        return token

    def step(self, step: str, token: str) -> None:
        event = {"Step": step, "SecretId": self.secret_arn, "ClientRequestToken": token}
        cache_token.handler(event, None)
        if step == "finishSecret":
            self._follow_current()

    def _follow_current(self) -> None:
        # moto's UpdateSecretVersionStage moves the AWSCURRENT label but not the version its
        # GetSecretValue returns without a stage (AWS returns AWSCURRENT's); the clients read
        # that way, so the emulator is aligned with AWS here.
        [current] = [v for v, labels in self.stages().items() if CURRENT in labels]
        backend = secretsmanager_backends[ACCOUNT_ID][REGION]
        backend.secrets[self.secret_arn].set_default_version_id(current)

    def rotate(self) -> str:
        token = self.start()
        for step in STEPS:
            self.step(step, token)
        return token

    def _forget_finished_pending(self) -> None:
        # After finishSecret AWSPENDING stays on the new AWSCURRENT version, which AWS accepts
        # for the next RotateSecret; moto refuses it ("still in progress").
        for version, labels in self.stages().items():
            if PENDING in labels and CURRENT in labels:
                self.secrets.update_secret_version_stage(
                    SecretId=self.secret_arn, VersionStage=PENDING, RemoveFromVersionId=version
                )

    def value(self, stage: str, token: str | None = None) -> str:
        where = {"VersionId": token} if token else {}
        return self.secrets.get_secret_value(SecretId=self.secret_arn, VersionStage=stage, **where)[
            "SecretString"
        ]

    def stages(self) -> dict[str, list[str]]:
        return self.secrets.describe_secret(SecretId=self.secret_arn)["VersionIdsToStages"]

    def authenticates(self, token: str) -> bool:
        # No retries: a refused token is an answer, not a failure to wait out.
        client = redis.Redis(
            host=self.host, port=self.port, password=token, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        except redis.AuthenticationError:
            return False
        finally:
            client.close()

    def settings(self) -> RedisSettings:
        return RedisSettings(host=self.host, port=self.port, tls=False)


@pytest.fixture
def admin(token_redis_proc: Any) -> Iterator[Any]:
    """An ACL user of our own that changes the default user's passwords, as ElastiCache
    does; the default user starts with the token `pulumi up` created the group with."""
    client = redis.Redis(host=token_redis_proc.host, port=token_redis_proc.port)
    client.execute_command("ACL", "SETUSER", ADMIN, "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all")
    client.close()
    client = redis.Redis(
        host=token_redis_proc.host,
        port=token_redis_proc.port,
        username=ADMIN,
        password=ADMIN_PASSWORD,
    )
    client.execute_command("ACL", "SETUSER", "default", "resetpass", f">{FIRST_TOKEN}")
    yield client
    client.execute_command("ACL", "SETUSER", "default", "resetpass", "nopass")
    client.execute_command("ACL", "DELUSER", ADMIN)
    client.close()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, token_redis_proc: Any, admin: Any) -> Iterator[Stack]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = secrets.create_secret(Name="media-cache-auth-token", SecretString=FIRST_TOKEN)[
            "ARN"
        ]
        cache = ElastiCacheStandIn(admin, [FIRST_TOKEN])
        made = Stack(
            secrets,
            secret_arn,
            rotation_function_arn(
                "services.rotation.cache_token", "media-cache-rotation-test", REGION
            ),
            cache,
            token_redis_proc.host,
            token_redis_proc.port,
        )
        for name, value in {
            EnvVar.REDIS_HOST: made.host,
            EnvVar.REDIS_PORT: str(made.port),
            EnvVar.REDIS_TLS: "false",
            EnvVar.REDIS_AUTH_SECRET_ARN: secret_arn,
            EnvVar.CACHE_REPLICATION_GROUP_ID: GROUP_ID,
            EnvVar.LOG_LEVEL: "DEBUG",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(
            LambdaSimpleBackend, "invoke", lambda _b, _n, **call: made.invoke(call["body"])
        )
        real_client = cache_token.aws_client
        monkeypatch.setattr(
            cache_token,
            "aws_client",
            lambda service, **options: (
                cache if service == "elasticache" else real_client(service, **options)
            ),
        )
        # The test step waits no longer than this for a modification (the handler's context
        # gives it the invocation's remaining time).
        monkeypatch.setattr(cache_token, "DEFAULT_FUNCTION_TIMEOUT_SECONDS", 0.0)
        cache_token.reset()
        yield made
        cache_token.reset()


# -- the new value ---------------------------------------------------------------------


def test_i14_7_new_tokens_are_64_characters_elasticache_accepts_with_every_kind():
    for _ in range(50):
        token = new_token()
        assert len(token) == CACHE_AUTH_TOKEN_LENGTH
        assert set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + "!&#$^<>-"
        )
        assert any(c.isupper() for c in token) and any(c.islower() for c in token)
        assert any(c.isdigit() for c in token) and any(
            c in CACHE_AUTH_TOKEN_SPECIALS for c in token
        )
    assert len({new_token() for _ in range(20)}) == 20


# -- the four steps ----------------------------------------------------------------------


def test_i14_7_create_stores_the_pending_token_once(stack):
    token = stack.start()
    stack.step("createSecret", token)
    pending = stack.value(PENDING, token)
    stack.step("createSecret", token)  # Secrets Manager may invoke a step again

    assert stack.value(PENDING, token) == pending
    assert pending != FIRST_TOKEN and len(pending) == CACHE_AUTH_TOKEN_LENGTH
    assert stack.stages() == {
        next(v for v, s in stack.stages().items() if CURRENT in s): [CURRENT],
        token: [PENDING],
    }
    assert stack.value(CURRENT) == FIRST_TOKEN
    assert stack.cache.calls == []


def test_i14_7_set_makes_the_pending_token_work_while_the_current_still_works(stack):
    token = stack.start()
    stack.step("createSecret", token)
    pending = stack.value(PENDING, token)
    assert not stack.authenticates(pending)

    stack.step("setSecret", token)

    assert stack.cache.calls == [
        {
            "ReplicationGroupId": GROUP_ID,
            "AuthToken": pending,
            "AuthTokenUpdateStrategy": "ROTATE",
            "ApplyImmediately": True,
        }
    ]
    assert stack.authenticates(pending) and stack.authenticates(FIRST_TOKEN)
    # Invoked again: the pending token already authenticates, it is not applied twice.
    stack.step("setSecret", token)
    assert len(stack.cache.calls) == 1


def test_i14_7_test_fails_before_set_and_while_modifying_passes_after(stack):
    stack.cache.apply_at_once = False
    token = stack.start()
    stack.step("createSecret", token)

    with pytest.raises(RotationError) as before:
        stack.step("testSecret", token)
    assert str(before.value) == (
        f"the cache of {GROUP_ID} refuses the pending token after 0 s (group available): "
        "the modification may still be applying; the rotation is tried again later"
    )
    stack.step("setSecret", token)
    with pytest.raises(RotationError, match=r"\(group modifying\)"):
        stack.step("testSecret", token)

    stack.cache.settle()
    stack.step("testSecret", token)  # no error
    assert stack.value(CURRENT) == FIRST_TOKEN


def test_i14_7_finish_makes_the_new_token_current_and_the_first_previous(stack):
    token = stack.rotate()

    current = stack.value(CURRENT)
    assert stack.value(PREVIOUS) == FIRST_TOKEN
    assert CURRENT in stack.stages()[token]
    assert stack.authenticates(current) and stack.authenticates(FIRST_TOKEN)
    assert stack.cache.tokens == [FIRST_TOKEN, current]


def test_i14_7_after_a_second_rotation_only_current_and_previous_authenticate(stack):
    stack.rotate()
    first_rotated = stack.value(CURRENT)
    stack.rotate()

    current = stack.value(CURRENT)
    assert stack.value(PREVIOUS) == first_rotated
    assert stack.authenticates(current) and stack.authenticates(first_rotated)
    # ElastiCache's ROTATE on a group with two tokens dropped the oldest: no SET needed.
    assert not stack.authenticates(FIRST_TOKEN)
    assert [call["AuthTokenUpdateStrategy"] for call in stack.cache.calls] == ["ROTATE", "ROTATE"]


def test_i14_7_an_unavailable_group_makes_set_fail_without_touching_the_stages(stack):
    token = stack.start()
    stack.step("createSecret", token)
    stages = stack.stages()
    stack.cache.status = "snapshotting"

    with pytest.raises(RotationError) as error:
        stack.step("setSecret", token)

    assert str(error.value) == (
        f"replication group {GROUP_ID} is snapshotting, not available: the token is not "
        "changed now; the rotation is tried again later"
    )
    assert stack.cache.calls == []
    assert stack.stages() == stages
    assert stack.value(CURRENT) == FIRST_TOKEN


def test_i14_7_a_refused_modification_is_reported_by_its_code_only(stack):
    token = stack.start()
    stack.step("createSecret", token)
    pending = stack.value(PENDING, token)

    def refuse(**call: Any) -> None:
        raise stack.secrets.exceptions.InvalidRequestException(
            {"Error": {"Code": "InvalidReplicationGroupState", "Message": call["AuthToken"]}},
            "ModifyReplicationGroup",
        )

    stack.cache.modify_replication_group = refuse  # type: ignore[method-assign]
    with pytest.raises(RotationError) as error:
        stack.step("setSecret", token)
    assert str(error.value) == (
        f"ModifyReplicationGroup of {GROUP_ID} failed: InvalidReplicationGroupState"
    )
    assert pending not in str(error.value)


def test_i14_7_deployment_check_tests_the_current_token_without_rotating(stack):
    """rotate_immediately=False: Secrets Manager runs only testSecret, on a pending copy of
    the current value (PITFALLS 148): it passes, and nothing changes."""

    def run(body: bytes | str) -> bytes:
        event = json.loads(body)
        stack.invoked.append(event["Step"])
        cache_token.handler(event, None)
        return b"null"

    stack.invoke = run  # type: ignore[method-assign]
    stack.secrets.rotate_secret(
        SecretId=stack.secret_arn,
        RotationLambdaARN=stack.function_arn,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=False,
    )

    assert stack.invoked == ["testSecret"]
    assert stack.cache.calls == []
    assert stack.value(CURRENT) == FIRST_TOKEN


# -- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"Step": "setSecret", "ClientRequestToken": "t"},
            "not a rotation event: missing 'SecretId'",
        ),
        ("not an event", "not a rotation event: missing 'SecretId'"),
    ],
)
def test_i14_7_a_bad_event_is_refused(stack, event, message):
    with pytest.raises(RotationError) as error:
        cache_token.handler(event, None)
    assert str(error.value) == message
    assert stack.cache.calls == []


def test_i14_7_an_unknown_step_is_refused(stack):
    token = stack.start()
    with pytest.raises(RotationError, match="unknown rotation step 'dropSecret'"):
        stack.step("dropSecret", token)


def test_i14_7_another_secret_is_not_rotated_here(stack):
    other = stack.secrets.create_secret(Name="media-other", SecretString="x")["ARN"]
    event = {"Step": "createSecret", "SecretId": other, "ClientRequestToken": str(uuid.uuid4())}
    with pytest.raises(RotationError) as error:
        cache_token.handler(event, None)
    assert str(error.value) == "this function rotates only the cache's AUTH token secret"
    missing = {**event, "SecretId": "media-missing"}
    with pytest.raises(RotationError, match="cannot describe the secret: ResourceNotFound"):
        cache_token.handler(missing, None)


def test_i14_7_an_unreachable_cache_fails_the_step(stack, monkeypatch):
    monkeypatch.setenv(EnvVar.REDIS_PORT, "1")
    cache_token.reset()
    token = stack.start()
    stack.step("createSecret", token)
    with pytest.raises(RotationError, match=r"cannot be reached \(ConnectionError\)"):
        stack.step("setSecret", token)
    assert stack.cache.calls == []


def test_i14_7_the_test_step_names_an_unreachable_cache(stack, monkeypatch):
    token = stack.start()
    stack.step("createSecret", token)
    stack.step("setSecret", token)
    monkeypatch.setenv(EnvVar.REDIS_PORT, "1")
    cache_token.reset()
    with pytest.raises(RotationError) as error:
        stack.step("testSecret", token)
    assert str(error.value) == (
        f"the cache of {GROUP_ID} cannot be reached (ConnectionError) after 0 s (group "
        "available): the modification may still be applying; the rotation is tried again later"
    )


@pytest.mark.parametrize(
    ("failure", "named"),
    [
        (
            ClientError(
                {"Error": {"Code": "ReplicationGroupNotFoundFault", "Message": "gone"}},
                "DescribeReplicationGroups",
            ),
            "ReplicationGroupNotFoundFault",
        ),
        (EndpointConnectionError(endpoint_url="https://elasticache"), "EndpointConnectionError"),
    ],
)
def test_i14_7_a_group_that_cannot_be_described_fails_set(stack, failure, named):
    token = stack.start()
    stack.step("createSecret", token)

    def fail(**_call: Any) -> None:
        raise failure

    stack.cache.describe_replication_groups = fail  # type: ignore[method-assign]
    with pytest.raises(RotationError) as error:
        stack.step("setSecret", token)
    assert str(error.value) == f"DescribeReplicationGroups of {GROUP_ID} failed: {named}"
    assert stack.cache.calls == []


def test_i14_7_tokens_are_never_logged(stack, capsys):
    """The function logs JSON lines to stdout (configure_logging), at DEBUG here."""
    stack.rotate()
    stack.rotate()
    logged = capsys.readouterr().out
    steps = [json.loads(line).get("step") for line in logged.splitlines() if line.startswith("{")]
    assert steps.count("finishSecret") == 2
    for token in {FIRST_TOKEN, *stack.cache.tokens}:
        assert token not in logged


def test_i14_7_settings_name_every_missing_variable(monkeypatch):
    monkeypatch.delenv(EnvVar.CACHE_REPLICATION_GROUP_ID, raising=False)
    with pytest.raises(SettingsError, match="CACHE_REPLICATION_GROUP_ID: is required"):
        load_cache_token_rotation_settings(
            {EnvVar.REDIS_HOST: "h", EnvVar.REDIS_AUTH_SECRET_ARN: "arn"}
        )


# -- clients follow the rotation -----------------------------------------------------------


def test_i14_7_a_client_holding_a_retired_token_rereads_the_secret_and_reconnects(stack):
    secrets_cache = SecretCache(stack.secrets)
    settings = RedisSettings(
        host=stack.host, port=stack.port, tls=False, auth_secret_arn=stack.secret_arn
    )
    auth = redis_auth(secrets_cache, settings)
    assert isinstance(auth, SecretAuth)
    client = create_redis(settings, auth, client_name="media-worker")
    videos = VideoCache(client, 300)
    assert videos.put("v1", {"status": "COMPLETED"}, 1)

    stack.rotate()
    stack.rotate()  # the token the client read is no longer accepted
    assert not stack.authenticates(FIRST_TOKEN)
    # A new connection (failover, idle timeout) authenticates again.
    stack.cache.admin.execute_command("CLIENT", "KILL", "USER", "default")

    assert videos.get("v1") == {"status": "COMPLETED"}
    assert auth.current() == stack.value(CURRENT)
    client.close()


def test_i14_7_a_refused_token_is_reread_at_most_once_per_interval(stack):
    clock = [1000.0]
    reads: list[str] = []

    class CountingCache(SecretCache):
        def refresh(self, arn: str) -> str:
            reads.append(arn)
            return super().refresh(arn)

    auth = SecretAuth(CountingCache(stack.secrets), stack.secret_arn, clock=lambda: clock[0])
    assert auth.refresh() is True
    assert auth.refresh() is False
    clock[0] += 31
    assert auth.refresh() is True
    assert reads == [stack.secret_arn, stack.secret_arn]


def test_i14_7_a_client_that_cannot_reread_falls_back_like_for_a_dead_cache(stack):
    class Unreadable(SecretCache):
        def refresh(self, arn: str) -> str:
            raise CredentialsError(f"cannot read secret {arn}: denied")

    secrets_cache = Unreadable(stack.secrets)
    secrets_cache.get(stack.secret_arn)
    auth = SecretAuth(secrets_cache, stack.secret_arn)
    stack.rotate()
    stack.rotate()
    videos = VideoCache(create_redis(stack.settings(), auth, client_name="media-api"), 300)

    from services.common.cache import CacheUnavailable

    with pytest.raises(CacheUnavailable):
        videos.get("v1")


def test_c3_a_token_from_the_environment_is_never_reread(stack):
    settings = RedisSettings(host=stack.host, port=stack.port, tls=False, auth_token=FIRST_TOKEN)
    auth = redis_auth(None, settings)
    assert isinstance(auth, StaticAuth) and auth.refresh() is False
    client = create_redis(settings, auth, client_name="media-worker")
    assert client.ping() is True
    stack.rotate()
    stack.rotate()
    client.close()
    with pytest.raises(redis.AuthenticationError):
        create_redis(settings, auth, client_name="media-worker").ping()
    assert redis_auth(None, RedisSettings(host="h", port=1, tls=False)) is None


def test_i14_7_credential_waits_for_the_modification_within_its_bound(stack):
    """The test step polls while the group applies the token, up to its bound."""
    stack.cache.apply_at_once = False
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds
        if len(slept) == 2:
            stack.cache.settle()

    credential = AuthTokenCredential(
        stack.cache,
        lambda token: create_redis(stack.settings(), token, client_name="t"),
        GROUP_ID,
        apply_wait_seconds=60,
        poll_seconds=10,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    pending = new_token()
    credential.set(pending, FIRST_TOKEN)
    credential.test(pending)
    assert slept == [10, 10]
