"""MediaWorkerService (W1-W4, W7-W9, K3): exact inputs under mocks, plus the wired stacks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from components.iam import Grant, attach_grants
from components.media_storage import TranscodeTarget
from components.observability import metric_alarm
from components.storage import SharedFileSystem, SharedFileSystemArgs
from components.worker import (
    MediaWorkerService,
    MediaWorkerServiceArgs,
    SharedVolume,
    WorkerConnections,
    capacity_strategy,
    content_tag,
    ecr_lifecycle_policy,
    job_timeout_seconds,
    parse_ecr_image,
)
from offline.engine import ACCOUNT_ID, ROOT, run_components, run_stack
from services.contract import KEY_VERSION_PATTERN
from stack_config import ConfigError
from tests.infra.expect import assert_rejected, decrypt_via

REGION = "eu-central-1"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:media-alarms-test"
REDIS_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:media-cache-test-AbCdEf"
APP_SUBNETS = ["subnet-app-a", "subnet-app-b"]
REPO_URL = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/media-worker-test"
REPO_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/media-worker-test"
LOG_GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/ecs/media-worker-test"
CONTENT_KEY_ARN = (
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:media-content-key-test-AbCdEf"
)
TASK_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/media-worker-task-test"
EXEC_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/media-worker-exec-test"

SERVICE = "aws:ecs/service:Service"
TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
IMAGE = "docker-build:index:Image"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def key(purpose: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{purpose}"


def pull_statements(repository_arn: str) -> list[dict]:
    """The execution role's ECR statements: the account-wide token, and pulls from one
    repository only."""
    return [
        {
            "Sid": "EcrAuthorizationToken",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": ["*"],
        },
        {
            "Sid": "PullWorkerImage",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            "Resource": [repository_arn],
        },
    ]


def connections(**overrides: Any) -> WorkerConnections:
    values: dict[str, Any] = {
        "db_host": "db.cluster.example",
        "db_port": 5432,
        "db_name": "media",
        "redis_host": "master.cache.example",
        "redis_port": 6379,
        "redis_tls": True,
        "redis_auth_secret_arn": REDIS_SECRET,
        "stream_name": "media-kinesis-test",
        "jobs_queue_url": "https://sqs.example/jobs",
        "jobs_queue_name": "media-jobs-test",
        "dead_letter_queue_url": "https://sqs.example/dlq",
        "max_receive_count": 5,
    }
    values.update(overrides)
    return WorkerConnections(**values)


def fake_grant(sid: str, arn: str):
    """Stands in for a tier's grant helper: one recognisable statement, on the role given."""

    def grant(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        return attach_grants(
            resource_name, role, [Grant(sid, ("sqs:ReceiveMessage",), (arn,))], parent=role
        )

    return grant


INGEST = f"media-ingest-{ACCOUNT_ID}-{REGION}-test"
MEDIA = f"media-media-{ACCOUNT_ID}-{REGION}-test"
MAX_SOURCE_BYTES = 10 * 1024**3


def media_target(**overrides: Any) -> TranscodeTarget:
    values: dict[str, Any] = {
        "ingest_bucket": INGEST,
        "media_bucket": MEDIA,
        "max_source_bytes": MAX_SOURCE_BYTES,
        "delete_source": False,
        "grant_transcode": fake_grant("FakeTranscode", f"arn:aws:s3:::{MEDIA}"),
    }
    values.update(overrides)
    return TranscodeTarget(**values)


def worker_args(namer, context, files: SharedFileSystem | None, **overrides: Any):
    values: dict[str, Any] = {
        "namer": namer,
        "context": context,
        "vpc_id": "vpc-test",
        "subnet_ids": APP_SUBNETS,
        "connections": connections(),
        "media": media_target(),
        "logs_key_arn": key("logs"),
        "images_key_arn": key("images"),
        "secrets_key_arn": key("secrets"),
        "alarm_topic_arn": TOPIC,
        "task_grants": {
            "cache-secret": fake_grant("FakeCacheSecret", REDIS_SECRET),
            "jobs": fake_grant("FakeJobs", "arn:jobs"),
            "stream": fake_grant("FakeStream", "arn:stream"),
        },
    }
    if files is not None:
        values["shared_volume"] = SharedVolume(
            file_system_id=files.file_system_id,
            access_point_id=files.access_point_id,
            grant_mount=files.grant_mount,
            mount_targets=files.mount_targets,
        )
    values.update(overrides)
    return MediaWorkerServiceArgs(**values)


def build_run(namer, context, **overrides: Any):
    def build():
        files = SharedFileSystem(
            "files",
            SharedFileSystemArgs(
                namer=namer,
                vpc_id="vpc-test",
                subnet_ids=["subnet-data-a", "subnet-data-b"],
                kms_key_arn=key("filesystem"),
            ),
        )
        MediaWorkerService("worker", worker_args(namer, context, files, **overrides))

    return run_components(build)


@pytest.fixture(scope="module")
def run():
    from components.kms import AwsContext
    from components.naming import Namer

    return build_run(
        Namer("media", "test"), AwsContext(account_id=ACCOUNT_ID, partition="aws", region=REGION)
    )


def container(run) -> dict[str, Any]:
    definitions = json.loads(run.one(TASK_DEF).inputs["containerDefinitions"])
    assert len(definitions) == 1
    return definitions[0]


def policy_statements(run, name: str) -> list[dict[str, Any]]:
    return json.loads(run.one(ROLE_POLICY, name).inputs["policy"])["Statement"]


def role_of(run, policy_name: str) -> str:
    return run.one(ROLE_POLICY, policy_name).inputs["role"]


# -- W1/W2: cluster, capacity providers, service ----------------------------------------


def test_w1_cluster_has_container_insights(run):
    cluster = run.one("aws:ecs/cluster:Cluster").inputs
    assert cluster["name"] == "media-workers-test"
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_w2_capacity_providers_associated_with_default_strategy(run):
    capacity = run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders").inputs
    assert capacity["clusterName"] == "media-workers-test"
    assert capacity["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert capacity["defaultCapacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
    ]


def test_w2_service_uses_the_strategy_and_no_launch_type_pitfalls_70_71(run):
    service = run.one(SERVICE)
    assert "launchType" not in service.inputs
    assert service.inputs["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
    ]
    assert service.inputs["forceNewDeployment"] is True
    capacity = run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    assert capacity.urn in service.dependencies


def test_w1_service_in_private_subnets_without_public_ip_in_its_own_group(run):
    service = run.one(SERVICE).inputs
    assert service["networkConfiguration"] == {
        "subnets": APP_SUBNETS,
        "securityGroups": [run.named("worker-sg").id],
        "assignPublicIp": False,
    }
    assert service["cluster"] == run.one("aws:ecs/cluster:Cluster").state["arn"]
    assert service["taskDefinition"] == run.one(TASK_DEF).state["arn"]


def test_w8_circuit_breaker_rolls_back_and_up_waits_for_steady_state(run):
    service = run.one(SERVICE).inputs
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["waitForSteadyState"] is True
    assert service["deploymentMinimumHealthyPercent"] == 100
    assert service["deploymentMaximumPercent"] == 200


def test_w7_desired_count_starts_at_min_and_is_left_to_autoscaling_pitfall_74(run):
    service = run.one(SERVICE)
    assert service.inputs["desiredCount"] == 2
    assert service.ignore_changes == ["desiredCount"]


def test_service_tags_and_name(run):
    service = run.one(SERVICE).inputs
    assert service["name"] == "media-worker-test"
    assert service["propagateTags"] == "SERVICE"
    assert service["enableEcsManagedTags"] is True


def test_service_depends_on_every_role_policy_and_mount_target_pitfalls_67_75(run):
    service = run.one(SERVICE)
    policies = {r.urn for r in run.of_type(ROLE_POLICY)}
    targets = {r.urn for r in run.of_type("aws:efs/mountTarget:MountTarget")}
    # exec, exec-cache-secret, task, task-media, task-jobs, task-stream, task-efs
    assert len(policies) == 7
    assert len(targets) == 2
    assert policies | targets <= set(service.dependencies)


def test_worker_group_has_no_rule_of_its_own_until_the_stack_grants_access_n3(run):
    """AWS APIs and data ports are granted by the stack (`network.grant_aws_apis`,
    `database.allow_from`, …), never pre-wired in the component."""
    group_id = run.named("worker-sg").id
    assert [r for r in run.of_type(EGRESS) if r.inputs["securityGroupId"] == group_id] == []
    assert [r for r in run.of_type(INGRESS) if r.inputs["securityGroupId"] == group_id] == []


# -- ECR repository and image ----------------------------------------------------------


def test_repository_immutable_scanned_kms_encrypted_and_destroyable_g3(run):
    repo = run.one("aws:ecr/repository:Repository").inputs
    assert repo["name"] == "media-worker-test"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key("images")}]
    assert repo["forceDelete"] is True


def test_repository_lifecycle_expires_untagged_and_keeps_last_20(run):
    policy = run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs
    assert policy["repository"] == "media-worker-test"
    assert json.loads(policy["policy"]) == {
        "rules": [
            {
                "rulePriority": 1,
                "description": "expire untagged images after 7 days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 7,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": "keep the last 20 images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 20,
                },
                "action": {"type": "expire"},
            },
        ]
    }
    assert json.loads(policy["policy"]) == ecr_lifecycle_policy()


def test_image_built_from_services_for_amd64_and_pushed_with_a_content_tag(run):
    image = run.one(IMAGE).inputs
    assert image["context"] == {"location": "services"}
    assert image["dockerfile"] == {"location": "services/worker/Dockerfile"}
    assert image["platforms"] == ["linux/amd64"]
    assert image["push"] is True
    assert image["buildOnPreview"] is False
    assert image["tags"] == [f"{REPO_URL}:{content_tag(ROOT / 'services')}"]
    assert image["registries"] == [
        {"address": REPO_URL, "username": "AWS", "password": "mock-ecr-token"}
    ]


def test_container_runs_the_pushed_digest_not_a_tag(run):
    digest = run.one(IMAGE).state["digest"]
    assert digest.startswith("sha256:")
    assert container(run)["image"] == f"{REPO_URL}@{digest}"


def test_external_image_skips_the_build_and_scopes_the_pull_to_its_repository(namer, context):
    image = f"210987654321.dkr.ecr.us-east-1.amazonaws.com/team/worker@sha256:{'a' * 64}"
    run = build_run(namer, context, image=image)
    assert run.of_type(IMAGE) == []
    assert container(run)["image"] == image
    statements = policy_statements(run, "worker-exec-policy")
    assert statements[:2] == pull_statements(
        "arn:aws:ecr:us-east-1:210987654321:repository/team/worker"
    )
    assert "DecryptImageLayers" not in {s["Sid"] for s in statements}


def test_public_external_image_needs_no_ecr_permissions(namer, context):
    run = build_run(namer, context, image="public.ecr.aws/acme/worker:1.2.3")
    assert run.of_type(IMAGE) == []
    assert [s["Sid"] for s in policy_statements(run, "worker-exec-policy")] == [
        "WriteContainerLogs"
    ]


# -- W3: task definition and container -------------------------------------------------


def test_w3_task_definition_is_fargate_awsvpc_x86_with_config_sizes(run):
    task = run.one(TASK_DEF).inputs
    assert task["family"] == "media-worker-test"
    assert (task["cpu"], task["memory"]) == ("1024", "2048")
    # M4: the scratch volume is the task's ephemeral storage.
    assert task["ephemeralStorage"] == {"sizeInGib": 120}
    assert task["networkMode"] == "awsvpc"
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["runtimePlatform"] == {
        "cpuArchitecture": "X86_64",
        "operatingSystemFamily": "LINUX",
    }
    assert task["executionRoleArn"] == EXEC_ROLE_ARN
    assert task["taskRoleArn"] == TASK_ROLE_ARN
    assert "platformVersion" not in run.one(SERVICE).inputs  # LATEST: EFS needs >= 1.4.0


def test_w3_container_runs_non_root_on_a_read_only_root_with_tmp_scratch(run):
    c = container(run)
    assert c["name"] == "worker"
    assert c["essential"] is True
    assert c["user"] == "1000:1000"
    assert c["readonlyRootFilesystem"] is True
    assert c["stopTimeout"] == 110
    assert c["linuxParameters"] == {"initProcessEnabled": True}
    assert c["mountPoints"] == [
        {"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False},
        {"sourceVolume": "media", "containerPath": "/mnt/media", "readOnly": False},
    ]
    assert c["healthCheck"] == {
        "command": ["CMD", "python", "-m", "services.worker.healthcheck"],
        "interval": 30,
        "timeout": 10,
        "retries": 3,
        "startPeriod": 120,
    }


def test_w9_container_logs_to_the_precreated_encrypted_group(run):
    group = run.named("worker-logs").inputs
    assert group == {
        "name": "/ecs/media-worker-test",
        "kmsKeyId": key("logs"),
        "retentionInDays": 30,
    }
    assert container(run)["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/ecs/media-worker-test",
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "worker",
        },
    }


def test_w3_environment_carries_endpoints_names_and_arns_only(run):
    environment = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert environment == {
        "DB_HOST": "db.cluster.example",
        "DB_PORT": "5432",
        "DB_NAME": "media",
        "DB_SSL": "verify-full",  # issue 14 item 6
        "DB_IAM_USER": "media_worker",
        "REDIS_HOST": "master.cache.example",
        "REDIS_PORT": "6379",
        "REDIS_TLS": "true",
        "REDIS_AUTH_SECRET_ARN": REDIS_SECRET,
        "STREAM_NAME": "media-kinesis-test",
        "JOBS_QUEUE_URL": "https://sqs.example/jobs",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq",
        "MAX_RECEIVE_COUNT": "5",
        # 4 h x 1.0 s/s + 2 x 10 GiB at 50 MiB/s + 300 s margin.
        "JOB_TIMEOUT_SECONDS": str(14400 + 410 + 300),
        "VISIBILITY_TIMEOUT_SECONDS": "1200",
        "STOP_TIMEOUT_SECONDS": "100",
        "MEDIA_ROOT": "/mnt/media",
        "SCRATCH_DIR": "/tmp",
        "CONTENT_KEY_SECRET_ARN": CONTENT_KEY_ARN,
        "LOG_LEVEL": "INFO",
        "INGEST_BUCKET": INGEST,
        "MEDIA_BUCKET": MEDIA,
        "UPLOAD_MAX_BYTES": str(MAX_SOURCE_BYTES),
        "DELETE_SOURCE_AFTER_PROCESSING": "false",
        "TRANSCODE_LADDER": "720:3000,480:1200,360:700",
        "SEGMENT_SECONDS": "4",
        "SOURCE_MAX_DURATION_SECONDS": "14400",
        "TRANSFER_CONCURRENCY": "8",
    }
    assert not any(k in environment for k in ("DB_PASSWORD", "DB_USERNAME", "REDIS_AUTH_TOKEN"))


def test_d6_database_tls_unchecked_only_when_asked_for(namer, context):
    run = build_run(namer, context, db_ssl="require")
    environment = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert environment["DB_SSL"] == "require"


def test_w3_d6_issue14_no_secret_is_injected_the_worker_reads_the_rotating_cache_token_itself(run):
    """ECS would inject the token once, at task start; the worker reads it by ARN so it
    follows a rotation (issue 14 item 7), and the database takes IAM tokens (D6)."""
    assert "secrets" not in container(run)
    environment = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert environment["REDIS_AUTH_SECRET_ARN"] == REDIS_SECRET


def test_no_token_secret_named_when_the_cache_has_no_auth(namer, context):
    run = build_run(
        namer, context, connections=connections(redis_auth_secret_arn=None, redis_tls=False)
    )
    environment = {e["name"] for e in container(run)["environment"]}
    assert "REDIS_AUTH_SECRET_ARN" not in environment and "secrets" not in container(run)
    environment = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert environment["REDIS_TLS"] == "false"


def test_w4_efs_volume_with_tls_and_iam_through_the_access_point_pitfall_65(run):
    volumes = run.one(TASK_DEF).inputs["volumes"]
    access_point = run.one("aws:efs/accessPoint:AccessPoint").id
    file_system = run.one("aws:efs/fileSystem:FileSystem").id
    assert volumes == [
        {"name": "scratch"},
        {
            "name": "media",
            "efsVolumeConfiguration": {
                "fileSystemId": file_system,
                "transitEncryption": "ENABLED",
                "authorizationConfig": {"accessPointId": access_point, "iam": "ENABLED"},
            },
        },
    ]
    assert run.warnings == []


def test_w4_efs_mount_off_is_a_logged_opt_out_without_volume_or_grant(namer, context):
    run = build_run(namer, context, efs_mount=False)
    assert run.one(TASK_DEF).inputs["volumes"] == [{"name": "scratch"}]
    assert [m["sourceVolume"] for m in container(run)["mountPoints"]] == ["scratch"]
    assert [r.name for r in run.of_type(ROLE_POLICY) if r.name == "worker-task-efs"] == []
    mount_targets = {r.urn for r in run.of_type("aws:efs/mountTarget:MountTarget")}
    assert not mount_targets & set(run.one(SERVICE).dependencies)
    assert run.warnings == [
        "MediaWorkerService: efs_mount=False (config workerEfsMount=false): workers get no "
        "shared media volume at /mnt/media (W4 opt-out)"
    ]


# -- W3: execution role and task role --------------------------------------------------


@pytest.mark.parametrize("role_name", ["media-worker-exec-test", "media-worker-task-test"])
def test_roles_trust_ecs_tasks_of_this_account_only(run, role_name):
    role = next(r for r in run.of_type("aws:iam/role:Role") if r.inputs["name"] == role_name)
    assert json.loads(role.inputs["assumeRolePolicy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:*"},
                },
            }
        ],
    }


def test_w3_execution_role_pulls_only_this_repository_and_writes_only_its_logs(run):
    assert role_of(run, "worker-exec-policy") == "media-worker-exec-test"
    assert policy_statements(run, "worker-exec-policy") == [
        *pull_statements(REPO_ARN),
        decrypt_via("DecryptImageLayers", key("images"), "ecr", REGION),
        {
            "Sid": "WriteContainerLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{LOG_GROUP_ARN}:*"],
        },
    ]


def test_w3_issue14_the_cache_token_is_granted_to_the_task_role_via_the_tier_helper(run):
    assert role_of(run, "worker-task-cache-secret") == "media-worker-task-test"
    assert [s["Sid"] for s in policy_statements(run, "worker-task-cache-secret")] == [
        "FakeCacheSecret"
    ]


def test_w3_task_role_reads_the_content_key_and_gets_each_tier_grant(run):
    assert role_of(run, "worker-task-policy") == "media-worker-task-test"
    assert policy_statements(run, "worker-task-policy") == [
        {
            "Sid": "ReadContentKey",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [CONTENT_KEY_ARN],
        },
        decrypt_via("DecryptContentKey", key("secrets"), "secretsmanager", REGION),
    ]
    for name, sid in (("worker-task-jobs", "FakeJobs"), ("worker-task-stream", "FakeStream")):
        assert role_of(run, name) == "media-worker-task-test"
        assert [s["Sid"] for s in policy_statements(run, name)] == [sid]
    # M4, M6: the storage's transcode grant, on the task role.
    assert role_of(run, "worker-task-media") == "media-worker-task-test"
    assert [s["Sid"] for s in policy_statements(run, "worker-task-media")] == ["FakeTranscode"]
    assert role_of(run, "worker-task-efs") == "media-worker-task-test"
    assert [s["Sid"] for s in policy_statements(run, "worker-task-efs")] == [
        "MountSharedMediaThroughAccessPoint"
    ]


def test_execution_role_gets_nothing_the_worker_code_uses(run):
    exec_policies = [
        r for r in run.of_type(ROLE_POLICY) if r.inputs["role"] == "media-worker-exec-test"
    ]
    assert sorted(r.name for r in exec_policies) == ["worker-exec-policy"]
    text = " ".join(r.inputs["policy"] for r in exec_policies)
    assert "elasticfilesystem:" not in text and CONTENT_KEY_ARN not in text


def test_a_grant_returning_none_adds_no_policy(namer, context):
    run = build_run(namer, context, execution_grants={"cache-secret": lambda name, role: None})
    assert [r.name for r in run.of_type(ROLE_POLICY) if "exec" in r.name] == ["worker-exec-policy"]


# -- K3: content-protection key --------------------------------------------------------


def test_k3_content_key_secret_uses_the_secrets_cmk_and_the_recovery_window(run):
    secret = run.one("aws:secretsmanager/secret:Secret").inputs
    assert secret["name"] == "media-content-key-test"
    assert secret["kmsKeyId"] == key("secrets")
    assert secret["recoveryWindowInDays"] == 0


def test_k3_content_key_material_is_generated_and_stored_as_a_secret(run):
    material = run.one("random:index/randomBytes:RandomBytes")
    assert material.inputs["length"] == 32
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion").inputs
    assert version["secretId"] == run.one("aws:secretsmanager/secret:Secret").id
    value = version["secretString"]
    assert value[_special_sig_key] == _special_secret_sig  # secret in Pulumi state (G5)
    # M5: the contract's keyring, one version, current.
    document = json.loads(value["value"])
    (kid,) = document["keys"]
    assert document == {"current": kid, "keys": {kid: material.state["base64"]}}
    assert re.match(KEY_VERSION_PATTERN, kid) and kid.startswith("ck-") and len(kid) == 19


def test_k3_only_the_task_role_may_read_the_content_key(run):
    policy = run.one("aws:secretsmanager/secretPolicy:SecretPolicy")
    assert policy.inputs["secretArn"] == CONTENT_KEY_ARN
    assert policy.inputs["blockPublicPolicy"] is True
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyWorkerTaskRoleReadsContentKey",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": [TASK_ROLE_ARN]}},
            }
        ],
    }
    # The provider reads the value back after writing it: the deny must come afterwards.
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.urn in policy.dependencies


def test_k3_content_key_reaches_the_worker_by_arn_only(run):
    c = container(run)
    assert {"name": "CONTENT_KEY_SECRET_ARN", "value": CONTENT_KEY_ARN} in c["environment"]
    material = run.one("random:index/randomBytes:RandomBytes").state
    assert material["base64"] not in json.dumps(c)
    assert material["hex"] not in json.dumps(c)


# -- W7: auto scaling ------------------------------------------------------------------


def test_w7_scaling_target_on_the_service_between_min_and_max_pitfalls_80_81(run):
    target = run.one("aws:appautoscaling/target:Target").inputs
    assert target == {
        "serviceNamespace": "ecs",
        "scalableDimension": "ecs:service:DesiredCount",
        "resourceId": "service/media-workers-test/media-worker-test",
        "minCapacity": 2,
        "maxCapacity": 20,
    }


def test_w7_backlog_per_task_policy_uses_metric_math_pitfall_82(run):
    policy = run.one("aws:appautoscaling/policy:Policy", "worker-scale-backlog").inputs
    assert policy["name"] == "media-worker-backlog-test"
    assert policy["policyType"] == "TargetTrackingScaling"
    assert policy["resourceId"] == "service/media-workers-test/media-worker-test"
    config = policy["targetTrackingScalingPolicyConfiguration"]
    assert (config["targetValue"], config["scaleOutCooldown"], config["scaleInCooldown"]) == (
        10,
        60,
        300,
    )
    service_dims = [
        {"name": "ClusterName", "value": "media-workers-test"},
        {"name": "ServiceName", "value": "media-worker-test"},
    ]
    assert config["customizedMetricSpecification"] == {
        "metrics": [
            {
                "id": "m1",
                "label": "visible jobs",
                "returnData": False,
                "metricStat": {
                    "stat": "Sum",
                    "metric": {
                        "namespace": "AWS/SQS",
                        "metricName": "ApproximateNumberOfMessagesVisible",
                        "dimensions": [{"name": "QueueName", "value": "media-jobs-test"}],
                    },
                },
            },
            {
                "id": "m2",
                "label": "running tasks",
                "returnData": False,
                "metricStat": {
                    "stat": "Average",
                    "metric": {
                        "namespace": "ECS/ContainerInsights",
                        "metricName": "RunningTaskCount",
                        "dimensions": service_dims,
                    },
                },
            },
            {"id": "e1", "label": "backlog per task", "expression": "m1 / m2", "returnData": True},
        ]
    }


def test_w7_scales_from_and_to_zero_when_the_minimum_is_zero(namer, context):
    """Issue "Operate" item 2: a visible job wakes the first task (+1), an empty queue with
    nothing in flight for 15 minutes returns to zero; target tracking never scales in, so no
    task is stopped mid-transcode; no "too few tasks" alarm guards a floor of zero."""
    run = build_run(namer, context, min_tasks=0, max_tasks=4)
    policies = {p.name: p.inputs for p in run.of_type("aws:appautoscaling/policy:Policy")}
    for tracking in ("worker-scale-backlog", "worker-scale-cpu"):
        assert policies[tracking]["targetTrackingScalingPolicyConfiguration"]["disableScaleIn"]
    assert policies["worker-scale-wake"]["stepScalingPolicyConfiguration"] == {
        "adjustmentType": "ChangeInCapacity",
        "cooldown": 60,
        "metricAggregationType": "Maximum",
        "stepAdjustments": [{"metricIntervalLowerBound": "0", "scalingAdjustment": 1}],
    }
    assert policies["worker-scale-idle"]["stepScalingPolicyConfiguration"] == {
        "adjustmentType": "ExactCapacity",
        "cooldown": 300,
        "metricAggregationType": "Maximum",
        "stepAdjustments": [{"metricIntervalUpperBound": "0", "scalingAdjustment": 0}],
    }
    alarms = {a.name: a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    wake, idle = alarms["worker-wake-alarm"].inputs, alarms["worker-idle-alarm"].inputs
    assert (wake["metricName"], wake["comparisonOperator"], wake["threshold"]) == (
        "ApproximateNumberOfMessagesVisible",
        "GreaterThanOrEqualToThreshold",
        1,
    )
    assert wake["alarmActions"] == [
        run.one("aws:appautoscaling/policy:Policy", "worker-scale-wake").state["arn"]
    ]
    queries = {q["id"]: q for q in idle["metricQueries"]}
    assert queries["jobs"]["expression"] == "visible + inflight"
    assert queries["inflight"]["metric"]["metricName"] == "ApproximateNumberOfMessagesNotVisible"
    assert (idle["comparisonOperator"], idle["threshold"], idle["evaluationPeriods"]) == (
        "LessThanOrEqualToThreshold",
        0,
        15,
    )
    assert idle["treatMissingData"] == "breaching"
    assert "worker-tasks-alarm" not in alarms
    service = run.one("aws:ecs/service:Service").inputs
    assert service["desiredCount"] == 0


def test_w7_cpu_policy_targets_average_service_cpu(run):
    policy = run.one("aws:appautoscaling/policy:Policy", "worker-scale-cpu").inputs
    assert policy["name"] == "media-worker-cpu-test"
    assert policy["targetTrackingScalingPolicyConfiguration"] == {
        "targetValue": 70,
        "scaleOutCooldown": 60,
        "scaleInCooldown": 300,
        "disableScaleIn": False,
        "predefinedMetricSpecification": {
            "predefinedMetricType": "ECSServiceAverageCPUUtilization"
        },
    }


# -- W9/O2: alarms ---------------------------------------------------------------------


def test_w9_cpu_and_memory_alarms_on_the_service(run):
    dims = {"ClusterName": "media-workers-test", "ServiceName": "media-worker-test"}
    for name, metric in (
        ("worker-cpu-alarm", "CPUUtilization"),
        ("worker-memory-alarm", "MemoryUtilization"),
    ):
        alarm = run.one(ALARM, name).inputs
        assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == (
            "AWS/ECS",
            metric,
            dims,
        )
        assert (alarm["comparisonOperator"], alarm["threshold"], alarm["statistic"]) == (
            "GreaterThanThreshold",
            85,
            "Average",
        )
        assert alarm["treatMissingData"] == "notBreaching"
        assert alarm["alarmActions"] == [TOPIC] and alarm["okActions"] == [TOPIC]


def test_o2_too_few_running_tasks_alarms_and_silence_counts_as_breaching(run):
    alarm = run.one(ALARM, "worker-tasks-alarm").inputs
    assert alarm["name"] == "media-worker-tasks-low-test"
    assert (alarm["namespace"], alarm["metricName"]) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
    )
    assert alarm["dimensions"] == {
        "ClusterName": "media-workers-test",
        "ServiceName": "media-worker-test",
    }
    assert (alarm["comparisonOperator"], alarm["threshold"]) == ("LessThanThreshold", 2)
    assert alarm["treatMissingData"] == "breaching"
    assert alarm["alarmActions"] == [TOPIC]


def test_metric_alarm_default_missing_data_is_unchanged():
    class Owner(pulumi.ComponentResource):
        def __init__(self):
            super().__init__("test:owner:Owner", "owner", None)

    def build():
        metric_alarm(
            "a",
            alarm_name="a",
            description="d",
            namespace="N",
            metric_name="M",
            dimensions={},
            statistic="Sum",
            comparison="GreaterThanThreshold",
            threshold=1,
            topic_arn=TOPIC,
            parent=Owner(),
        )

    assert run_components(build).one(ALARM).inputs["treatMissingData"] == "notBreaching"


# -- exposed attributes ----------------------------------------------------------------


def test_exposes_what_main_wires(namer, context):
    seen: dict[str, Any] = {}

    def build():
        worker = MediaWorkerService("worker", worker_args(namer, context, None, efs_mount=False))
        seen.update(worker=worker)
        pulumi.Output.all(
            worker.cluster_name,
            worker.cluster_arn,
            worker.service_name,
            worker.log_group_name,
            worker.repository_url,
            worker.content_key_secret_arn,
            worker.task_role.arn,
            worker.execution_role.arn,
        ).apply(lambda v: seen.update(values=v))

    run_components(build)
    assert seen["values"] == [
        "media-workers-test",
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/media-workers-test",
        "media-worker-test",
        "/ecs/media-worker-test",
        REPO_URL,
        CONTENT_KEY_ARN,
        TASK_ROLE_ARN,
        EXEC_ROLE_ARN,
    ]
    assert seen["worker"].security_group.physical_name == "media-worker-sg-test"


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cpu": 300}, "cpu=300: allowed one of 256, 512, 1024, 2048, 4096, 8192, 16384"),
        (
            {"cpu": 256, "memory": 4096},
            "memory=4096: allowed for cpu=256: 512..2048 in steps of 512 (512, 1024, 2048)",
        ),
        ({"min_tasks": 1}, "min_tasks=1: allowed 0 or 2..200"),
        ({"max_tasks": 201}, "max_tasks=201: allowed 1..200"),
        ({"min_tasks": 5, "max_tasks": 4}, "max_tasks=4: allowed >= min_tasks (5)"),
        ({"fargate_base": 101}, "fargate_base=101: allowed 0..100"),
        (
            {"fargate_weight": 0, "spot_weight": 0},
            "spot_weight=0: allowed > 0 or fargate_weight > 0",
        ),
        ({"stop_timeout_seconds": 121}, "stop_timeout_seconds=121: allowed 2..120"),
        ({"cpu_target": 95}, "cpu_target=95: allowed 10..90"),
        ({"backlog_per_task": 0}, "backlog_per_task=0: allowed 1..1000"),
        ({"ephemeral_storage_gib": 20}, "ephemeral_storage_gib=20: allowed 21..200"),
        ({"segment_seconds": 11}, "segment_seconds=11: allowed 2..10"),
        (
            {"transcode_ladder": "720:3000,720:1200"},
            'transcode_ladder="720:3000,720:1200": allowed 1-8 distinct rungs height:kbps',
        ),
        (
            {"media": media_target(max_source_bytes=60 * 1024**3)},
            "media.max_source_bytes=64424509440: allowed <= 45 % of ephemeral_storage_gib "
            "(120 GiB = 57982058496 bytes)",
        ),
        (
            {"source_max_duration_seconds": 43_000},
            "source_max_duration_seconds=43000: allowed a duration whose job fits SQS's 43200 s "
            "lease ceiling: source_max_duration_seconds x transcode_seconds_per_media_second "
            "(1.0) plus the transfer of media.max_source_bytes (10737418240) gives 43710 s",
        ),
        ({"subnet_ids": ["one"]}, "subnet_ids=1 subnet(s): allowed one app subnet per AZ"),
        (
            {"image": "latest"},
            'image="latest": allowed empty (build from services/worker) or registry/repository:tag',
        ),
        ({"build_context": "no-such-dir"}, "build_context='no-such-dir': not a directory"),
        (
            {"dockerfile": "services/nope/Dockerfile"},
            "dockerfile='services/nope/Dockerfile': no such file (set image to run a prebuilt image",
        ),
        ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3, 5"),
        ({"shared_volume": None}, "shared_volume: required while efs_mount is True (W4)"),
        ({"db_ssl": "disable"}, "db_ssl='disable': allowed one of require, verify-full"),
    ],
)
def test_bad_args_are_rejected_naming_the_field(namer, context, overrides, message):
    volume = SharedVolume(
        file_system_id="fs-1", access_point_id="fsap-1", grant_mount=fake_grant("X", "arn:x")
    )
    args = worker_args(namer, context, None, **{"shared_volume": volume, **overrides})
    assert_rejected(args, message)


def test_bad_args_register_nothing(namer, context):
    with pytest.raises(ValueError) as error:
        build_run(namer, context, cpu=100, min_tasks=1)
    assert "cpu=100" in str(error.value) and "min_tasks=1" in str(error.value)
    registered = [r.type for r in error.value.registered]  # type: ignore[attr-defined]
    assert "media:worker:MediaWorkerService" not in registered


# -- pure helpers ----------------------------------------------------------------------


def test_parse_ecr_image():
    tagged = parse_ecr_image("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/a/b:1")
    assert (tagged.account_id, tagged.region, tagged.repository) == (
        "123456789012",
        "ap-northeast-1",
        "a/b",
    )
    found = parse_ecr_image(f"123456789012.dkr.ecr.ca-central-1.amazonaws.com/w@sha256:{'0' * 64}")
    assert (found.account_id, found.region, found.repository) == (
        "123456789012",
        "ca-central-1",
        "w",
    )
    assert parse_ecr_image("docker.io/library/python:3.12") is None


def test_content_tag_changes_with_any_file_and_ignores_byte_code(tmp_path: Path):
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "main.py").write_text("print(1)\n")
    first = content_tag(tmp_path)
    assert first.startswith("src-") and len(first) == 20
    (tmp_path / "worker" / "__pycache__").mkdir()
    (tmp_path / "worker" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "stray.pyc").write_bytes(b"\1")
    assert content_tag(tmp_path) == first
    (tmp_path / "worker" / "main.py").write_text("print(2)\n")
    assert content_tag(tmp_path) != first


def test_m4_job_timeout_is_derived_from_the_source_limits():
    """Transcode time at the measured speed, plus moving the source down and about as much up
    at 50 MiB/s, plus five minutes."""
    assert job_timeout_seconds(3600, 1.0, 0) == 3600 + 300
    assert job_timeout_seconds(3600, 0.5, 0) == 1800 + 300
    assert job_timeout_seconds(100, 1.0, 50 * 1024**2) == 100 + 2 + 300
    assert job_timeout_seconds(100, 1.0, 50 * 1024**2 + 1) == 100 + 3 + 300
    assert job_timeout_seconds(3, 0.34, 0) == 2 + 300  # rounded up


def test_m2_a_deleting_retention_tells_the_worker_to_delete_sources(namer, context):
    run = build_run(namer, context, media=media_target(delete_source=True))
    environment = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert environment["DELETE_SOURCE_AFTER_PROCESSING"] == "true"


def test_m4_ladder_is_written_tallest_first_and_timeout_follows_speed(namer, context):
    run = build_run(
        namer,
        context,
        transcode_ladder="360:700, 1080:5000",
        transcode_seconds_per_media_second=2.5,
        source_max_duration_seconds=600,
        segment_seconds=6,
        ephemeral_storage_gib=40,
    )
    environment = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert environment["TRANSCODE_LADDER"] == "1080:5000,360:700"
    assert environment["JOB_TIMEOUT_SECONDS"] == str(1500 + 410 + 300)
    assert environment["SEGMENT_SECONDS"] == "6"
    assert run.one(TASK_DEF).inputs["ephemeralStorage"] == {"sizeInGib": 40}


def test_capacity_strategy_sets_base_on_fargate_only():
    assert capacity_strategy(3, 1, 3) == [
        {"capacity_provider": "FARGATE", "base": 3, "weight": 1},
        {"capacity_provider": "FARGATE_SPOT", "weight": 3},
    ]


# -- whole program ---------------------------------------------------------------------


def _container_of(run) -> dict[str, Any]:
    return json.loads(run.one(TASK_DEF).inputs["containerDefinitions"])[0]


@pytest.mark.parametrize(
    ("stack", "sizes", "strategy", "counts"),
    [
        (
            "dev",
            ("1024", "2048"),
            [
                {"capacityProvider": "FARGATE", "base": 0, "weight": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 4},
            ],
            (0, 4),  # dev scales to zero
        ),
        (
            "prod",
            ("4096", "8192"),
            [
                {"capacityProvider": "FARGATE", "base": 3, "weight": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 3},
            ],
            (3, 20),
        ),
    ],
)
def test_stacks_take_worker_sizes_strategy_and_counts_from_config(
    dev_run, prod_run, stack, sizes, strategy, counts
):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    task = run.one(TASK_DEF).inputs
    assert (task["cpu"], task["memory"]) == sizes
    assert run.one(SERVICE).inputs["capacityProviderStrategies"] == strategy
    target = run.one("aws:appautoscaling/target:Target").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == counts
    assert run.one(SERVICE).inputs["desiredCount"] == counts[0]
    floor = [a.inputs["threshold"] for a in run.of_type(ALARM) if a.name == "worker-tasks-alarm"]
    assert floor == ([counts[0]] if counts[0] else [])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_wire_the_worker_to_every_tier(dev_run, prod_run, stack):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    suffix = stack
    environment = {e["name"]: e["value"] for e in _container_of(run)["environment"]}
    outputs = run.outputs
    assert environment["DB_HOST"] == outputs["databaseEndpoint"]
    assert environment["REDIS_HOST"] == outputs["cacheEndpoint"]
    assert environment["STREAM_NAME"] == outputs["streamName"]
    assert environment["JOBS_QUEUE_URL"] == outputs["jobQueueUrl"]
    assert environment["DEAD_LETTER_QUEUE_URL"] == outputs["deadLetterQueueUrl"]
    assert environment["CONTENT_KEY_SECRET_ARN"] == outputs["contentKeySecretArn"]
    assert environment["DB_IAM_USER"] == "media_worker"
    assert environment["REDIS_AUTH_SECRET_ARN"] == outputs["cacheAuthSecretArn"]
    assert "secrets" not in _container_of(run)
    task_policies = {
        r.name
        for r in run.of_type(ROLE_POLICY)
        if r.inputs["role"] == f"media-worker-task-{suffix}"
    }
    assert task_policies == {
        "worker-task-policy",
        "worker-task-media",
        "worker-task-jobs",
        "worker-task-stream",
        "worker-task-efs",
        "worker-task-db-connect",
        "worker-task-cache-secret",
    }
    cluster = run.one("aws:rds/cluster:Cluster").state
    assert policy_statements(run, "worker-task-db-connect") == [
        {
            "Sid": "ConnectAsMediaWorker",
            "Effect": "Allow",
            "Action": ["rds-db:connect"],
            "Resource": [
                f"arn:aws:rds-db:eu-central-1:{ACCOUNT_ID}:dbuser:"
                f"{cluster['clusterResourceId']}/media_worker"
            ],
        }
    ]
    exec_policies = {
        r.name
        for r in run.of_type(ROLE_POLICY)
        if r.inputs["role"] == f"media-worker-exec-{suffix}"
    }
    assert exec_policies == {"worker-exec-policy"}
    # No task starts before the schema and the worker's database role exist.
    invocation = run.one("aws:lambda/invocation:Invocation", "schema-run")
    assert invocation.urn in run.one(SERVICE).dependencies


@pytest.mark.parametrize(("stack", "azs"), [("dev", 2), ("prod", 3)])
def test_w4_mount_target_in_every_data_subnet_of_the_stack(dev_run, prod_run, stack, azs):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    subnets = [t.inputs["subnetId"] for t in run.of_type("aws:efs/mountTarget:MountTarget")]
    assert sorted(subnets) == sorted(run.outputs["dataSubnetIds"])
    assert len(subnets) == azs
    fs = run.one("aws:efs/fileSystem:FileSystem").inputs
    keys = {r.name: r.state["arn"] for r in run.of_type("aws:kms/key:Key")}
    assert fs["kmsKeyId"] == keys["keys-filesystem-key"]


def test_k3_m5_rotation_adds_a_version_and_keeps_every_earlier_one(namer, context, run):
    """Issue 14 item 7: raising contentKeyVersions rotates the content key: new titles are
    keyed from the newest version; the first keeps its logical name (and so its value), so
    titles keyed before stay playable."""
    rotated = build_run(namer, context, content_key_versions=3)
    materials = {m.name: m for m in rotated.of_type("random:index/randomBytes:RandomBytes")}
    assert sorted(materials) == [
        "worker-content-key-material",
        "worker-content-key-material-v2",
        "worker-content-key-material-v3",
    ]
    document = json.loads(
        rotated.one("aws:secretsmanager/secretVersion:SecretVersion").inputs["secretString"][
            "value"
        ]
    )
    before = json.loads(
        run.one("aws:secretsmanager/secretVersion:SecretVersion").inputs["secretString"]["value"]
    )
    assert len(document["keys"]) == 3
    assert before["keys"].items() <= document["keys"].items()
    newest = materials["worker-content-key-material-v3"].state["base64"]
    assert document["keys"][document["current"]] == newest


def test_g3_dev_is_destroyable_and_prod_protects_images_and_the_content_key(dev_run, prod_run):
    for run, force, window in ((dev_run, True, 0), (prod_run, False, 30)):
        assert run.one("aws:ecr/repository:Repository").inputs["forceDelete"] is force
        material = run.one("random:index/randomBytes:RandomBytes", "worker-content-key-material")
        assert material.protect is not force  # losing it would strand every title
        assert (
            run.one("aws:secretsmanager/secret:Secret", "worker-content-key").inputs[
                "recoveryWindowInDays"
            ]
            == window
        )


def test_g6_exports(dev_run):
    assert dev_run.outputs["ecsClusterName"] == "media-workers-dev"
    assert dev_run.outputs["ecsServiceName"] == "media-worker-dev"
    assert dev_run.outputs["fileSystemId"] == dev_run.one("aws:efs/fileSystem:FileSystem").id
    assert dev_run.outputs["workerRepositoryUrl"] == (
        f"{ACCOUNT_ID}.dkr.ecr.eu-central-1.amazonaws.com/media-worker-dev"
    )
    assert dev_run.outputs["contentKeySecretArn"] == (
        f"arn:aws:secretsmanager:eu-central-1:{ACCOUNT_ID}:secret:media-content-key-dev-AbCdEf"
    )
    assert "contentKeySecretArn" not in dev_run.secret_outputs  # an ARN, not the key


@pytest.mark.parametrize("region", ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"])
def test_g1_processing_tier_in_every_region_without_warnings(region_runs, region):
    run = region_runs["dev", region]
    assert run.warnings == []
    options = _container_of(run)["logConfiguration"]["options"]
    assert options["awslogs-region"] == region
    assert run.outputs["workerRepositoryUrl"].startswith(f"{ACCOUNT_ID}.dkr.ecr.{region}.")
    role = next(
        r
        for r in run.of_type("aws:iam/role:Role")
        if r.inputs.get("name") == "media-worker-task-dev"
    )
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert trust["ArnLike"]["aws:SourceArn"] == f"arn:aws:ecs:{region}:{ACCOUNT_ID}:*"


def test_w4_stack_efs_mount_false_warns_and_drops_the_nfs_rule():
    run = run_stack("dev", {"workerEfsMount": False})
    assert run.warnings == [
        "MediaWorkerService: efs_mount=False (config workerEfsMount=false): workers get no "
        "shared media volume at /mnt/media (W4 opt-out)"
    ]
    assert run.one(TASK_DEF).inputs["volumes"] == [{"name": "scratch"}]
    assert [r.name for r in run.of_type(INGRESS) if r.name.startswith("files-sg-from")] == []
    assert len(run.of_type("aws:efs/fileSystem:FileSystem")) == 1  # the share still exists


def test_stack_with_external_image_skips_the_build():
    image = f"{ACCOUNT_ID}.dkr.ecr.eu-central-1.amazonaws.com/media-worker-dev:v1.2.3"
    run = run_stack("dev", {"workerImage": image})
    assert run.of_type(IMAGE) == []
    assert _container_of(run)["image"] == image
    assert run.warnings == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"workerMaxTasks": 201}, "workerMaxTasks=201: allowed 1..200"),
        (
            {"workerImage": "latest"},
            'workerImage="latest": allowed empty (build from services/worker) '
            "or registry/repository:tag or registry/repository@sha256:<digest>",
        ),
    ],
)
def test_g8_bad_worker_config_fails_before_any_resource(overrides, message):
    """Cases beyond the worker rows of test_settings.BAD_CONFIGURATIONS (cpu, memory, min
    tasks, min > max, zero weights, stop timeout), through the whole program."""
    with pytest.raises(ConfigError) as error:
        run_stack("dev", overrides)
    assert message in error.value.problems
    assert error.value.registered == []  # type: ignore[attr-defined]


def test_o1_container_insights_group_is_pre_created_encrypted_before_the_cluster(dev_run):
    run = dev_run
    group = run.named("worker-insights-logs")
    assert group.inputs["name"] == "/aws/ecs/containerinsights/media-workers-dev/performance"
    assert group.inputs["kmsKeyId"] == run.named("keys-logs-key").state["arn"]
    assert group.inputs["retentionInDays"] == 14
    assert group.urn in run.named("worker-cluster").dependencies


def test_w3_worker_image_runs_as_uid_1000_with_a_writable_scratch_volume():
    """The task mounts scratch on /tmp under a read-only root; the image must seed it."""
    dockerfile = (Path(__file__).resolve().parents[2] / "services/worker/Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    assert "RUN chmod 1777 /tmp" in lines
    assert 'VOLUME ["/tmp"]' in lines
    assert lines.index('VOLUME ["/tmp"]') < lines.index("USER 1000:1000")
    assert 'ENTRYPOINT ["python", "-m", "services.worker"]' in lines


def test_k3_m9_the_content_key_is_read_by_the_task_role_key_delivery_and_the_deployer(prod_run):
    """The stack passes key delivery's role (M9) and the role running Pulumi (refresh and
    replacement read the value)."""
    run = prod_run
    policy = json.loads(run.named("worker-content-key-policy").inputs["policy"])
    readers = policy["Statement"][0]["Condition"]["StringNotEquals"]["aws:PrincipalArn"]
    assert readers == [
        run.named("worker-task-role").state["arn"],
        run.named("delivery-role").state["arn"],
        "arn:aws:iam::123456789012:role/deployer",
    ]
