"""`components.rotation`: a secret's rotation function, permission and schedule (issue 14,
item 7; PITFALLS 148), and the stored secret a rotation owns. Exact inputs under mocks."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.firewall import RoleSecurityGroup
from components.functions import VpcFunctionArgs
from components.rotation import (
    SecretRotationArgs,
    rotation_function,
)
from components.secrets import DEPLOYED_STAGE, stored_secret
from offline.engine import ACCOUNT_ID, run_components
from tests.infra import expect
from tests.infra.expect import REGION, key

FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:media-thing-test-AbCdEf"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-alarms-test"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


class Owner(pulumi.ComponentResource):
    def __init__(self) -> None:
        super().__init__("media:test:Owner", "owner", None, None)


def function_args(namer, context, group: RoleSecurityGroup, **own: Any) -> VpcFunctionArgs:
    return VpcFunctionArgs(
        stem="thing-rotation",
        description="Rotates the thing",
        handler="services.rotation.thing.handler",
        code_path="build/lambda/rotation.zip",
        code_sha256="c2hh",
        subnet_ids=["subnet-app-a", "subnet-app-b"],
        security_group=group,
        environment={"THING": "yes"},
        namer=namer,
        context=context,
        logs_key_arn=key("logs"),
        environment_key_arn=key("secrets"),
        log_retention_days=30,
        **own,
    )


def build(namer, context, **overrides: Any):
    made: dict[str, Any] = {}

    def program():
        owner = Owner()
        group = RoleSecurityGroup(
            "rotation-sg",
            role="thing-rotation",
            description="rotation",
            vpc_id="vpc-test",
            namer=namer,
            parent=owner,
        )
        fields = {
            "secret_arn": SECRET_ARN,
            "secret_key_arn": key("secrets"),
            "function": function_args(namer, context, group),
            "rotation_days": 30,
            "alarm_topic_arn": TOPIC,
            **overrides,
        }
        made["rotator"] = rotation_function("thing-rotation", SecretRotationArgs(**fields), owner)

    return run_components(program, region=REGION), made


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    return build(module_namer, module_context)[0]


def test_i14_7_function_runs_in_the_given_subnets_with_the_given_group(run):
    function = run.one(FUNCTION, "thing-rotation-function").inputs
    group = run.one("aws:ec2/securityGroup:SecurityGroup", "rotation-sg")
    assert function["name"] == "media-thing-rotation-test"
    assert function["handler"] == "services.rotation.thing.handler"
    assert function["vpcConfig"] == {
        "subnetIds": ["subnet-app-a", "subnet-app-b"],
        "securityGroupIds": [group.id],
    }
    assert function["environment"] == {"variables": {"THING": "yes"}}


def test_i14_7_role_may_rotate_exactly_its_secret_and_use_its_key_through_secrets_manager(run):
    policy = run.one(ROLE_POLICY, "thing-rotation-rotation")
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "thing-rotation-role").id
    assert json.loads(policy.inputs["policy"])["Statement"] == expect.rotation_statements(
        SECRET_ARN, key("secrets"), REGION
    )


def test_i14_7_random_values_are_granted_on_star_only_when_asked(module_namer, module_context):
    run, _ = build(module_namer, module_context, random_password=True)
    statements = json.loads(run.one(ROLE_POLICY, "thing-rotation-rotation").inputs["policy"])
    assert statements["Statement"][-1] == {
        "Sid": "RandomValues",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetRandomPassword"],
        "Resource": ["*"],
    }


def test_i14_7_the_function_waits_for_the_rotation_policy(run):
    function = run.one(FUNCTION, "thing-rotation-function")
    assert run.one(ROLE_POLICY, "thing-rotation-rotation").urn in function.dependencies


def test_i14_7_only_secrets_manager_rotating_this_secret_in_this_account_may_invoke(run):
    permission = run.one(PERMISSION, "thing-rotation-invoke").inputs
    assert permission == {
        "action": "lambda:InvokeFunction",
        "function": "media-thing-rotation-test",
        "principal": "secretsmanager.amazonaws.com",
        "sourceArn": SECRET_ARN,
        "sourceAccount": ACCOUNT_ID,
    }


def test_i14_7_schedule_every_n_days_not_during_the_deployment_after_the_permission(run):
    rotation = run.one(ROTATION, "thing-rotation-schedule")
    assert rotation.inputs == {
        "secretId": SECRET_ARN,
        "rotationLambdaArn": run.one(FUNCTION, "thing-rotation-function").state["arn"],
        "rotationRules": {"automaticallyAfterDays": 30},
        "rotateImmediately": False,
    }
    assert run.one(PERMISSION, "thing-rotation-invoke").urn in rotation.dependencies


@pytest.mark.parametrize("days", [0, 1001])
def test_i14_7_rotation_days_outside_secrets_managers_range_are_refused(
    module_namer, module_context, days
):
    with pytest.raises(ValueError) as error:
        build(module_namer, module_context, rotation_days=days)
    assert str(error.value) == f"SecretRotationArgs: rotation_days={days}: allowed 1..1000"


def test_i14_7_rotated_secret_keeps_its_first_version_and_never_writes_it_back(
    module_namer,
):
    def program():
        stored_secret(
            "thing-secret",
            namer=module_namer,
            stem="thing",
            description="A thing",
            value="first-value",
            kms_key_arn=key("secrets"),
            protect_data=False,
            parent=Owner(),
            rotated=True,
        )

    run = run_components(program, region=REGION)
    secret = run.one(SECRET, "thing-secret")
    assert secret.inputs["name"] == "media-thing-test"
    assert secret.inputs["kmsKeyId"] == key("secrets")
    assert secret.inputs["recoveryWindowInDays"] == 0
    version = run.one(SECRET_VERSION, "thing-secret-value")
    assert version.inputs["secretId"] == secret.id
    assert version.inputs["versionStages"] == ["AWSCURRENT", DEPLOYED_STAGE]
    # Rotation moves AWSCURRENT on and writes new values; a refresh or a changed input must
    # not make `up` move it back to this version or write a new one.
    assert sorted(version.ignore_changes) == ["secretString", "versionStages"]


def test_i14_7_a_failed_rotation_step_raises_an_alarm_on_the_alarm_topic(namer, context):
    """O2: any failed step (an unhandled RotationError is a Lambda error) alarms within the
    hour; the secret keeps its value and Secrets Manager retries the rotation."""
    run, _ = build(namer, context)
    alarm = run.one(ALARM).inputs
    assert alarm["name"] == "media-thing-rotation-failed-test"
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == (
        "AWS/Lambda",
        "Errors",
        "Sum",
    )
    assert alarm["dimensions"] == {"FunctionName": run.one(FUNCTION).inputs["name"]}
    assert (alarm["comparisonOperator"], alarm["threshold"], alarm["period"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
        3600,
    )
    assert alarm["alarmActions"] == alarm["okActions"] == [TOPIC]
    assert alarm["treatMissingData"] == "notBreaching"
