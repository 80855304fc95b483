"""The one way to run platform code on Lambda inside the VPC.

Used by the API backend and the schema-migration function: each gets its own role (runtime
grants plus the grant helpers of the tiers it uses), an encrypted log group created before
the function, an environment encrypted with the Secrets Manager key, X-Ray tracing, and the
private app subnets with the caller's security group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

from components.firewall import RoleSecurityGroup
from components.iam import Grant, attach_grants, decrypt_via, role_arn, service_role
from components.kms import AwsContext
from components.logs import encrypted_log_group
from components.naming import NameKind, Namer, check_name, name_tag
from components.packaging import TARGET_ARCHITECTURE, TARGET_PYTHON
from services.contract import DEFAULT_LOG_LEVEL, LOG_LEVELS

RUNTIME = f"python{TARGET_PYTHON}"
# Lambda's JSON log levels are named differently from Python's.
LAMBDA_LOG_LEVEL = dict(zip(LOG_LEVELS, ("DEBUG", "INFO", "WARN", "ERROR", "FATAL"), strict=True))

# Lambda needs these on "*": ENI actions have no resource-level form it accepts for the
# execution role (it validates the role before creating the function), and X-Ray's
# PutTraceSegments/PutTelemetryRecords support no resource ARNs at all.
VPC_NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")

GrantFn = Callable[[str, aws.iam.Role], "aws.iam.RolePolicy | None"]


@dataclass(frozen=True, kw_only=True)
class VpcFunctionArgs:
    """One VPC Lambda function of the platform (its callers validate the numbers)."""

    stem: str
    """Physical name stem: `{prefix}-{stem}-{suffix}`; its role is `{stem}-lambda`."""
    description: str
    handler: str
    code_path: str
    code_sha256: str
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group: RoleSecurityGroup
    environment: Mapping[str, pulumi.Input[str]]
    namer: Namer
    context: AwsContext
    logs_key_arn: pulumi.Input[str]
    environment_key_arn: pulumi.Input[str]
    log_retention_days: int
    log_level: str = DEFAULT_LOG_LEVEL
    memory_mb: int = 256
    timeout_seconds: int = 15
    reserved_concurrency: int = -1
    access_grants: Mapping[str, GrantFn] = field(default_factory=dict)
    start_after: Sequence[pulumi.Resource] = ()


def function_role_name(namer: Namer, stem: str) -> str:
    """The physical name of the role `vpc_function` gives the function of `stem`."""
    return namer.name(f"{stem}-lambda", NameKind.IAM_ROLE)


def function_role_arn(ctx: AwsContext, namer: Namer, stem: str) -> pulumi.Output[str]:
    """The ARN that role has, known before it exists: a resource policy built earlier (a
    secret's readers) may name it without waiting for, or cycling through, the function."""
    return role_arn(ctx, function_role_name(namer, stem))


class AppFunctionSource(Protocol):
    """The args of an app-tier component that runs its code as a VPC function."""

    namer: Namer
    context: AwsContext
    subnet_ids: Sequence[pulumi.Input[str]]
    code_path: str
    code_sha256: str
    logs_key_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]
    log_retention_days: int

    def open_flows(self, group: RoleSecurityGroup) -> list[pulumi.Resource]: ...


def app_function_args(
    args: AppFunctionSource,
    group: RoleSecurityGroup,
    *,
    start_after: Sequence[pulumi.Resource] = (),
    **own: Any,
) -> VpcFunctionArgs:
    """`VpcFunctionArgs` for a component's function: its code, placement, keys and log
    retention from the component's args, its network flows opened first (and waited for),
    and what is its own (`stem`, `handler`, `environment`, sizes, grants) from `own`."""
    return VpcFunctionArgs(
        code_path=args.code_path,
        code_sha256=args.code_sha256,
        subnet_ids=args.subnet_ids,
        security_group=group,
        namer=args.namer,
        context=args.context,
        logs_key_arn=args.logs_key_arn,
        # The environment is encrypted with the Secrets Manager key, like the secrets it names.
        environment_key_arn=args.secrets_key_arn,
        log_retention_days=args.log_retention_days,
        start_after=[*start_after, *args.open_flows(group)],
        **own,
    )


@dataclass(frozen=True)
class VpcFunction:
    function: aws.lambda_.Function
    role: aws.iam.Role


def vpc_function(name: str, args: VpcFunctionArgs, parent: pulumi.Resource) -> VpcFunction:
    function_name = args.namer.name(args.stem, NameKind.LAMBDA_FUNCTION)
    log_group_name = f"/aws/lambda/{function_name}"
    check_name(log_group_name, NameKind.LOG_GROUP)
    # Created first and deleted last, so Lambda never makes its own unencrypted group.
    log_group = encrypted_log_group(
        f"{name}-function-logs",
        name=log_group_name,
        kms_key_arn=args.logs_key_arn,
        retention_days=args.log_retention_days,
        parent=parent,
    )
    role = service_role(
        f"{name}-role",
        role=f"{args.stem}-lambda",
        service="lambda.amazonaws.com",
        ctx=args.context,
        namer=args.namer,
        parent=parent,
    )
    policies: list[pulumi.Resource] = [
        attach_grants(
            f"{name}-runtime-policy",
            role,
            runtime_grants(args, log_group, function_name),
            parent=parent,
        )
    ]
    for label, grant in sorted(args.access_grants.items()):
        policy = grant(f"{name}-{label}", role)
        if policy is not None:
            policies.append(policy)
    function = aws.lambda_.Function(
        f"{name}-function",
        name=function_name,
        description=args.description,
        role=role.arn,
        runtime=RUNTIME,
        handler=args.handler,
        architectures=[TARGET_ARCHITECTURE],
        code=pulumi.FileArchive(args.code_path),
        source_code_hash=args.code_sha256,
        memory_size=args.memory_mb,
        timeout=args.timeout_seconds,
        reserved_concurrent_executions=(
            None if args.reserved_concurrency == -1 else args.reserved_concurrency
        ),
        vpc_config={
            "subnet_ids": list(args.subnet_ids),
            "security_group_ids": [args.security_group.id],
        },
        environment={"variables": dict(args.environment)},
        kms_key_arn=args.environment_key_arn,
        logging_config={
            "log_format": "JSON",
            "log_group": log_group.name,
            "application_log_level": LAMBDA_LOG_LEVEL[args.log_level],
            "system_log_level": "WARN",
        },
        tracing_config={"mode": "Active"},
        tags=name_tag(function_name),
        # Role policies first: a VPC function is refused when its role cannot yet create
        # network interfaces.
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=[log_group, *policies, *args.start_after]
        ),
    )
    return VpcFunction(function, role)


def runtime_grants(
    args: VpcFunctionArgs, log_group: aws.cloudwatch.LogGroup, function_name: str
) -> list[Grant]:
    ctx = args.context
    # Built, not read from the function: the function waits for this policy.
    function_arn = pulumi.Output.concat(
        "arn:",
        ctx.partition,
        ":lambda:",
        ctx.region,
        ":",
        ctx.account_id,
        ":function:",
        function_name,
    )
    return [
        Grant(
            "WriteOwnLogGroup",
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            (pulumi.Output.concat(log_group.arn, ":*"),),
        ),
        # Lambda decrypts the environment on this function's behalf, with its ARN as the
        # encryption context.
        decrypt_via(
            "DecryptOwnEnvironment",
            args.environment_key_arn,
            "lambda",
            ctx,
            also={"kms:EncryptionContext:aws:lambda:FunctionArn": function_arn},
        ),
        Grant("ManageVpcNetworkInterfaces", VPC_NETWORK_INTERFACE_ACTIONS, ("*",)),
        Grant("WriteTraces", XRAY_ACTIONS, ("*",)),
    ]
