"""Secrets Manager's four-step rotation protocol, once, for every secret the stack rotates.

Secrets Manager invokes a rotation function four times per rotation, each with the secret's
ARN, the new version's id (`ClientRequestToken`) and the step: `createSecret` stores the new
value as AWSPENDING, `setSecret` makes the credential's owner accept it, `testSecret` proves
it works, `finishSecret` moves AWSCURRENT to it (the old value becomes AWSPREVIOUS). A step
may be invoked again after a failure, so every step is idempotent. What differs per secret
(how a value is made, set, tested and the old one retired) is a `Credential`.

Source: https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")

logger = logging.getLogger(__name__)


class RotationError(RuntimeError):
    """The rotation cannot go on; Secrets Manager marks it failed and retries it later."""


class Credential(Protocol):
    """How one kind of secret is rotated. Values are the secrets' strings."""

    def new_value(self) -> str:
        """A fresh value for `createSecret`."""
        ...

    def set(self, pending: str, current: str) -> None:
        """Make the credential's owner accept `pending` while `current` keeps working."""
        ...

    def test(self, pending: str) -> None:
        """Raise `RotationError` unless `pending` works."""
        ...

    def retire(self, current: str, previous: str | None) -> None:
        """After `finishSecret`: retire whatever is older than `previous` (the overlap)."""
        ...


@dataclass(frozen=True)
class RotationEvent:
    secret_id: str
    token: str
    step: str

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> RotationEvent:
        try:
            parsed = cls(str(event["SecretId"]), str(event["ClientRequestToken"]), event["Step"])
        except (KeyError, TypeError) as error:
            raise RotationError(f"not a rotation event: missing {error}") from None
        if parsed.step not in STEPS:
            raise RotationError(f"unknown rotation step {parsed.step!r}")
        return parsed


def rotate(event: Mapping[str, Any], secrets: Any, credential: Credential) -> None:
    """Carry out one step of a rotation (the handler of every rotation function)."""
    request = RotationEvent.parse(event)
    stages = _version_stages(secrets, request)
    if CURRENT in stages:
        logger.info("version already current", extra={"step": request.step})
        return
    if PENDING not in stages:
        raise RotationError("the rotation's version is not staged AWSPENDING")
    logger.info("rotation step", extra={"step": request.step})
    if request.step == "createSecret":
        _create(secrets, request, credential)
    elif request.step == "setSecret":
        credential.set(_value(secrets, request, PENDING), _value(secrets, request, CURRENT))
    elif request.step == "testSecret":
        credential.test(_value(secrets, request, PENDING))
    else:
        _finish(secrets, request, credential)


def _version_stages(secrets: Any, request: RotationEvent) -> list[str]:
    metadata = secrets.describe_secret(SecretId=request.secret_id)
    if not metadata.get("RotationEnabled"):
        raise RotationError("rotation is not enabled on the secret")
    versions = metadata.get("VersionIdsToStages", {})
    if request.token not in versions:
        raise RotationError("the rotation's version has no stage on the secret")
    return list(versions[request.token])


def _value(secrets: Any, request: RotationEvent, stage: str) -> str:
    arguments = {"SecretId": request.secret_id, "VersionStage": stage}
    if stage == PENDING:
        arguments["VersionId"] = request.token
    return secrets.get_secret_value(**arguments)["SecretString"]


def _create(secrets: Any, request: RotationEvent, credential: Credential) -> None:
    _value(secrets, request, CURRENT)  # the secret must have a current value to rotate from
    try:
        _value(secrets, request, PENDING)
        return  # created by an earlier invocation of this step
    except secrets.exceptions.ResourceNotFoundException:
        pass
    secrets.put_secret_value(
        SecretId=request.secret_id,
        ClientRequestToken=request.token,
        SecretString=credential.new_value(),
        VersionStages=[PENDING],
    )


def _finish(secrets: Any, request: RotationEvent, credential: Credential) -> None:
    metadata = secrets.describe_secret(SecretId=request.secret_id)
    current_version = next(
        version for version, stages in metadata["VersionIdsToStages"].items() if CURRENT in stages
    )
    secrets.update_secret_version_stage(
        SecretId=request.secret_id,
        VersionStage=CURRENT,
        MoveToVersionId=request.token,
        RemoveFromVersionId=current_version,
    )
    current = _value(secrets, request, CURRENT)
    try:
        previous: str | None = _value(secrets, request, PREVIOUS)
    except secrets.exceptions.ResourceNotFoundException:
        previous = None
    credential.retire(current, previous)
