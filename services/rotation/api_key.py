"""Rotation of the API key (issue 14, item 7): a new key on a schedule, with an overlap.

Secrets Manager runs the four steps of `services.rotation.protocol` for the `api-key` secret:

* `createSecret` stores a fresh value (`API_KEY_LENGTH` letters and digits) as AWSPENDING;
* `setSecret` creates an API Gateway key with that value, named `{key name}-{version id}` so
  a repeated step finds it instead of making a second, tagged as rotation-made, and adds it
  to the usage plan;
* `testSecret` checks that the key is in the usage plan and enabled;
* `finishSecret` makes it AWSCURRENT (the old value becomes AWSPREVIOUS) and retires every
  key of this secret that is neither: rotation-made keys are deleted, the key `pulumi up`
  made first (`API_KEY_ID`) is disabled, never deleted, so its resource stays in the state
  and the program ignores its `enabled` flag. Keys anyone else put into the usage plan are
  left alone: a usage plan is where operators add their partners' keys, and the rotation
  retires only what it issued.

So a key works from the rotation that made it until the rotation after next: a client that
reads the secret at least once per rotation period never holds a retired key.

The same function cleans up when the stack is destroyed: the stack invokes it with
`{"tf": {"action": "delete"}}` (a `lambda.Invocation` with lifecycle scope CRUD), and it
deletes every key the rotations made, which `pulumi destroy` does not know of.

Key values are never logged; keys are named in logs by id.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.aws import AWS_ERRORS, aws_client
from services.common.logs import configure_logging
from services.common.settings import SettingsError
from services.contract import (
    API_KEY_LENGTH,
    DEFAULT_LOG_LEVEL,
    LOG_LEVELS,
    EnvVar,
)
from services.rotation.protocol import RotationError, RotationEvent, rotate

log = logging.getLogger(__name__)

VALUE_ALPHABET = string.ascii_letters + string.digits
ROTATION_OF_TAG = "RotationOf"
"""Tag naming the stack's key (`API_KEY_NAME`) on every key a rotation made: what marks a key
as this rotation's to delete."""
MANAGED_BY_TAG = "ManagedBy"
MANAGED_BY_ROTATION = "secrets-manager-rotation"
LIFECYCLE_KEY = "tf"
"""Where a `lambda.Invocation` with lifecycle scope CRUD puts its action."""
PAGE_SIZE = 500  # API Gateway's largest page of keys
# Secrets Manager gives each step a fresh invocation: a few quick attempts per call, not the
# minutes a retrying client could spend while the step's function times out.
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ApiKeyRotationSettings:
    """What the rotation function is told by the stack (`API_KEY_ROTATION_ENVIRONMENT`)."""

    secret_arn: str
    """The one secret this function rotates: events for any other are refused."""
    key_name: str
    """The name of the key `pulumi up` made; rotation-made keys are `{key_name}-{version}`."""
    first_key_id: str
    """The id of that key: disabled, never deleted, when retired; its tags are copied."""
    usage_plan_id: str
    log_level: str = DEFAULT_LOG_LEVEL
    region: str | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> ApiKeyRotationSettings:
    """The settings from the environment; `SettingsError` names the first bad variable."""
    env = os.environ if environ is None else environ

    def required(name: str) -> str:
        value = (env.get(name) or "").strip()
        if not value:
            raise SettingsError(name, "is required")
        return value

    secret_arn = required(EnvVar.API_KEY_SECRET_ARN)
    key_name = required(EnvVar.API_KEY_NAME)
    first_key_id = required(EnvVar.API_KEY_ID)
    usage_plan_id = required(EnvVar.API_USAGE_PLAN_ID)
    log_level = env.get(EnvVar.LOG_LEVEL) or DEFAULT_LOG_LEVEL
    if log_level not in LOG_LEVELS:
        raise SettingsError(EnvVar.LOG_LEVEL, "must be one of " + ", ".join(LOG_LEVELS))
    region = env.get(EnvVar.AWS_REGION) or env.get(EnvVar.AWS_DEFAULT_REGION) or None
    return ApiKeyRotationSettings(
        secret_arn, key_name, first_key_id, usage_plan_id, log_level, region
    )


def new_key_value() -> str:
    """`API_KEY_LENGTH` letters and digits from the operating system's CSPRNG (about 238
    bits): no call to Secrets Manager's GetRandomPassword, so no permission on "*" for it."""
    return "".join(secrets.choice(VALUE_ALPHABET) for _ in range(API_KEY_LENGTH))


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(error).__name__))


class ApiGatewayKeys:
    """The keys of one stack's API key secret in API Gateway: its usage plan's members, the
    keys its rotations made, and how a key is retired. AWS errors become `RotationError`s
    naming the operation and the error code."""

    def __init__(self, gateway: Any, settings: ApiKeyRotationSettings) -> None:
        self._gateway = gateway
        self.settings = settings

    def plan_members(self) -> Iterator[dict[str, Any]]:
        """The usage plan's keys with their values (so no key is read with includeValue)."""
        plan_id = self.settings.usage_plan_id
        yield from self._pages(
            "GetUsagePlanKeys",
            lambda **page: self._gateway.get_usage_plan_keys(
                usagePlanId=plan_id, limit=PAGE_SIZE, **page
            ),
        )

    def require_plan(self) -> None:
        """Raise a clear `RotationError` when the usage plan is gone."""
        plan_id = self.settings.usage_plan_id
        self.call("GetUsagePlan", lambda: self._gateway.get_usage_plan(usagePlanId=plan_id))

    def plan_member(self, value: str) -> dict[str, Any] | None:
        return next((m for m in self.plan_members() if m.get("value") == value), None)

    def in_plan(self, key_id: str) -> None:
        """Raise unless the key is a member of the usage plan."""
        plan_id = self.settings.usage_plan_id
        self.call(
            "GetUsagePlanKey",
            lambda: self._gateway.get_usage_plan_key(usagePlanId=plan_id, keyId=key_id),
        )

    def key(self, key_id: str) -> dict[str, Any]:
        """The key (without its value); empty when there is none."""
        return self.call(
            "GetApiKey",
            lambda: self._gateway.get_api_key(apiKey=key_id),
            tolerate=("NotFoundException",),
        )

    def named(self, name: str) -> dict[str, Any] | None:
        return next((key for key in self._keys_named(name) if key.get("name") == name), None)

    def rotation_keys(self) -> list[dict[str, Any]]:
        """Every key a rotation of this secret made, in the usage plan or not."""
        key_name = self.settings.key_name
        prefix = f"{key_name}-"
        return [
            key
            for key in self._keys_named(prefix)
            if key.get("name", "").startswith(prefix)
            and key.get("tags", {}).get(ROTATION_OF_TAG) == key_name
        ]

    def create(self, name: str, value: str, description: str) -> str:
        """A new enabled key with the first key's tags (the stack's cost and compliance tags,
        G4), marked as rotation-made; its id."""
        inherited = self.key(self.settings.first_key_id).get("tags", {})
        tags = {
            **{k: v for k, v in inherited.items() if not k.startswith("aws:")},
            "Name": name,
            MANAGED_BY_TAG: MANAGED_BY_ROTATION,
            ROTATION_OF_TAG: self.settings.key_name,
        }
        key = self.call(
            "CreateApiKey",
            lambda: self._gateway.create_api_key(
                name=name, description=description, enabled=True, value=value, tags=tags
            ),
        )
        log.info("pending key created", extra={"key_id": key["id"]})
        return str(key["id"])

    def add_to_plan(self, key_id: str) -> None:
        self.call(
            "CreateUsagePlanKey",
            lambda: self._gateway.create_usage_plan_key(
                usagePlanId=self.settings.usage_plan_id, keyId=key_id, keyType="API_KEY"
            ),
            tolerate=("ConflictException",),  # added by an earlier invocation
        )
        log.info("pending key added to the usage plan", extra={"key_id": key_id})

    def delete(self, key_id: str) -> None:
        """Take a rotation-made key out of the usage plan, then delete it."""
        plan_id = self.settings.usage_plan_id
        self.call(
            "DeleteUsagePlanKey",
            lambda: self._gateway.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id),
            tolerate=("NotFoundException",),  # never added, or taken out by an earlier try
        )
        self.call(
            "DeleteApiKey",
            lambda: self._gateway.delete_api_key(apiKey=key_id),
            tolerate=("NotFoundException",),
        )
        log.info("retired key deleted", extra={"key_id": key_id})

    def disable(self, key_id: str) -> None:
        """Disable a key that must stay (the first key: its resource is in the stack)."""
        if not self.key(key_id).get("enabled"):
            return
        self.call(
            "UpdateApiKey",
            lambda: self._gateway.update_api_key(
                apiKey=key_id,
                patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
            ),
        )
        log.info("retired key disabled", extra={"key_id": key_id})

    def delete_rotation_keys(self) -> list[str]:
        """Delete every key a rotation of this secret made (the stack is being destroyed)."""
        deleted = [key["id"] for key in self.rotation_keys()]
        for key_id in deleted:
            self.delete(key_id)
        return deleted

    def call(self, operation: str, call: Any, tolerate: tuple[str, ...] = ()) -> Any:
        """`call()`; a `tolerate`d error code gives an empty answer."""
        try:
            return call()
        except AWS_ERRORS as error:
            code = _error_code(error)
            if code in tolerate:
                return {}
            if operation in ("GetUsagePlan", "GetUsagePlanKeys") and code == "NotFoundException":
                plan_id = self.settings.usage_plan_id
                raise RotationError(f"usage plan {plan_id} not found") from None
            raise RotationError(f"API Gateway {operation} failed: {code}") from None

    def _keys_named(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Keys whose name starts with `prefix` (API Gateway's nameQuery), without values."""
        yield from self._pages(
            "GetApiKeys",
            lambda **page: self._gateway.get_api_keys(
                nameQuery=prefix, includeValues=False, limit=PAGE_SIZE, **page
            ),
        )

    def _pages(self, operation: str, call: Any) -> Iterator[dict[str, Any]]:
        page: dict[str, str] = {}
        while True:
            response = self.call(operation, lambda page=page: call(**page))
            yield from response.get("items", [])
            if not response.get("position"):
                return
            page = {"position": response["position"]}


class ApiKeyCredential:
    """The API key as a `services.rotation.protocol.Credential`, for the rotation `token`."""

    def __init__(self, keys: ApiGatewayKeys, token: str) -> None:
        self._keys = keys
        self._token = token

    @property
    def key_name(self) -> str:
        """The name of the key this rotation issues: findable again by a repeated step."""
        return f"{self._keys.settings.key_name}-{self._token}"

    def new_value(self) -> str:
        return new_key_value()

    def set(self, pending: str, current: str) -> None:
        """Issue the pending key into the usage plan; the current key is not touched."""
        self._keys.require_plan()
        if (member := self._keys.plan_member(pending)) is not None:
            log.info("pending key already in the usage plan", extra={"key_id": member["id"]})
            return
        issued = self._keys.named(self.key_name)
        key_id = (
            issued["id"]
            if issued
            else self._keys.create(
                self.key_name, pending, f"Rotation {self._token} of {self._keys.settings.key_name}"
            )
        )
        self._keys.add_to_plan(key_id)

    def test(self, pending: str) -> None:
        """The pending key is in the usage plan and enabled."""
        member = self._keys.plan_member(pending)
        if member is None:
            raise RotationError("the pending API key is not in the usage plan")
        self._keys.in_plan(member["id"])
        if not self._keys.key(member["id"]).get("enabled"):
            raise RotationError(f"the pending API key {member['id']} is disabled")

    def retire(self, current: str, previous: str | None) -> None:
        """Cut off every key of this secret but the current and the previous one."""
        keep = {current, *([previous] if previous is not None else [])}
        members = {member["id"]: member.get("value") for member in self._keys.plan_members()}
        if current not in members.values():
            # Retiring the others now would leave the API without a working key.
            raise RotationError("the current API key is not in the usage plan; nothing retired")
        kept = {key_id for key_id, value in members.items() if value in keep}
        for key in self._keys.rotation_keys():
            if key["id"] not in kept:
                self._keys.delete(key["id"])
        if (first := self._keys.settings.first_key_id) not in kept:
            self._keys.disable(first)


def lifecycle_action(event: Mapping[str, Any]) -> str | None:
    """The action of a stack lifecycle invocation (`create`, `update`, `delete`), if it is one."""
    lifecycle = event.get(LIFECYCLE_KEY)
    if not isinstance(lifecycle, Mapping):
        return None
    return str(lifecycle.get("action"))


def handler(event: Any, context: Any) -> dict[str, Any] | None:
    """Secrets Manager's rotation steps, or the stack's lifecycle invocation."""
    configure_logging()
    if not isinstance(event, Mapping):
        raise RotationError("not a rotation event: not an object")
    settings = load_settings()
    configure_logging(settings.log_level)
    keys = ApiGatewayKeys(_client("apigateway", settings), settings)
    if (action := lifecycle_action(event)) is not None:
        return _lifecycle(action, keys)
    request = RotationEvent.parse(event)
    secrets_client = _client("secretsmanager", settings)
    _require_own_secret(request, secrets_client, settings)
    credential = ApiKeyCredential(keys, request.token)
    try:
        rotate(event, secrets_client, credential)
    except RotationError as error:
        log.error("rotation step failed", extra={"step": request.step, "error": str(error)})
        raise
    return None


def _require_own_secret(
    request: RotationEvent, secrets_client: Any, settings: ApiKeyRotationSettings
) -> None:
    """Only the stack's API key secret is rotated here, whether named by name or ARN."""
    try:
        arn = secrets_client.describe_secret(SecretId=request.secret_id)["ARN"]
    except AWS_ERRORS as error:
        raise RotationError(f"cannot describe the secret: {_error_code(error)}") from None
    if arn != settings.secret_arn:
        raise RotationError("this function rotates only the API key secret")


def _lifecycle(action: str, keys: ApiGatewayKeys) -> dict[str, list[str]]:
    """On `delete` (the stack is being destroyed), delete the rotation-made keys."""
    if action != "delete":
        return {"deleted": []}
    deleted = keys.delete_rotation_keys()
    log.info("rotation-made keys deleted", extra={"key_ids": deleted})
    return {"deleted": deleted}


def _client(service: str, settings: ApiKeyRotationSettings) -> Any:
    return aws_client(
        service,
        region=settings.region,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_attempts=MAX_ATTEMPTS,
    )
