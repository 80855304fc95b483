"""API key rotation (issue 14, item 7; K3, A3) against moto's Secrets Manager and API Gateway.

Secrets Manager's side is moto's own RotateSecret: it stages AWSPENDING on a new version and
invokes the rotation function once per step; moto's Lambda runs `handler` in-process here.
The stack's side is what `pulumi up` made: the secret holding the first key's value, that
key (tagged like every resource of the stack) and the usage plan with that key.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from conftest import REGION
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from svc_support import rotation_function_arn

from services.common.settings import SettingsError
from services.contract import API_KEY_LENGTH, API_KEY_ROTATION_ENVIRONMENT, EnvVar
from services.rotation import api_key
from services.rotation.api_key import (
    MANAGED_BY_ROTATION,
    ROTATION_OF_TAG,
    ApiGatewayKeys,
    handler,
    load_settings,
    new_key_value,
)
from services.rotation.protocol import CURRENT, PENDING, PREVIOUS, RotationError

pytestmark = pytest.mark.services

KEY_NAME = "media-api-key-test"
FIRST_VALUE = "F1rstKeyMadeByPulumiUp0123456789abcdefg"[:API_KEY_LENGTH].ljust(API_KEY_LENGTH, "x")
MINIMAL = {
    EnvVar.API_KEY_SECRET_ARN: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:k",
    EnvVar.API_KEY_NAME: "k",
    EnvVar.API_KEY_ID: "id",
    EnvVar.API_USAGE_PLAN_ID: "p",
}
STACK_TAGS = {"Environment": "test", "CostCenter": "media", "ManagedBy": "pulumi"}


@dataclass
class Stack:
    """What `pulumi up` made, and Secrets Manager's side of a rotation."""

    secrets: Any
    gateway: Any
    secret_arn: str
    function_arn: str
    first_key_id: str
    plan_id: str
    before_step: dict[str, Callable[[str], None]] = field(default_factory=dict)
    """Step -> what happens just before Secrets Manager invokes it (given the token)."""
    repeat: int = 1
    """How often each step is invoked: Secrets Manager retries a step after any failure."""
    steps: list[str] = field(default_factory=list)

    def invoke(self, body: bytes | str) -> bytes:
        event = json.loads(body)
        if (hook := self.before_step.pop(event["Step"], None)) is not None:
            hook(event["ClientRequestToken"])
        for _ in range(self.repeat):
            handler(event, None)
            self.steps.append(event["Step"])
        return b"null"

    def rotate(self) -> str:
        """One rotation, as the schedule starts it; the new version's id."""
        self._forget_finished_pending()
        token = str(uuid.uuid4())
        self.secrets.rotate_secret(
            SecretId=self.secret_arn,
            ClientRequestToken=token,
            RotationLambdaARN=self.function_arn,
            RotationRules={"AutomaticallyAfterDays": 90},
        )
        return token

    def _forget_finished_pending(self) -> None:
        # After finishSecret AWSPENDING stays on the new AWSCURRENT version, which AWS accepts
        # for the next RotateSecret; moto refuses it ("still in progress"), so it goes here.
        stages = self.secrets.describe_secret(SecretId=self.secret_arn)["VersionIdsToStages"]
        for version, labels in stages.items():
            if PENDING in labels and CURRENT in labels:
                self.secrets.update_secret_version_stage(
                    SecretId=self.secret_arn, VersionStage=PENDING, RemoveFromVersionId=version
                )

    def value(self, stage: str) -> str:
        return self.secrets.get_secret_value(SecretId=self.secret_arn, VersionStage=stage)[
            "SecretString"
        ]

    def pending(self, token: str) -> str:
        return self.secrets.get_secret_value(
            SecretId=self.secret_arn, VersionId=token, VersionStage=PENDING
        )["SecretString"]

    def stages(self) -> dict[str, list[str]]:
        return self.secrets.describe_secret(SecretId=self.secret_arn)["VersionIdsToStages"]

    def plan_keys(self) -> dict[str, str]:
        """Value -> key id of every key in the usage plan."""
        items = self.gateway.get_usage_plan_keys(usagePlanId=self.plan_id)["items"]
        return {item["value"]: item["id"] for item in items}

    def key(self, key_id: str) -> dict[str, Any] | None:
        try:
            return self.gateway.get_api_key(apiKey=key_id)
        except self.gateway.exceptions.NotFoundException:
            return None

    def add_key(self, name: str, value: str, tags: dict[str, str] | None = None) -> str:
        key_id = self.gateway.create_api_key(name=name, value=value, enabled=True, tags=tags or {})[
            "id"
        ]
        self.gateway.create_usage_plan_key(
            usagePlanId=self.plan_id, keyId=key_id, keyType="API_KEY"
        )
        return key_id


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        secrets = boto3.client("secretsmanager", region_name=REGION)
        gateway = boto3.client("apigateway", region_name=REGION)
        secret_arn = secrets.create_secret(Name="media-api-key-secret", SecretString=FIRST_VALUE)[
            "ARN"
        ]
        plan_id = gateway.create_usage_plan(name="media-api-plan-test")["id"]
        first = Stack(
            secrets,
            gateway,
            secret_arn,
            rotation_function_arn(
                "services.rotation.api_key", "media-api-key-rotation-test", REGION
            ),
            "",
            plan_id,
        )
        first.first_key_id = first.add_key(KEY_NAME, FIRST_VALUE, {**STACK_TAGS, "Name": KEY_NAME})
        for name, value in {
            EnvVar.API_KEY_SECRET_ARN: secret_arn,
            EnvVar.API_KEY_NAME: KEY_NAME,
            EnvVar.API_KEY_ID: first.first_key_id,
            EnvVar.API_USAGE_PLAN_ID: plan_id,
            EnvVar.LOG_LEVEL: "DEBUG",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(
            LambdaSimpleBackend,
            "invoke",
            lambda _backend, _name, **call: first.invoke(call["body"]),
        )
        yield first


def test_k_first_rotation_issues_a_new_key_into_the_plan_and_the_first_keeps_working(stack):
    token = stack.rotate()

    assert stack.steps == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    current = stack.value(CURRENT)
    assert stack.value(PREVIOUS) == FIRST_VALUE
    assert len(current) == API_KEY_LENGTH and current != FIRST_VALUE
    assert set(stack.plan_keys()) == {FIRST_VALUE, current}
    issued = stack.key(stack.plan_keys()[current])
    assert issued["name"] == f"{KEY_NAME}-{token}"
    assert issued["enabled"] is True
    # The stack's cost and compliance tags (G4), marked as made by the rotation.
    assert issued["tags"] == {
        **STACK_TAGS,
        "Name": f"{KEY_NAME}-{token}",
        "ManagedBy": MANAGED_BY_ROTATION,
        ROTATION_OF_TAG: KEY_NAME,
    }
    assert stack.key(stack.first_key_id)["enabled"] is True


def test_k_turning_rotation_on_only_tests_the_current_key(stack):
    """`up` turns rotation on without rotating (rotate_immediately off): Secrets Manager then
    runs testSecret alone, on a pending copy of the current value, and nothing changes."""
    stack.secrets.rotate_secret(
        SecretId=stack.secret_arn,
        RotationLambdaARN=stack.function_arn,
        RotationRules={"AutomaticallyAfterDays": 90},
        RotateImmediately=False,
    )

    assert stack.steps == ["testSecret"]
    assert stack.value(CURRENT) == FIRST_VALUE
    assert set(stack.plan_keys()) == {FIRST_VALUE}
    assert stack.gateway.get_api_keys(nameQuery=f"{KEY_NAME}-")["items"] == []


def test_k_second_rotation_disables_the_first_key_and_keeps_it(stack):
    stack.rotate()
    first_rotation = stack.value(CURRENT)
    stack.rotate()

    current = stack.value(CURRENT)
    assert stack.value(PREVIOUS) == first_rotation
    plan = stack.plan_keys()
    assert set(plan) == {FIRST_VALUE, first_rotation, current}
    # Disabled, not deleted: its resource is in the stack, which ignores `enabled`.
    assert stack.key(stack.first_key_id)["enabled"] is False
    assert stack.key(plan[first_rotation])["enabled"] is True
    assert stack.key(plan[current])["enabled"] is True


def test_k_third_rotation_deletes_the_key_before_the_previous(stack):
    stack.rotate()
    oldest = stack.plan_keys()[stack.value(CURRENT)]
    stack.rotate()
    previous = stack.value(CURRENT)
    stack.rotate()

    assert stack.key(oldest) is None
    assert set(stack.plan_keys()) == {FIRST_VALUE, previous, stack.value(CURRENT)}
    assert stack.value(PREVIOUS) == previous
    assert stack.key(stack.first_key_id)["enabled"] is False


def test_k_every_step_invoked_twice_makes_one_version_and_one_key(stack):
    """Secrets Manager may invoke any step again: create stores AWSPENDING once, set issues
    one key, test passes again, a repeated finish finds the version current."""
    stack.repeat = 2
    token = stack.rotate()

    assert stack.steps == [step for step in api_key_steps() for _ in range(2)]
    assert stack.stages()[token] == [PENDING, CURRENT]
    assert len(stack.stages()) == 2
    named = stack.gateway.get_api_keys(nameQuery=f"{KEY_NAME}-{token}")["items"]
    assert len(named) == 1
    assert set(stack.plan_keys()) == {FIRST_VALUE, stack.value(CURRENT)}


def api_key_steps() -> list[str]:
    return ["createSecret", "setSecret", "testSecret", "finishSecret"]


def test_k_set_adds_the_key_an_interrupted_set_created(stack):
    """A setSecret that created its key and failed before adding it to the plan: the retry
    finds the key by its name and adds it, instead of making a second one."""

    def created_not_added(token: str) -> None:
        pending = stack.pending(token)
        stack.gateway.create_api_key(name=f"{KEY_NAME}-{token}", value=pending, enabled=True)

    stack.before_step["setSecret"] = created_not_added
    token = stack.rotate()

    named = stack.gateway.get_api_keys(nameQuery=f"{KEY_NAME}-{token}")["items"]
    assert [key["id"] for key in named] == [stack.plan_keys()[stack.value(CURRENT)]]


def test_k_a_disabled_pending_key_fails_the_test_and_nothing_moves(stack):
    def disable_pending(token: str) -> None:
        pending = stack.pending(token)
        stack.gateway.update_api_key(
            apiKey=stack.plan_keys()[pending],
            patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
        )

    stack.before_step["testSecret"] = disable_pending
    with pytest.raises(RotationError, match=r"the pending API key \w+ is disabled"):
        stack.rotate()

    assert stack.value(CURRENT) == FIRST_VALUE
    assert "finishSecret" not in stack.steps


def test_k_a_deleted_usage_plan_fails_the_rotation_with_no_stage_moved(stack):
    stack.before_step["setSecret"] = lambda _token: stack.gateway.delete_usage_plan(
        usagePlanId=stack.plan_id
    )
    before = stack.stages()

    with pytest.raises(RotationError, match=rf"usage plan {stack.plan_id} not found"):
        stack.rotate()

    stages = stack.stages()
    assert stack.value(CURRENT) == FIRST_VALUE
    assert {v: labels for v, labels in stages.items() if v in before} == before
    (token,) = stages.keys() - before.keys()
    assert stages[token] == [PENDING]
    assert stack.steps == ["createSecret"]
    assert stack.key(stack.first_key_id)["enabled"] is True
    assert stack.gateway.get_api_keys(nameQuery=f"{KEY_NAME}-")["items"] == []


def test_k_retire_refuses_when_the_current_key_left_the_plan(stack):
    """Retiring then would leave the API with no working key: nothing is cut off."""
    stack.rotate()
    stack.rotate()
    kept = stack.plan_keys()

    def remove_pending(token: str) -> None:
        pending = stack.pending(token)
        stack.gateway.delete_usage_plan_key(
            usagePlanId=stack.plan_id, keyId=stack.plan_keys()[pending]
        )

    stack.before_step["finishSecret"] = remove_pending
    with pytest.raises(RotationError, match="current API key is not in the usage plan"):
        stack.rotate()

    for key_id in kept.values():
        assert stack.key(key_id) is not None


def test_k_keys_others_put_into_the_plan_are_left_alone(stack):
    partner = stack.add_key("partner-key", "P" * API_KEY_LENGTH)
    for _ in range(3):
        stack.rotate()

    assert stack.key(partner)["enabled"] is True
    assert "P" * API_KEY_LENGTH in stack.plan_keys()


def test_k_another_stacks_keys_sharing_the_name_prefix_are_left_alone(stack):
    """`{name}-eu`'s rotation keys start with `{name}-` too; only the tag tells them apart."""
    other = stack.add_key(
        f"{KEY_NAME}-eu-{uuid.uuid4()}", "O" * API_KEY_LENGTH, {ROTATION_OF_TAG: f"{KEY_NAME}-eu"}
    )
    for _ in range(3):
        stack.rotate()
    handler({"tf": {"action": "delete", "prev_input": {}}}, None)

    assert stack.key(other)["enabled"] is True


def test_g3_the_stack_lifecycle_delete_removes_every_rotation_made_key(stack):
    """`pulumi destroy` does not know the rotation's keys: the Invocation's delete does."""
    stack.rotate()
    stack.rotate()
    issued = [key_id for value, key_id in stack.plan_keys().items() if value != FIRST_VALUE]

    assert handler({"tf": {"action": "update", "prev_input": {}}}, None) == {"deleted": []}
    deleted = handler({"tf": {"action": "delete", "prev_input": {}}}, None)

    assert sorted(deleted["deleted"]) == sorted(issued)
    assert all(stack.key(key_id) is None for key_id in issued)
    # The first key is the stack's own resource: `pulumi destroy` deletes it.
    assert stack.key(stack.first_key_id) is not None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("createSecret", "not a rotation event: not an object"),
        ({"Step": "createSecret", "ClientRequestToken": "t"}, "missing 'SecretId'"),
        ({"SecretId": "s", "ClientRequestToken": "t", "Step": "dropSecret"}, "unknown rotation"),
    ],
)
def test_k_a_bad_event_is_refused(stack, event, message):
    with pytest.raises(RotationError, match=message):
        handler(event, None)


def test_k_another_secret_is_refused_by_name_or_arn(stack):
    other = stack.secrets.create_secret(Name="another-secret", SecretString="x")["ARN"]
    for secret_id in (other, "another-secret"):
        event = {"SecretId": secret_id, "ClientRequestToken": str(uuid.uuid4())}
        with pytest.raises(RotationError, match="rotates only the API key secret"):
            handler({**event, "Step": "createSecret"}, None)
    assert len(stack.secrets.describe_secret(SecretId=other)["VersionIdsToStages"]) == 1


def test_k_a_secret_without_rotation_is_refused(stack):
    event = {"SecretId": stack.secret_arn, "ClientRequestToken": str(uuid.uuid4())}
    with pytest.raises(RotationError, match="rotation is not enabled"):
        handler({**event, "Step": "createSecret"}, None)
    assert stack.value(CURRENT) == FIRST_VALUE


def test_k_no_key_value_is_ever_logged(stack, capsys):
    for _ in range(3):
        stack.rotate()
    values = {FIRST_VALUE, stack.value(CURRENT), stack.value(PREVIOUS)}

    logged = capsys.readouterr().out
    assert "retired key deleted" in logged and "retired key disabled" in logged
    assert [value for value in values if value in logged] == []


def test_k_new_values_are_letters_and_digits_of_the_stacks_length():
    values = {new_key_value() for _ in range(50)}
    assert len(values) == 50
    alphabet = set(string.ascii_letters + string.digits)
    assert all(len(value) == API_KEY_LENGTH and set(value) <= alphabet for value in values)


@pytest.mark.parametrize("missing", sorted(API_KEY_ROTATION_ENVIRONMENT.required))
def test_k_settings_name_the_missing_variable(missing):
    environ = dict(MINIMAL)
    with pytest.raises(SettingsError) as raised:
        load_settings({name: value for name, value in environ.items() if name != missing})
    assert raised.value.variable == missing


def test_k_settings_refuse_an_unknown_log_level():
    environ = {**MINIMAL, EnvVar.LOG_LEVEL: "LOUD"}
    with pytest.raises(SettingsError) as raised:
        load_settings(environ)
    assert raised.value.variable == EnvVar.LOG_LEVEL


def test_h4_the_clients_are_bounded():
    settings = load_settings(MINIMAL)
    config = api_key._client("apigateway", settings).meta.config
    assert (config.connect_timeout, config.read_timeout) == (3, 10)
    assert config.retries["total_max_attempts"] == 3


class PagedGateway:
    """Two pages of usage plan keys, as API Gateway returns a long list."""

    def __init__(self) -> None:
        self.positions: list[str | None] = []

    def get_usage_plan_keys(self, **arguments: Any) -> dict[str, Any]:
        self.positions.append(arguments.get("position"))
        if arguments.get("position") is None:
            return {"items": [{"id": "a", "value": "1"}], "position": "next"}
        return {"items": [{"id": "b", "value": "2"}]}


def test_k_every_page_of_the_plan_is_read():
    gateway = PagedGateway()
    keys = ApiGatewayKeys(gateway, load_settings(MINIMAL))
    assert [member["id"] for member in keys.plan_members()] == ["a", "b"]
    assert gateway.positions == [None, "next"]
