"""The one way to rotate a secret the stack generates: a rotation function of its own.

Secrets Manager invokes the function four times per rotation (services/rotation/protocol.py).
Here are the pieces every such rotation needs (PITFALLS 148): the function in the VPC
(`components.functions.vpc_function`, the caller's handler, environment, grants and
placement) with the rotation actions on exactly its secret, the invoke permission for Secrets
Manager scoped to that secret, and the schedule. `components.secrets.stored_secret` with
`rotated=True` stores the secret so that the next `pulumi up` never undoes a rotation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.functions import VpcFunctionArgs, vpc_function
from components.iam import Grant, attach_grants, decrypt_via
from components.observability import metric_alarm

ROTATION_PRINCIPAL = "secretsmanager.amazonaws.com"
ROTATION_SECRET_ACTIONS = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
)
# Secrets Manager's RotationRules.AutomaticallyAfterDays.
ROTATION_DAYS_RANGE = (1, 1000)


@dataclass(frozen=True, kw_only=True)
class SecretRotationArgs:
    """A secret and the function that rotates it."""

    secret_arn: pulumi.Input[str]
    """The secret to rotate (required); the function may manage exactly this one."""
    secret_key_arn: pulumi.Input[str]
    """The secret's CMK (required): rotation reads and writes its versions."""
    function: VpcFunctionArgs
    """The rotation function: handler, environment, placement and the caller's own grants
    (what it needs on the credential's owner); the rotation grants are added here."""
    rotation_days: int
    """Days between rotations (required), 1-1000."""
    alarm_topic_arn: pulumi.Input[str]
    """Where a failed rotation step is reported (required)."""
    random_password: bool = False
    """Whether the function asks Secrets Manager for random values (GetRandomPassword);
    default False."""

    def validate(self) -> None:
        low, high = ROTATION_DAYS_RANGE
        if not low <= self.rotation_days <= high:
            raise ValueError(
                f"SecretRotationArgs: rotation_days={self.rotation_days}: allowed {low}..{high}"
            )


@dataclass(frozen=True)
class SecretRotator:
    """What `rotation_function` built."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    permission: aws.lambda_.Permission
    rotation: aws.secretsmanager.SecretRotation
    failures: aws.cloudwatch.MetricAlarm


def rotation_grants(args: SecretRotationArgs) -> list[Grant]:
    """The rotation protocol's actions on exactly `args.secret_arn`, its key only through
    Secrets Manager for that secret, and GetRandomPassword when used."""
    ctx = args.function.context
    use_key = decrypt_via(
        "UseRotatedSecretKey",
        args.secret_key_arn,
        "secretsmanager",
        ctx,
        # Secrets Manager puts the secret's ARN in the encryption context of its data keys.
        also={"kms:EncryptionContext:SecretARN": args.secret_arn},
    )
    grants = [
        Grant("RotateOneSecret", ROTATION_SECRET_ACTIONS, (args.secret_arn,)),
        dataclasses.replace(use_key, actions=("kms:Decrypt", "kms:GenerateDataKey")),
    ]
    if args.random_password:
        # GetRandomPassword acts on no resource: IAM accepts only "*" for it.
        grants.append(Grant("RandomValues", ("secretsmanager:GetRandomPassword",), ("*",)))
    return grants


def rotation_function(
    name: str, args: SecretRotationArgs, parent: pulumi.Resource
) -> SecretRotator:
    """The rotation function of one secret, Secrets Manager's permission to invoke it for that
    secret only, and the schedule."""
    args.validate()

    def grant_rotation(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        return attach_grants(resource_name, role, rotation_grants(args), parent=parent)

    function_args = dataclasses.replace(
        args.function, access_grants={**args.function.access_grants, "rotation": grant_rotation}
    )
    # The function waits for every policy of its role, so whatever invokes it waits too.
    built = vpc_function(name, function_args, parent)
    permission = aws.lambda_.Permission(
        f"{name}-invoke",
        action="lambda:InvokeFunction",
        function=built.function.name,
        principal=ROTATION_PRINCIPAL,
        # This function rotates this one secret: no other secret's rotation may invoke it.
        source_arn=args.secret_arn,
        source_account=args.function.context.account_id,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    rotation = aws.secretsmanager.SecretRotation(
        f"{name}-schedule",
        secret_id=args.secret_arn,
        rotation_lambda_arn=built.function.arn,
        rotation_rules={"automatically_after_days": args.rotation_days},
        # Not during `pulumi up`: the value it just wrote is fresh, and a rotation racing the
        # deployment (the owner still being created or modified) would fail or be undone.
        # Secrets Manager still invokes the function's testSecret step once when rotation is
        # turned on (PITFALLS 148), so a function that cannot work fails the deployment.
        rotate_immediately=False,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[permission]),
    )
    failures = metric_alarm(
        f"{name}-failed-alarm",
        alarm_name=args.function.namer.name(f"{args.function.stem}-failed"),
        description=(
            f"A step of the {args.function.stem} function failed: the secret keeps its current "
            "value and Secrets Manager tries the rotation again; its log group says why."
        ),
        namespace="AWS/Lambda",
        metric_name="Errors",
        dimensions={"FunctionName": built.function.name},
        statistic="Sum",
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1,
        topic_arn=args.alarm_topic_arn,
        parent=parent,
        # A rotation is four invocations minutes apart, days apart from the next one.
        period=3600,
    )
    return SecretRotator(built.function, built.role, permission, rotation, failures)
