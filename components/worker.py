"""`MediaWorkerService`: the Fargate workers that process media jobs (W1-W4, W7-W9, K3).

An ECS cluster (Container Insights on) with FARGATE and FARGATE_SPOT associated, one service in
the private app subnets without public IPs, a task definition whose container runs as
uid/gid 1000 on a read-only root file system, secrets injected by ECS from Secrets Manager,
logs to a pre-created encrypted group, the shared EFS volume mounted with TLS and IAM, and
target-tracking scaling on backlog per task and on CPU.

The media path (M3-M6): sources come from the ingest bucket and renditions go to the media
bucket (`MediaStorage.grant_transcode` on the task role); the scratch they share is the task's
ephemeral storage, sized so the largest allowed upload fits (`scratch_rule`); the job timeout
is derived from the source limits (`job_timeout_seconds`), and the worker extends its queue
lease while a job runs, so the queue's visibility no longer bounds a job.

Two roles, never confused: the execution role is what ECS itself uses before the container
starts (pull the image, write logs, fetch the injected cache token); the task role is what
the worker code uses (consume jobs, write the stream, mount EFS, read the content key, log in
to the database as its own role with IAM tokens).

The content-protection key (K3) is generated here, stored in its own secret encrypted with the
Secrets Manager CMK, and handed to the worker by ARN only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build
import pulumi_random as random

from components.aws_limits import FARGATE_MEMORY_BY_CPU
from components.connections import DataPlane, db_ssl_problems
from components.firewall import RoleSecurityGroup
from components.iam import Grant, attach_grants, decrypt_via, service_role
from components.jobs import SQS_MAX_VISIBILITY_SECONDS
from components.logs import encrypted_log_group, retention_problems
from components.media_storage import TranscodeTarget
from components.naming import NameKind, name_tag
from components.observability import metric_alarm
from components.placement import AppPlacement
from components.protection import Lifecycle
from components.secrets import restrict_reads, stored_secret
from components.tunables import Problem, Tunables, describe, tunable
from services.contract import (
    CONTENT_KEY_BYTES,
    DEFAULT_LADDER,
    KEYRING_CURRENT,
    KEYRING_KEYS,
    MIB,
    SEGMENT_SECONDS_DEFAULT,
    SEGMENT_SECONDS_RANGE,
    SOURCE_MAX_DURATION_DEFAULT,
    TRANSFER_CONCURRENCY_DEFAULT,
    WORKER_DB_USER,
    EnvVar,
    env_flag,
    format_ladder,
    parse_ladder,
)

GrantFn = Callable[[str, aws.iam.Role], aws.iam.RolePolicy | None]
"""A component's grant helper, e.g. `jobs.grant_consume`: (resource name, role) -> policy."""

CONTAINER_NAME = "worker"
CONTAINER_UID_GID = "1000:1000"
SCRATCH_PATH = "/tmp"
MEDIA_ROOT = "/mnt/media"
HEALTH_COMMAND = ("CMD", "python", "-m", "services.worker.healthcheck")
ECR_PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300
IDLE_MINUTES = 15  # empty and nothing in flight this long before scaling to zero
KEEP_IMAGES = 20
UNTAGGED_IMAGE_DAYS = 7
# The worker stops taking jobs on SIGTERM and must be done before ECS sends SIGKILL.
SHUTDOWN_MARGIN_SECONDS = 10
# Fargate's ephemeral storage (GiB): 20 come free, 21-200 may be asked for.
EPHEMERAL_STORAGE_RANGE = (21, 200)
SCRATCH_SHARE = 0.45
"""Largest share of the scratch one source may take: the source and the renditions made
from it (an ABR ladder rarely totals more than its source) are both on disk at the end of a
job, and Fargate's ephemeral storage also holds the image's layers and the poster, so two
45 % shares leave a tenth for those."""
TRANSFER_BYTES_PER_SECOND = 50 * MIB
"""A conservative S3 throughput of one task, for the transfer part of the job timeout."""
TRANSFER_MARGIN_SECONDS = 300
CHEAPER_LADDER = "720:3000,480:1200,360:700"
"""The default ladder: what 1 vCPU / 2 GiB transcodes in reasonable time; production stacks
set `transcodeLadder` to `services.contract.DEFAULT_LADDER` (1080p at the top) on 4 vCPU."""
GIB_BYTES = 1024 * MIB

_IMAGE = r"^[a-z0-9][\w.-]*(:\d+)?(/[\w.-]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$"
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
    r"(?:\.cn)?/(?P<repository>[a-z0-9._/-]+?)(?::[\w][\w.-]*|@sha256:[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class EcrImage:
    """Where an `<account>.dkr.ecr.<region>.amazonaws.com/<repo>` image lives."""

    account_id: str
    region: str
    repository: str

    def repository_arn(self, partition: pulumi.Input[str]) -> pulumi.Output[str]:
        return pulumi.Output.concat(
            "arn:",
            partition,
            ":ecr:",
            self.region,
            ":",
            self.account_id,
            ":repository/",
            self.repository,
        )


def parse_ecr_image(image: str) -> EcrImage | None:
    """The ECR repository of `image`, or None for any other registry (pure; tested directly)."""
    found = _ECR_IMAGE.match(image)
    if not found:
        return None
    return EcrImage(found["account"], found["region"], found["repository"])


def content_tag(context_dir: str | os.PathLike[str]) -> str:
    """An image tag derived from every file of the build context (pure; tested directly).

    The repository's tags are immutable, so a tag must change whenever the image can: hash
    every file a build sends (byte code caches aside, which a build never needs).
    """
    root = Path(context_dir)
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for file_name in sorted(files):
            if file_name.endswith(".pyc"):
                continue
            path = Path(folder, file_name)
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return "src-" + digest.hexdigest()[:16]


def ecr_lifecycle_policy(
    keep_images: int = KEEP_IMAGES, untagged_days: int = UNTAGGED_IMAGE_DAYS
) -> dict[str, Any]:
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"expire untagged images after {untagged_days} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": untagged_days,
                },
                "action": {"type": "expire"},
            },
            {
                # A rule on "any" must have the lowest priority (highest number).
                "rulePriority": 2,
                "description": f"keep the last {keep_images} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_images,
                },
                "action": {"type": "expire"},
            },
        ]
    }


def capacity_strategy(base: int, fargate_weight: int, spot_weight: int) -> list[dict[str, Any]]:
    """`base` tasks on regular FARGATE, the rest split by weight with FARGATE_SPOT (W2)."""
    return [
        {"capacity_provider": "FARGATE", "base": base, "weight": fargate_weight},
        {"capacity_provider": "FARGATE_SPOT", "weight": spot_weight},
    ]


@dataclass(frozen=True, kw_only=True)
class SharedVolume:
    """The EFS file system the workers mount (built by `SharedFileSystem`)."""

    file_system_id: pulumi.Input[str]
    """EFS file-system id (required)."""
    access_point_id: pulumi.Input[str]
    """Access point the mount goes through; it fixes the POSIX user and root (required)."""
    grant_mount: GrantFn
    """Grants ClientMount/ClientWrite through the access point to a role (required)."""
    mount_targets: Sequence[pulumi.Resource] = ()
    """Mount targets the service waits for, so first tasks don't fail to mount. Default none."""

    @classmethod
    def of(cls, files: Any) -> Self:
        """The volume of a `SharedFileSystem`."""
        return cls(
            file_system_id=files.file_system_id,
            access_point_id=files.access_point_id,
            grant_mount=files.grant_mount,
            mount_targets=files.mount_targets,
        )


@dataclass(frozen=True, kw_only=True)
class WorkerConnections(DataPlane):
    """The data plane plus the queues the worker consumes (its environment contract)."""

    jobs_queue_url: pulumi.Input[str]
    """SQS jobs queue URL (required)."""
    jobs_queue_name: pulumi.Input[str]
    """SQS jobs queue name, the dimension of the backlog metric (required)."""
    dead_letter_queue_url: pulumi.Input[str]
    """SQS dead-letter queue URL (required)."""
    max_receive_count: int
    """Receives before SQS moves a job to the DLQ (required)."""

    @classmethod
    def of_tiers(cls, *, database: Any, cache: Any, stream: Any, jobs: Any) -> Self:
        """The data plane plus the platform's own job queue."""
        return super().of_tiers(
            database=database,
            cache=cache,
            stream=stream,
            jobs_queue_url=jobs.queue_url,
            jobs_queue_name=jobs.queue_name,
            dead_letter_queue_url=jobs.dlq_url,
            max_receive_count=jobs.max_receive_count,
        )


def _ladder_ok(text: str) -> bool:
    try:
        parse_ladder(text)
    except ValueError:
        return False
    return True


def job_timeout_seconds(
    max_duration_seconds: int, seconds_per_media_second: float, max_source_bytes: int
) -> int:
    """Longest one job may take, derived from the limits a source must meet (pure).

    Transcoding a source of the longest allowed duration at the measured speed, plus moving
    the largest allowed source down and its renditions up (about as much again)."""
    transcode = math.ceil(max_duration_seconds * seconds_per_media_second)
    transfer = math.ceil(2 * max_source_bytes / TRANSFER_BYTES_PER_SECOND)
    return transcode + transfer + TRANSFER_MARGIN_SECONDS


def job_timeout_rule(
    max_duration_seconds: int, seconds_per_media_second: float, max_source_bytes: int
) -> list[Problem]:
    """A job must fit SQS's lease ceiling: a message's visibility can be extended to at most
    12 hours after it was received, however often the worker extends it."""
    timeout = job_timeout_seconds(max_duration_seconds, seconds_per_media_second, max_source_bytes)
    if timeout <= SQS_MAX_VISIBILITY_SECONDS:
        return []
    return [
        Problem(
            "source_max_duration_seconds",
            max_duration_seconds,
            f"a duration whose job fits SQS's {SQS_MAX_VISIBILITY_SECONDS} s lease ceiling: "
            f"{{source_max_duration_seconds}} x {{transcode_seconds_per_media_second}} "
            f"({seconds_per_media_second}) plus the transfer of {{upload_max_bytes}} "
            f"({max_source_bytes}) gives {timeout} s",
        )
    ]


def scratch_rule(max_source_bytes: int, ephemeral_storage_gib: int) -> list[Problem]:
    """The largest source must fit the task's scratch (see `SCRATCH_SHARE`)."""
    fits = math.floor(ephemeral_storage_gib * GIB_BYTES * SCRATCH_SHARE)
    if max_source_bytes <= fits:
        return []
    return [
        Problem(
            "upload_max_bytes",
            max_source_bytes,
            f"<= {int(SCRATCH_SHARE * 100)} % of {{ephemeral_storage_gib}} "
            f"({ephemeral_storage_gib} GiB = {fits} bytes): the source and its renditions "
            "share the task's scratch",
        )
    ]


def fargate_memory_rule(cpu: int, memory: int) -> list[Problem]:
    """Fargate runs only its documented cpu/memory pairs."""
    allowed = FARGATE_MEMORY_BY_CPU.get(cpu)
    if allowed is None or memory in allowed:
        return []
    step = allowed[1] - allowed[0] if len(allowed) > 1 else allowed[0]
    return [
        Problem(
            "memory",
            memory,
            f"for {{cpu}}={cpu}: {allowed[0]}..{allowed[-1]} in steps of {step} "
            f"({', '.join(map(str, allowed))})",
        )
    ]


@dataclass(frozen=True, kw_only=True)
class MediaWorkerServiceSettings(Tunables):
    """The workers' tunables (W2-W4, W7, W8)."""

    TIER = "worker"

    cpu: int = tunable(
        "workerCpu",
        1024,
        "Task CPU units, a Fargate size (W3).",
        choices=tuple(FARGATE_MEMORY_BY_CPU),
    )
    memory: int = tunable(
        "workerMemory", 2048, "Task memory MiB (W3).", allowed="a Fargate memory size for workerCpu"
    )
    ephemeral_storage_gib: int = tunable(
        "workerEphemeralStorageGiB",
        120,
        "Task ephemeral storage in GiB: the transcoding scratch (source and renditions) (M4).",
        range=EPHEMERAL_STORAGE_RANGE,
    )
    transcode_ladder: str = tunable(
        "transcodeLadder",
        CHEAPER_LADDER,
        "ABR ladder as height:videoKbps pairs, e.g. " + DEFAULT_LADDER + " (M4).",
        check=_ladder_ok,
        allowed="1-8 distinct rungs height:kbps, even heights 144..2160, 100..50000 kb/s",
    )
    segment_seconds: int = tunable(
        "segmentSeconds",
        SEGMENT_SECONDS_DEFAULT,
        "HLS segment length; keyframes are placed on segment boundaries (M4).",
        range=SEGMENT_SECONDS_RANGE,
    )
    source_max_duration_seconds: int = tunable(
        "sourceMaxDurationSeconds",
        SOURCE_MAX_DURATION_DEFAULT,
        "Longest source the worker accepts; with transcodeSecondsPerMediaSecond it sets the "
        "job timeout (M3).",
        range=(1, 86_400),
    )
    transcode_seconds_per_media_second: float = tunable(
        "transcodeSecondsPerMediaSecond",
        1.0,
        "Measured transcode time per second of source for the ladder on this task size; "
        "sets the job timeout.",
        kind="number",
        range=(0.01, 100),
    )
    transfer_concurrency: int = tunable(
        "workerTransferConcurrency",
        TRANSFER_CONCURRENCY_DEFAULT,
        "Parallel S3 transfers (parts, segments) per job.",
        range=(1, 64),
    )
    content_key_versions: int = tunable(
        "contentKeyVersions",
        1,
        "Versions of the content key in the keyring (K3, M5). Raising it by one rotates: new "
        "titles are keyed from the newest version, earlier titles keep theirs and stay "
        "playable. Never lower it (the versions it drops would leave their titles unplayable; "
        "with data protection the engine refuses).",
        range=(1, 50),
    )
    min_tasks: int = tunable(
        "workerMinTasks",
        2,
        "Fewest tasks and the initial desired count (W7). 0 lets an idle stack run no task: the "
        "first queued job wakes one within about two minutes, and the service returns to 0 once "
        "the queue has been empty, nothing in flight, for 15 minutes.",
        range=(2, 200),  # one per AZ at least while the service runs (G7)
        also=(0,),
    )
    max_tasks: int = tunable(
        "workerMaxTasks", 20, "Most tasks, >= workerMinTasks (W7).", range=(1, 200)
    )
    fargate_base: int = tunable(
        "workerFargateBase",
        1,
        "Tasks always on regular FARGATE before the weights apply (W2).",
        range=(0, 100),
    )
    fargate_weight: int = tunable(
        "workerFargateWeight", 1, "Weight of FARGATE beyond the base (W2).", range=(0, 1000)
    )
    spot_weight: int = tunable(
        "workerSpotWeight", 3, "Weight of FARGATE_SPOT beyond the base (W2).", range=(0, 1000)
    )
    image: str = tunable(
        "workerImage",
        "",
        "Worker image URI; empty builds services/worker and pushes it to the stack's ECR.",
        pattern=f"^$|{_IMAGE}",
        allowed="empty (build from services/worker) or registry/repository:tag or "
        "registry/repository@sha256:<digest>",
    )
    efs_mount: bool = tunable(
        "workerEfsMount",
        True,
        "Mount the shared EFS file system into the workers (W4); off is a logged opt-out.",
    )
    cpu_target: int = tunable(
        "workerCpuTarget", 70, "Average CPU % the CPU scaling policy holds (W7).", range=(10, 90)
    )
    backlog_per_task: int = tunable(
        "workerBacklogPerTask",
        10,
        "Visible jobs per running task the backlog scaling policy holds (W7).",
        range=(1, 1000),
    )
    stop_timeout_seconds: int = tunable(
        "workerStopTimeoutSeconds",
        110,
        "Grace between SIGTERM and SIGKILL; Spot warns 120 s ahead (W8).",
        range=(2, 120),
    )
    cpu_alarm_percent: int = tunable(
        "alarmWorkerCpuPercent", 85, "Worker service CPU % that alarms.", range=(1, 100)
    )
    memory_alarm_percent: int = tunable(
        "alarmWorkerMemoryPercent", 85, "Worker service memory % that alarms.", range=(1, 100)
    )

    def rules(self) -> list[Problem]:
        problems = fargate_memory_rule(self.cpu, self.memory)
        if self.max_tasks < self.min_tasks:
            problems.append(
                Problem("max_tasks", self.max_tasks, f">= {{min_tasks}} ({self.min_tasks})")
            )
        if self.fargate_weight + self.spot_weight == 0:
            problems.append(
                Problem(
                    "spot_weight",
                    self.spot_weight,
                    "> 0 or {fargate_weight} > 0 (all-zero weights launch nothing past the base)",
                )
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class MediaWorkerServiceArgs(MediaWorkerServiceSettings, AppPlacement):
    """Inputs of `MediaWorkerService`: its settings, its placement and what the stack wires in."""

    connections: WorkerConnections
    """What the worker talks to (required)."""
    logs_key_arn: pulumi.Input[str]
    """CMK of the container log group (required)."""
    images_key_arn: pulumi.Input[str]
    """CMK of the ECR repository (required)."""
    secrets_key_arn: pulumi.Input[str]
    """Secrets Manager CMK for the content-protection key secret (required)."""
    alarm_topic_arn: pulumi.Input[str]
    """Topic the worker alarms notify (required)."""
    deployer_arn: pulumi.Input[str] | None = None
    """IAM role (or user) that runs Pulumi. It may read the content key back, which the
    provider does on refresh and replacement; it can rewrite the secret's policy anyway, so
    this grants it nothing new. Default none: then only the task role reads the value, and
    refreshing this secret fails with AccessDenied."""
    content_key_readers: Sequence[pulumi.Input[str]] = ()
    """Role ARNs besides the task role that may read the content key: the key-delivery
    function's, which derives title keys for authorised players (K3, M9). Default none."""
    execution_grants: Mapping[str, GrantFn] = field(default_factory=dict)
    """Label -> grant letting the execution role read an injected secret (data tier's
    `grant_secret_read`). Default none."""
    task_grants: Mapping[str, GrantFn] = field(default_factory=dict)
    """Label -> grant for the worker code (`jobs.grant_consume`, `stream.grant_write`).
    Default none."""
    shared_volume: SharedVolume | None = None
    """EFS to mount at /mnt/media; required while `efs_mount` is on. Default none."""
    build_context: str = "services"
    """Docker build context, relative to the project. Default `services`."""
    dockerfile: str = "services/worker/Dockerfile"
    """Dockerfile of the worker image. Default `services/worker/Dockerfile`."""
    media: TranscodeTarget
    """The buckets sources come from and renditions go to, and the grant (required)."""
    visibility_timeout_seconds: int = 1200
    """Jobs-queue visibility timeout; the worker extends its lease every third of it while a
    job runs. Default 1200."""
    log_retention_days: int = 30
    """Container log retention (an allowed CloudWatch value). Default 30."""
    log_level: str = "INFO"
    """Worker log level. Default INFO."""
    db_ssl: str = "verify-full"
    """`DB_SSL`: `verify-full` (default: checked against the RDS CA bundle the image ships in
    `services/common/certs`) or `require` (encrypted, unchecked)."""
    db_user: str = WORKER_DB_USER
    """Database role the worker logs in as with IAM tokens (created by the migrations; grant
    the task role `rds-db:connect` through `task_grants`). Default `media_worker`."""
    start_after: Sequence[pulumi.Resource] = ()
    """What the service's first tasks wait for, e.g. the schema migration. Default none."""
    protect_data: bool = False
    """False (default): the image repository is deleted with its images on destroy and the
    content-key secret at once. True: the repository is kept while it holds images and the
    content key has a 30-day recovery window (G3)."""

    @property
    def job_timeout_seconds(self) -> int:
        """Derived from the source limits (`job_timeout_seconds`)."""
        return job_timeout_seconds(
            self.source_max_duration_seconds,
            self.transcode_seconds_per_media_second,
            self.media.max_source_bytes,
        )

    def validate(self) -> None:
        problems = self.tunable_problems()
        problems += describe(
            [
                *scratch_rule(self.media.max_source_bytes, self.ephemeral_storage_gib),
                *job_timeout_rule(
                    self.source_max_duration_seconds,
                    self.transcode_seconds_per_media_second,
                    self.media.max_source_bytes,
                ),
            ],
            lambda name: "media.max_source_bytes" if name == "upload_max_bytes" else name,
        )
        if len(self.subnet_ids) < 2:
            problems.append(
                f"subnet_ids={len(self.subnet_ids)} subnet(s): allowed one app "
                "subnet per AZ, at least 2 (W1, G7)"
            )
        if self.efs_mount and self.shared_volume is None:
            problems.append("shared_volume: required while efs_mount is True (W4)")
        if not self.image and not Path(self.build_context).is_dir():
            problems.append(f"build_context={self.build_context!r}: not a directory")
        if not self.image and not Path(self.dockerfile).is_file():
            problems.append(
                f"dockerfile={self.dockerfile!r}: no such file (set image to run "
                "a prebuilt image instead)"
            )
        problems += retention_problems("log_retention_days", self.log_retention_days)
        problems += db_ssl_problems("db_ssl", self.db_ssl)
        if problems:
            raise ValueError("MediaWorkerServiceArgs: " + "; ".join(problems))


class MediaWorkerService(pulumi.ComponentResource):
    """Fargate + Fargate Spot workers: cluster, image, task, service, scaling, alarms."""

    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    service_name: pulumi.Output[str]
    security_group: RoleSecurityGroup
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    log_group_name: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    content_key_secret_arn: pulumi.Output[str]
    image_ref: pulumi.Output[str]

    def __init__(
        self, name: str, args: MediaWorkerServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:worker:MediaWorkerService", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        if not args.efs_mount:
            pulumi.log.warn(
                "MediaWorkerService: efs_mount=False (config workerEfsMount=false): workers get "
                f"no shared media volume at {MEDIA_ROOT} (W4 opt-out)",
                resource=self,
            )
        namer = args.namer
        self.security_group = RoleSecurityGroup(
            f"{name}-sg",
            role="worker",
            description="Media workers: egress to granted roles only",
            vpc_id=args.vpc_id,
            namer=namer,
            parent=self,
        )
        # Tasks connect the moment they start: the service waits for every flow they use.
        self._flows = args.open_flows(self.security_group)
        self._cluster()
        self._repository()
        self.log_group = encrypted_log_group(
            f"{name}-logs",
            name=namer.path("/ecs/", "worker"),
            kms_key_arn=args.logs_key_arn,
            retention_days=args.log_retention_days,
            parent=self,
        )
        self.log_group_name = self.log_group.name
        self.execution_role = self._role("exec", "worker-exec")
        self.task_role = self._role("task", "worker-task")
        self._content_key()
        self.image_ref = self._image()
        policies = [*self._execution_policies(), *self._task_policies()]
        self.task_definition = self._task_definition()
        self._service(policies)
        self._scaling()
        self._alarms()
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "cluster_arn": self.cluster_arn,
                "service_name": self.service_name,
                "security_group_id": self.security_group.id,
                "task_role_arn": self.task_role.arn,
                "execution_role_arn": self.execution_role.arn,
                "log_group_name": self.log_group_name,
                "repository_url": self.repository_url,
                "content_key_secret_arn": self.content_key_secret_arn,
                "image_ref": self.image_ref,
            }
        )

    # -- cluster, repository, image --------------------------------------------------------
    def _cluster(self) -> None:
        args, name = self._args, self._name
        cluster_name = args.namer.name("workers", NameKind.ECS)
        # Container Insights would create this group itself: unencrypted, never expiring and
        # left behind on destroy. Pre-created, it is encrypted, expires and goes with the stack.
        self.insights_log_group = encrypted_log_group(
            f"{name}-insights-logs",
            name=f"/aws/ecs/containerinsights/{cluster_name}/performance",
            kms_key_arn=args.logs_key_arn,
            retention_days=args.log_retention_days,
            parent=self,
        )
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=cluster_name,
            # RunningTaskCount (backlog scaling, task-count alarm) exists only with insights on.
            settings=[{"name": "containerInsights", "value": "enabled"}],
            tags=name_tag(cluster_name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.insights_log_group]),
        )
        self.cluster_name, self.cluster_arn = self.cluster.name, self.cluster.arn
        # A service naming FARGATE_SPOT fails unless this association exists first.
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=self._strategy(),
            opts=self._child,
        )

    def _strategy(self) -> list[dict[str, Any]]:
        args = self._args
        return capacity_strategy(args.fargate_base, args.fargate_weight, args.spot_weight)

    def _repository(self) -> None:
        args, name = self._args, self._name
        repo_name = args.namer.name("worker", NameKind.ECR_REPOSITORY)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=repo_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.images_key_arn}],
            force_delete=Lifecycle(args.protect_data).destroyable,
            tags=name_tag(repo_name),
            opts=self._child,
        )
        self.repository_url = self.repository.repository_url
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=self.repository.name,
            policy=pulumi.Output.json_dumps(ecr_lifecycle_policy()),
            opts=self._child,
        )

    def _image(self) -> pulumi.Output[str]:
        args, name = self._args, self._name
        if args.image:
            return pulumi.Output.from_input(args.image)
        token = aws.ecr.get_authorization_token_output(
            registry_id=self.repository.registry_id, opts=pulumi.InvokeOptions(parent=self)
        )
        self.image = docker_build.Image(
            f"{name}-image",
            context={"location": args.build_context},
            dockerfile={"location": args.dockerfile},
            # Fargate Spot runs X86_64 only; build for it whatever the build host is.
            platforms=[docker_build.Platform.LINUX_AMD64],
            push=True,
            # `pulumi preview` (pull-request checks) needs no Docker daemon; `up` builds.
            build_on_preview=False,
            tags=[pulumi.Output.concat(self.repository_url, ":", content_tag(args.build_context))],
            registries=[
                {
                    "address": self.repository_url,
                    "username": token.user_name,
                    "password": token.password,
                }
            ],
            opts=self._child,
        )
        # Run exactly the pushed bytes: a digest cannot be re-pointed the way a tag can.
        return pulumi.Output.concat(self.repository_url, "@", self.image.digest)

    # -- roles and their policies ----------------------------------------------------------
    def _role(self, label: str, role: str) -> aws.iam.Role:
        ctx = self._args.context
        return service_role(
            f"{self._name}-{label}-role",
            role=role,
            service="ecs-tasks.amazonaws.com",
            ctx=ctx,
            namer=self._args.namer,
            parent=self,
            source_arn=pulumi.Output.concat(
                "arn:", ctx.partition, ":ecs:", ctx.region, ":", ctx.account_id, ":*"
            ),
        )

    def _pull_grants(self) -> list[Grant]:
        args, ctx = self._args, self._args.context
        if args.image:
            external = parse_ecr_image(args.image)
            if external is None:
                # A public registry needs no IAM; a private non-ECR one would need
                # repositoryCredentials, which this component does not offer.
                return []
            repositories: tuple[pulumi.Input[str], ...] = (external.repository_arn(ctx.partition),)
        else:
            repositories = (self.repository.arn,)
        grants = [
            # GetAuthorizationToken is account-wide: IAM accepts no narrower resource.
            Grant("EcrAuthorizationToken", ("ecr:GetAuthorizationToken",), ("*",)),
            Grant("PullWorkerImage", ECR_PULL_ACTIONS, repositories),
        ]
        if not args.image:
            grants.append(decrypt_via("DecryptImageLayers", args.images_key_arn, "ecr", ctx))
        return grants

    def _execution_policies(self) -> list[aws.iam.RolePolicy]:
        name, role = self._name, self.execution_role
        grants = [
            *self._pull_grants(),
            Grant(
                "WriteContainerLogs",
                ("logs:CreateLogStream", "logs:PutLogEvents"),
                (pulumi.Output.concat(self.log_group.arn, ":*"),),
            ),
        ]
        policies = [attach_grants(f"{name}-exec-policy", role, grants, parent=self)]
        for label, grant in self._args.execution_grants.items():
            policies.append(grant(f"{name}-exec-{label}", role))
        return [p for p in policies if p is not None]

    def _task_policies(self) -> list[aws.iam.RolePolicy]:
        args, name, role, ctx = self._args, self._name, self.task_role, self._args.context
        grants = [
            Grant(
                "ReadContentKey", ("secretsmanager:GetSecretValue",), (self.content_key_secret.arn,)
            ),
            decrypt_via("DecryptContentKey", args.secrets_key_arn, "secretsmanager", ctx),
        ]
        policies = [
            attach_grants(f"{name}-task-policy", role, grants, parent=self),
            args.media.grant_transcode(f"{name}-task-media", role),
        ]
        for label, grant in args.task_grants.items():
            policies.append(grant(f"{name}-task-{label}", role))
        if args.efs_mount and args.shared_volume is not None:
            policies.append(args.shared_volume.grant_mount(f"{name}-task-efs", role))
        return [p for p in policies if p is not None]

    # -- content-protection key (K3) -------------------------------------------------------
    def _content_key(self) -> None:
        args, name = self._args, self._name
        # One random key per version; the first keeps its original logical name. Protected
        # with the data: dropping a version would strand the titles keyed from it.
        materials = [
            random.RandomBytes(
                f"{name}-content-key-material" + (f"-v{number}" if number > 1 else ""),
                length=CONTENT_KEY_BYTES,
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect_data),
            )
            for number in range(1, args.content_key_versions + 1)
        ]
        # The keyring of services/contract.py: rotation adds a version and moves `current`,
        # earlier versions stay so titles keyed from them stay playable (M5).
        value = pulumi.Output.secret(
            pulumi.Output.all(*[m.base64 for m in materials]).apply(keyring_document)
        )
        self.content_key_secret, version = stored_secret(
            f"{name}-content-key",
            namer=args.namer,
            stem="content-key",
            description="Content-protection key material of the media workers (K3)",
            value=value,
            kms_key_arn=args.secrets_key_arn,
            protect_data=args.protect_data,
            parent=self,
        )
        self.content_key_secret_arn = self.content_key_secret.arn
        # Only the worker task role, the key-delivery function (M9) and the deployer read it.
        readers = [self.task_role.arn, *args.content_key_readers]
        if args.deployer_arn is not None:
            readers.append(args.deployer_arn)
        restrict_reads(
            f"{name}-content-key-policy",
            secret=self.content_key_secret,
            version=version,
            sid="OnlyWorkerTaskRoleReadsContentKey",
            readers=readers,
            parent=self,
        )

    # -- task definition and service -------------------------------------------------------
    def _environment(self) -> list[dict[str, pulumi.Input[str]]]:
        args, c, media = self._args, self._args.connections, self._args.media
        values: dict[str, pulumi.Input[str]] = {
            **c.environment(args.db_ssl, args.db_user),
            EnvVar.JOBS_QUEUE_URL: c.jobs_queue_url,
            EnvVar.DEAD_LETTER_QUEUE_URL: c.dead_letter_queue_url,
            EnvVar.MAX_RECEIVE_COUNT: str(c.max_receive_count),
            EnvVar.JOB_TIMEOUT_SECONDS: str(args.job_timeout_seconds),
            EnvVar.VISIBILITY_TIMEOUT_SECONDS: str(args.visibility_timeout_seconds),
            EnvVar.STOP_TIMEOUT_SECONDS: str(
                max(1, args.stop_timeout_seconds - SHUTDOWN_MARGIN_SECONDS)
            ),
            EnvVar.SCRATCH_DIR: SCRATCH_PATH,
            EnvVar.CONTENT_KEY_SECRET_ARN: self.content_key_secret_arn,
            EnvVar.LOG_LEVEL: args.log_level,
            EnvVar.INGEST_BUCKET: media.ingest_bucket,
            EnvVar.MEDIA_BUCKET: media.media_bucket,
            EnvVar.UPLOAD_MAX_BYTES: str(media.max_source_bytes),
            EnvVar.DELETE_SOURCE_AFTER_PROCESSING: env_flag(media.delete_source),
            EnvVar.TRANSCODE_LADDER: format_ladder(parse_ladder(args.transcode_ladder)),
            EnvVar.SEGMENT_SECONDS: str(args.segment_seconds),
            EnvVar.SOURCE_MAX_DURATION_SECONDS: str(args.source_max_duration_seconds),
            EnvVar.TRANSFER_CONCURRENCY: str(args.transfer_concurrency),
        }
        if args.efs_mount:
            values[EnvVar.MEDIA_ROOT] = MEDIA_ROOT
        # The AUTH token by its secret, read by the worker itself (task role), not injected
        # at task start: a rotation (twice in a task's life) would strand an injected copy.
        if c.redis_auth_secret_arn is not None:
            values[EnvVar.REDIS_AUTH_SECRET_ARN] = c.redis_auth_secret_arn
        return [{"name": key, "value": value} for key, value in sorted(values.items())]

    def _mounts(self) -> list[dict[str, Any]]:
        mounts = [{"sourceVolume": "scratch", "containerPath": SCRATCH_PATH, "readOnly": False}]
        if self._args.efs_mount:
            mounts.append({"sourceVolume": "media", "containerPath": MEDIA_ROOT, "readOnly": False})
        return mounts

    def _volumes(self) -> list[dict[str, Any]]:
        # A bind mount without a host path is task-local scratch space (the root is read-only).
        volumes: list[dict[str, Any]] = [{"name": "scratch"}]
        shared = self._args.shared_volume
        if self._args.efs_mount and shared is not None:
            volumes.append(
                {
                    "name": "media",
                    "efs_volume_configuration": {
                        "file_system_id": shared.file_system_id,
                        # IAM authorisation is refused without TLS; the access point sets the root.
                        "transit_encryption": "ENABLED",
                        "authorization_config": {
                            "access_point_id": shared.access_point_id,
                            "iam": "ENABLED",
                        },
                    },
                }
            )
        return volumes

    def _container(self) -> dict[str, Any]:
        args = self._args
        return {
            "name": CONTAINER_NAME,
            "image": self.image_ref,
            "essential": True,
            "user": CONTAINER_UID_GID,
            "readonlyRootFilesystem": True,
            "stopTimeout": args.stop_timeout_seconds,
            # An init process forwards SIGTERM to the worker and reaps ffprobe children.
            "linuxParameters": {"initProcessEnabled": True},
            "environment": self._environment(),
            "mountPoints": self._mounts(),
            "healthCheck": {
                "command": list(HEALTH_COMMAND),
                "interval": 30,
                "timeout": 10,
                "retries": 3,
                "startPeriod": 120,
            },
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group.name,
                    "awslogs-region": args.context.region,
                    "awslogs-stream-prefix": CONTAINER_NAME,
                },
            },
        }

    def _task_definition(self) -> aws.ecs.TaskDefinition:
        args, name = self._args, self._name
        family = args.namer.name("worker", NameKind.ECS)
        return aws.ecs.TaskDefinition(
            f"{name}-task",
            family=family,
            cpu=str(args.cpu),
            memory=str(args.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={"cpu_architecture": "X86_64", "operating_system_family": "LINUX"},
            # The scratch volume lives here: the source and its renditions (M4).
            ephemeral_storage={"size_in_gib": args.ephemeral_storage_gib},
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=pulumi.Output.json_dumps([self._container()]),
            volumes=self._volumes(),
            tags=name_tag(family),
            opts=self._child,
        )

    def _service(self, policies: list[aws.iam.RolePolicy]) -> None:
        args, name = self._args, self._name
        service_name = args.namer.name("worker", NameKind.ECS)
        mount_targets = (
            list(args.shared_volume.mount_targets)
            if (args.efs_mount and args.shared_volume is not None)
            else []
        )
        self.service = aws.ecs.Service(
            f"{name}-service",
            name=service_name,
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=args.min_tasks,
            # No launch_type: it conflicts with a capacity-provider strategy.
            capacity_provider_strategies=self._strategy(),
            # A strategy change only takes effect with a new deployment.
            force_new_deployment=True,
            network_configuration={
                "subnets": list(args.subnet_ids),
                "security_groups": [self.security_group.id],
                "assign_public_ip": False,
            },
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            availability_zone_rebalancing="ENABLED",
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # `pulumi up` fails when tasks never get healthy instead of reporting success; the
            # circuit breaker has then already rolled back to the last completed deployment.
            wait_for_steady_state=True,
            tags=name_tag(service_name),
            opts=pulumi.ResourceOptions(
                parent=self,
                # Association before a strategy names FARGATE_SPOT; policies and mount targets
                # outlive the service on destroy so draining tasks keep their access.
                depends_on=[
                    self.capacity_providers,
                    *policies,
                    *mount_targets,
                    *self._flows,
                    *args.start_after,
                ],
                # App Auto Scaling owns the count after creation.
                ignore_changes=["desiredCount"],
            ),
        )
        self.service_name = self.service.name

    # -- scaling and alarms ----------------------------------------------------------------
    def _scaling(self) -> None:
        args, name = self._args, self._name
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", self.cluster.name, "/", self.service.name),
            min_capacity=args.min_tasks,
            max_capacity=args.max_tasks,
            opts=self._child,
        )
        common = {
            "resource_id": target.resource_id,
            "scalable_dimension": target.scalable_dimension,
            "service_namespace": target.service_namespace,
            "policy_type": "TargetTrackingScaling",
            "opts": self._child,
        }
        cooldowns = {
            "scale_out_cooldown": SCALE_OUT_COOLDOWN_SECONDS,
            "scale_in_cooldown": SCALE_IN_COOLDOWN_SECONDS,
            # Scaling to zero: only the idle alarm scales in, once nothing is in flight, so no
            # task is stopped mid-transcode on the way down.
            "disable_scale_in": args.min_tasks == 0,
        }
        aws.appautoscaling.Policy(
            f"{name}-scale-backlog",
            name=args.namer.name("worker-backlog"),
            **common,
            target_tracking_scaling_policy_configuration={
                "target_value": args.backlog_per_task,
                "customized_metric_specification": {"metrics": self._backlog_metrics()},
                **cooldowns,
            },
        )
        aws.appautoscaling.Policy(
            f"{name}-scale-cpu",
            name=args.namer.name("worker-cpu"),
            **common,
            target_tracking_scaling_policy_configuration={
                "target_value": args.cpu_target,
                "predefined_metric_specification": {
                    "predefined_metric_type": "ECSServiceAverageCPUUtilization"
                },
                **cooldowns,
            },
        )
        if args.min_tasks == 0:
            self._scale_from_and_to_zero(target)

    def _scale_from_and_to_zero(self, target: aws.appautoscaling.Target) -> None:
        """Backlog per task cannot be tracked with no task (it divides by the running count),
        so a visible job wakes the first task, and an empty queue with nothing in flight
        returns the service to zero (PITFALLS 151)."""
        args, name, namer = self._args, self._name, self._args.namer
        common = {
            "resource_id": target.resource_id,
            "scalable_dimension": target.scalable_dimension,
            "service_namespace": target.service_namespace,
            "policy_type": "StepScaling",
            "opts": self._child,
        }
        wake = aws.appautoscaling.Policy(
            f"{name}-scale-wake",
            name=namer.name("worker-wake"),
            **common,
            step_scaling_policy_configuration={
                "adjustment_type": "ChangeInCapacity",
                "cooldown": SCALE_OUT_COOLDOWN_SECONDS,
                "metric_aggregation_type": "Maximum",
                "step_adjustments": [{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}],
            },
        )
        idle = aws.appautoscaling.Policy(
            f"{name}-scale-idle",
            name=namer.name("worker-idle"),
            **common,
            step_scaling_policy_configuration={
                "adjustment_type": "ExactCapacity",
                "cooldown": SCALE_IN_COOLDOWN_SECONDS,
                "metric_aggregation_type": "Maximum",
                "step_adjustments": [{"metric_interval_upper_bound": "0", "scaling_adjustment": 0}],
            },
        )
        queue = {"QueueName": args.connections.jobs_queue_name}
        aws.cloudwatch.MetricAlarm(
            f"{name}-wake-alarm",
            name=namer.name("worker-wake"),
            alarm_description="A job is waiting: start a worker (scaling from zero, W7)",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions=queue,
            statistic="Maximum",
            period=60,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            # An idle queue publishes nothing: silence is no job.
            treat_missing_data="notBreaching",
            alarm_actions=[wake.arn],
            opts=self._child,
        )
        aws.cloudwatch.MetricAlarm(
            f"{name}-idle-alarm",
            name=namer.name("worker-idle"),
            alarm_description="No job waiting or in flight for 15 minutes: scale to zero (W7)",
            comparison_operator="LessThanOrEqualToThreshold",
            threshold=0,
            evaluation_periods=IDLE_MINUTES,
            # SQS publishes nothing for a queue idle long enough: silence is idle too.
            treat_missing_data="breaching",
            metric_queries=[
                *(
                    {
                        "id": metric_id,
                        "return_data": False,
                        "metric": {
                            "namespace": "AWS/SQS",
                            "metric_name": metric,
                            "dimensions": queue,
                            "stat": "Maximum",
                            "period": 60,
                        },
                    }
                    for metric_id, metric in (
                        ("visible", "ApproximateNumberOfMessagesVisible"),
                        ("inflight", "ApproximateNumberOfMessagesNotVisible"),
                    )
                ),
                {"id": "jobs", "expression": "visible + inflight", "return_data": True},
            ],
            alarm_actions=[idle.arn],
            opts=self._child,
        )

    def _backlog_metrics(self) -> list[dict[str, Any]]:
        """Visible jobs divided by running tasks: the backlog each task faces (W7)."""
        queue = self._args.connections.jobs_queue_name
        service_dims = [
            {"name": "ClusterName", "value": self.cluster.name},
            {"name": "ServiceName", "value": self.service.name},
        ]
        return [
            {
                "id": "m1",
                "label": "visible jobs",
                "return_data": False,
                "metric_stat": {
                    "stat": "Sum",
                    "metric": {
                        "namespace": "AWS/SQS",
                        "metric_name": "ApproximateNumberOfMessagesVisible",
                        "dimensions": [{"name": "QueueName", "value": queue}],
                    },
                },
            },
            {
                "id": "m2",
                "label": "running tasks",
                "return_data": False,
                "metric_stat": {
                    "stat": "Average",
                    "metric": {
                        "namespace": "ECS/ContainerInsights",
                        "metric_name": "RunningTaskCount",
                        "dimensions": service_dims,
                    },
                },
            },
            {"id": "e1", "label": "backlog per task", "expression": "m1 / m2", "return_data": True},
        ]

    def _alarms(self) -> None:
        args, name, namer = self._args, self._name, self._args.namer
        dims = {"ClusterName": self.cluster.name, "ServiceName": self.service.name}
        common = {
            "dimensions": dims,
            "statistic": "Average",
            "topic_arn": args.alarm_topic_arn,
            "parent": self,
        }
        for label, metric, percent, what in (
            ("cpu", "CPUUtilization", args.cpu_alarm_percent, "CPU"),
            ("memory", "MemoryUtilization", args.memory_alarm_percent, "memory"),
        ):
            metric_alarm(
                f"{name}-{label}-alarm",
                alarm_name=namer.name(f"worker-{label}-high"),
                description=f"Worker {what} above {percent}% (W9)",
                namespace="AWS/ECS",
                metric_name=metric,
                comparison="GreaterThanThreshold",
                threshold=percent,
                evaluation_periods=2,
                **common,
            )
        if args.min_tasks == 0:
            return  # no floor to fall below; the wake alarm brings a task for any job
        metric_alarm(
            f"{name}-tasks-alarm",
            alarm_name=namer.name("worker-tasks-low"),
            description=f"Fewer than {args.min_tasks} worker tasks running (W1, W7)",
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            comparison="LessThanThreshold",
            threshold=args.min_tasks,
            period=60,
            evaluation_periods=5,
            # No datapoints means no tasks reporting: that is the outage this alarm is for.
            treat_missing_data="breaching",
            **common,
        )


def keyring_document(keys_base64: list[str]) -> str:
    """The keyring secret's JSON: every version by its id, the newest current."""
    keys = {_key_id(key): key for key in keys_base64}
    return json.dumps(
        {KEYRING_CURRENT: _key_id(keys_base64[-1]), KEYRING_KEYS: keys}, sort_keys=True
    )


def _key_id(key_base64: str) -> str:
    """A stable, non-secret id for the key: a prefix of its SHA-256 (changes with the key)."""
    return "ck-" + hashlib.sha256(key_base64.encode()).hexdigest()[:16]
