"""`RedisReplicationGroup`: the hot-metadata and session cache (C1-C4).

A Redis-compatible ElastiCache replication group (Valkey by default) with cluster mode off:
a primary and replicas spread round-robin over the zones with Multi-AZ automatic failover,
encrypted at rest with the cache CMK, TLS plus an AUTH token kept in Secrets Manager, slow
and engine logs in encrypted log groups, and alarms on engine CPU, memory and evictions.
Turning TLS off is one explicit flag that logs a warning and drops the token and its secret.

The token rotates (issue 14, item 7): a Secrets Manager rotation function of its own
(`services/rotation/cache_token.py`, in the app subnets, admitted to the cache port) gives the
group a new token every `cacheAuthTokenRotationDays` with ElastiCache's ROTATE strategy, which
keeps the two most recent tokens valid: each token works until the rotation after the one
that replaced it. `pulumi up` writes only the first token; from then on the group's token and
the secret's versions are the rotation's, so the program ignores both (PITFALLS 147).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws_limits import (
    CACHE_ENGINE_VERSIONS,
    ELASTICACHE_MIN_WINDOW_MINUTES,
    cache_parameter_group_family,
)
from components.data_tier import DataStore, DataStorePlacement
from components.firewall import REDIS, RoleSecurityGroup
from components.functions import VpcFunctionArgs
from components.iam import Grant, attach_grants
from components.logs import encrypted_log_group
from components.naming import NameKind, check_name, member_cluster_ids, name_tag
from components.observability import metric_alarm
from components.placement import NetworkGrant
from components.rotation import (
    ROTATION_DAYS_RANGE,
    SecretRotationArgs,
    SecretRotator,
    rotation_function,
)
from components.secrets import stored_secret
from components.tunables import Problem, Tunables, tunable
from components.windows import (
    DAILY_FORM,
    DAILY_WINDOW,
    WEEKLY_FORM,
    WEEKLY_WINDOW,
    window_pair_rules,
)
from services.contract import (
    CACHE_AUTH_TOKEN_LENGTH,
    CACHE_AUTH_TOKEN_SPECIALS,
    CACHE_TOKEN_ROTATION_HANDLER,
    EnvVar,
    env_flag,
)

# ElastiCache accepts TransitEncryptionMode (set to `required` here) from Redis 7.0.5 on;
# Valkey has it in every version.
TLS_MODE_TOO_OLD = {"redis": ("6.2",)}
# With cluster mode disabled a group holds one primary and up to five replicas.
MIN_NODES, MAX_NODES = 2, 6
LOG_TYPES = ("slow-log", "engine-log")
# ElastiCache accepts only these specials in an AUTH token (16-128 printable characters);
# the rotation function makes its tokens from the same contract.
AUTH_TOKEN_SPECIALS = CACHE_AUTH_TOKEN_SPECIALS
AUTH_TOKEN_LENGTH = CACHE_AUTH_TOKEN_LENGTH
ROTATION_STEM = "cache-rotation"
# The test step waits for the group to apply a new token (minutes on a busy group), inside
# Lambda's 15-minute limit.
ROTATION_TIMEOUT_SECONDS = 300
ROTATION_ACTIONS = ("elasticache:DescribeReplicationGroups", "elasticache:ModifyReplicationGroup")


def node_zones(zones: Sequence[str], node_count: int) -> list[str]:
    """Primary in the first zone, each replica in the next one, round-robin (C1).

    More nodes than zones is allowed: the extra replicas add read capacity and the primary
    still has a replica in another zone to fail over to.
    """
    return [zones[index % len(zones)] for index in range(node_count)]


@dataclass(frozen=True, kw_only=True)
class RedisReplicationGroupSettings(Tunables):
    """The cache's tunables (C1-C4)."""

    TIER = "cache"

    engine: str = tunable(
        "cacheEngine",
        "valkey",
        "Redis-compatible engine, lowercase as the v7 provider requires.",
        choices=tuple(CACHE_ENGINE_VERSIONS),
    )
    engine_version: str = tunable(
        "cacheEngineVersion",
        "8.0",
        "Engine major.minor (valkey "
        + "/".join(CACHE_ENGINE_VERSIONS["valkey"])
        + ", redis "
        + "/".join(CACHE_ENGINE_VERSIONS["redis"])
        + ").",
    )
    node_type: str = tunable(
        "cacheNodeType",
        "cache.t4g.micro",
        "ElastiCache node type.",
        pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$",
        allowed="an ElastiCache node type like cache.t4g.micro",
    )
    node_count: int = tunable(
        "cacheNodeCount",
        MIN_NODES,
        "Primary plus replicas, round-robin over the zones (C1): automatic failover needs a "
        "replica; cluster mode off holds 6.",
        range=(MIN_NODES, MAX_NODES),
    )
    transit_encryption: bool = tunable(
        "cacheTransitEncryption",
        True,
        "TLS with an AUTH token kept in Secrets Manager; false is a development opt-out (no "
        "TLS, no token, no secret) that warns in the preview (C3).",
    )
    snapshot_retention_days: int = tunable(
        "cacheSnapshotRetentionDays",
        1,
        "Automatic snapshots kept; 0 turns them off (C4).",
        range=(0, 35),
    )
    snapshot_window: str = tunable(
        "cacheSnapshotWindow",
        "01:00-02:00",
        "Daily snapshot window, UTC, >= 60 minutes (C4).",
        pattern=DAILY_WINDOW,
        allowed=DAILY_FORM,
    )
    maintenance_window: str = tunable(
        "cacheMaintenanceWindow",
        "sun:05:00-sun:06:00",
        "Weekly maintenance window, UTC, >= 60 minutes, apart from the snapshot window.",
        pattern=WEEKLY_WINDOW,
        allowed=WEEKLY_FORM,
    )
    auth_token_rotation_days: int = tunable(
        "cacheAuthTokenRotationDays",
        30,
        "Days between rotations of the AUTH token (issue 14, item 7): a rotation function "
        "gives the group a new token with ElastiCache's ROTATE strategy; each token works "
        "until the rotation after the one that replaced it. 0: never rotates (warned in the "
        "preview). Ignored with cacheTransitEncryption false (no token).",
        range=ROTATION_DAYS_RANGE,
        also=(0,),
    )
    cpu_alarm_percent: int = tunable(
        "alarmCacheCpuPercent",
        75,
        "EngineCPUUtilization (%) per node that alarms, sustained 15 minutes.",
        range=(1, 100),
    )

    @property
    def parameter_group_family(self) -> str:
        return cache_parameter_group_family(self.engine, self.engine_version)

    @property
    def rotates_token(self) -> bool:
        """Whether the group has an AUTH token and it rotates."""
        return self.transit_encryption and self.auth_token_rotation_days > 0

    def rules(self) -> list[Problem]:
        problems = []
        versions = CACHE_ENGINE_VERSIONS.get(self.engine, ())
        if versions and self.engine_version not in versions:
            problems.append(
                Problem(
                    "engine_version",
                    self.engine_version,
                    f"for {self.engine}: " + ", ".join(versions),
                )
            )
        elif self.transit_encryption and self.engine_version in TLS_MODE_TOO_OLD.get(
            self.engine, ()
        ):
            problems.append(
                Problem(
                    "engine_version",
                    self.engine_version,
                    f"{self.engine} 7.0 or later while {{transit_encryption}} is true "
                    "(transit encryption mode 'required' needs Redis 7.0.5)",
                )
            )
        return problems + window_pair_rules(
            ("snapshot_window", self.snapshot_window),
            ("maintenance_window", self.maintenance_window),
            ELASTICACHE_MIN_WINDOW_MINUTES,
            "ElastiCache",
        )


@dataclass(frozen=True, kw_only=True)
class TokenRotationPlacement:
    """Where the AUTH token's rotation function runs, and its code."""

    subnet_ids: Sequence[pulumi.Input[str]]
    """Private app subnets with a path to Secrets Manager and the ElastiCache API, at least
    two (required)."""
    code_path: str
    """The rotation functions' zip (`components.packaging.build_rotation_package`)
    (required)."""
    code_sha256: str
    """Base64 SHA-256 of that zip (required)."""
    network_grants: Sequence[NetworkGrant] = ()
    """Called with the function's security group before it exists (the network's
    `grant_aws_apis`); the cache admits the function itself. Default none."""
    placement_ready: Sequence[pulumi.Resource] = ()
    """The app subnets' routes and endpoints; the function waits for them. Default none."""
    log_level: str = "INFO"
    """The function's log level; default INFO."""

    def problems(self) -> list[str]:
        problems = []
        if len(self.subnet_ids) < 2:
            problems.append(
                f"token_rotation.subnet_ids: {len(self.subnet_ids)} given, allowed at least 2"
            )
        if not self.code_path or not self.code_sha256:
            problems.append(
                "token_rotation.code_path/code_sha256: allowed a built package "
                "(components.packaging.build_rotation_package)"
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class RedisReplicationGroupArgs(RedisReplicationGroupSettings, DataStorePlacement):
    """Inputs of `RedisReplicationGroup`: its settings, its placement and these.

    `protect_data` False (default): destroyable — no final snapshot, changes applied at once.
    True: a uniquely named final snapshot, changes wait for the maintenance window (G3). The
    group itself is not protected from deletion: it holds sessions and data rebuilt from the
    database, and the final snapshot (under the protected cache key) keeps them."""

    memory_alarm_percent: int = 80
    """DatabaseMemoryUsagePercentage per node that alarms when sustained; default 80."""
    token_rotation: TokenRotationPlacement | None = field(default=None)
    """Where the token's rotation function runs; required while the token rotates
    (`rotates_token`), unused otherwise. Default None."""

    def validate(self) -> None:
        problems = self.tunable_problems() + self.placement_problems()
        if not 1 <= self.memory_alarm_percent <= 100:
            problems.append(f"memory_alarm_percent={self.memory_alarm_percent}: allowed 1..100")
        if self.rotates_token and self.token_rotation is None:
            problems.append(
                "token_rotation: required while the AUTH token rotates (the rotation "
                f"function's subnets and code; {self.key_of('auth_token_rotation_days')} 0 "
                "turns rotation off)"
            )
        elif self.rotates_token and self.token_rotation is not None:
            problems += self.token_rotation.problems()
        if problems:
            raise ValueError("RedisReplicationGroupArgs: " + "; ".join(problems))


class RedisReplicationGroup(DataStore):
    """Multi-AZ Redis-compatible replication group, encrypted at rest and by default in transit."""

    primary_endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: int
    transit_encryption: bool
    auth_secret_arn: pulumi.Output[str] | None
    token_rotation: SecretRotator | None
    security_group: RoleSecurityGroup
    replication_group_id: str
    node_count: int

    def __init__(
        self, name: str, args: RedisReplicationGroupArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:cache:RedisReplicationGroup", name, args, opts, port=REDIS)
        self._args = args
        namer = args.namer
        self.replication_group_id = namer.name("cache", NameKind.ELASTICACHE_ID)
        self.node_count = args.node_count
        self.transit_encryption = args.transit_encryption

        self.security_group = self._role_security_group(
            "cache", f"ElastiCache {args.engine}: 6379 only from granted security groups"
        )
        self.subnet_group = self._subnet_group(
            aws.elasticache.SubnetGroup,
            "cache-subnets",
            NameKind.ELASTICACHE_SUBNET_GROUP,
            "Private data subnets of the cache",
        )
        family = args.parameter_group_family
        # The family is part of the name so a major upgrade creates a new group beside the old.
        params_name = namer.name(f"cache-{family.replace('.', '-')}", NameKind.PARAMETER_GROUP)
        self.parameter_group = aws.elasticache.ParameterGroup(
            f"{name}-params",
            name=params_name,
            family=family,
            description=f"{args.engine} {args.engine_version} parameters (cluster mode off)",
            tags=name_tag(params_name),
            opts=self._child,
        )
        log_groups = self._log_groups()
        token = self._auth_token()
        self.group = self._replication_group(log_groups, token)
        self.primary_endpoint = self.group.primary_endpoint_address
        self.reader_endpoint = self.group.reader_endpoint_address
        self.auth_secret_arn = self._auth_secret(token) if token is not None else None
        self.token_rotation = self._token_rotation()
        self._alarms()
        self.register_outputs(
            {
                "primary_endpoint": self.primary_endpoint,
                "reader_endpoint": self.reader_endpoint,
                "port": self.port,
                "transit_encryption": self.transit_encryption,
                "auth_secret_arn": self.auth_secret_arn,
                "security_group_id": self.security_group.id,
                "replication_group_id": self.replication_group_id,
            }
        )

    # -- children ------------------------------------------------------------------------
    def _log_groups(self) -> dict[str, aws.cloudwatch.LogGroup]:
        groups = {}
        for log_type in LOG_TYPES:
            # Log delivery adds each group to the account's CloudWatch Logs resource policy
            # (5,120 characters at most); /aws/vendedlogs/ groups are covered by one wildcard.
            log_name = f"/aws/vendedlogs/elasticache/{self.replication_group_id}/{log_type}"
            check_name(log_name, NameKind.LOG_GROUP)
            groups[log_type] = encrypted_log_group(
                f"{self._name}-{log_type}",
                name=log_name,
                kms_key_arn=self._args.logs_key_arn,
                retention_days=self._args.log_retention_days,
                parent=self,
            )
        return groups

    def _auth_token(self) -> pulumi.Output[str] | None:
        if not self._args.transit_encryption:
            pulumi.log.warn(
                f"{self._name}: {self._args.key_of('transit_encryption')} is false — the cache "
                "accepts plaintext "
                "connections without an AUTH token (C3 opt-out; development only). Changing "
                "it later replaces or migrates the replication group.",
                resource=self,
            )
            return None
        password = random.RandomPassword(
            f"{self._name}-auth-token",
            length=AUTH_TOKEN_LENGTH,
            special=True,
            override_special=AUTH_TOKEN_SPECIALS,
            opts=self._child,
        )
        return pulumi.Output.secret(password.result)

    def _replication_group(
        self, log_groups: dict[str, aws.cloudwatch.LogGroup], token: pulumi.Output[str] | None
    ) -> aws.elasticache.ReplicationGroup:
        args = self._args
        tls = token is not None
        return aws.elasticache.ReplicationGroup(
            f"{self._name}-group",
            replication_group_id=self.replication_group_id,
            description=f"Hot metadata and session cache ({args.engine})",
            engine=args.engine,
            engine_version=args.engine_version,
            node_type=args.node_type,
            num_cache_clusters=args.node_count,
            preferred_cache_cluster_azs=node_zones(args.availability_zones, args.node_count),
            cluster_mode="disabled",
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            parameter_group_name=self.parameter_group.name,
            port=REDIS,
            subnet_group_name=self.subnet_group.name,
            security_group_ids=[self.security_group.id],
            at_rest_encryption_enabled=True,
            kms_key_id=args.storage_key_arn,
            transit_encryption_enabled=tls,
            transit_encryption_mode="required" if tls else None,
            auth_token=token,
            # Only used when the token changes: keeps the old one valid beside the new.
            auth_token_update_strategy="ROTATE" if tls else None,
            snapshot_retention_limit=args.snapshot_retention_days,
            snapshot_window=args.snapshot_window,
            maintenance_window=args.maintenance_window,
            final_snapshot_identifier=self._final_snapshot_identifier(
                self.replication_group_id, NameKind.ELASTICACHE_SNAPSHOT
            ),
            apply_immediately=not args.protect_data,
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[
                {
                    "destination": log_groups[log_type].name,
                    "destination_type": "cloudwatch-logs",
                    "log_format": "json",
                    "log_type": log_type,
                }
                for log_type in LOG_TYPES
            ],
            tags=name_tag(self.replication_group_id),
            # After its first token the group's token is the rotation's (PITFALLS 147): a
            # changed input must not set it back (nor cut the current one off). Also with
            # rotation off: a stack that has rotated keeps the token it has.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["authToken"] if tls else None),
        )

    def _auth_secret(self, token: pulumi.Output[str]) -> pulumi.Output[str]:
        args = self._args
        secret, _ = stored_secret(
            f"{self._name}-auth-secret",
            namer=args.namer,
            stem="cache-auth-token",
            description=f"AUTH token of the {self.replication_group_id} cache (the raw token)",
            value=token,
            kms_key_arn=args.secret_key_arn,
            protect_data=args.protect_data,
            parent=self,
            rotated=True,
        )
        return secret.arn

    # -- token rotation (issue 14, item 7) -------------------------------------------------
    def _token_rotation(self) -> SecretRotator | None:
        args = self._args
        if self.auth_secret_arn is None:
            return None
        if not args.rotates_token:
            pulumi.log.warn(
                f"{self._name}: {args.key_of('auth_token_rotation_days')} is 0 — the cache's "
                "AUTH token never rotates (issue 14, item 7 opt-out); anyone who once read it "
                "keeps access while the network lets them reach the cache.",
                resource=self,
            )
            return None
        assert args.token_rotation is not None  # validate() requires it
        return rotation_function(
            f"{self._name}-rotation",
            SecretRotationArgs(
                secret_arn=self.auth_secret_arn,
                secret_key_arn=args.secret_key_arn,
                function=self._rotation_function_args(args.token_rotation),
                rotation_days=args.auth_token_rotation_days,
                alarm_topic_arn=args.alarm_topic_arn,
            ),
            parent=self,
        )

    def _rotation_function_args(self, placement: TokenRotationPlacement) -> VpcFunctionArgs:
        args = self._args
        group = RoleSecurityGroup(
            f"{self._name}-rotation-sg",
            role=ROTATION_STEM,
            description="Cache token rotation Lambda: the cache port and AWS APIs only",
            vpc_id=args.vpc_id,
            namer=args.namer,
            parent=self,
        )
        self.allow_from(group)
        for grant in placement.network_grants:
            grant(group)
        assert self.auth_secret_arn is not None
        return VpcFunctionArgs(
            stem=ROTATION_STEM,
            description=f"Rotates the AUTH token of the {self.replication_group_id} cache",
            handler=CACHE_TOKEN_ROTATION_HANDLER,
            code_path=placement.code_path,
            code_sha256=placement.code_sha256,
            subnet_ids=placement.subnet_ids,
            security_group=group,
            environment={
                EnvVar.REDIS_HOST: self.primary_endpoint,
                EnvVar.REDIS_PORT: str(self.port),
                EnvVar.REDIS_TLS: env_flag(True),
                EnvVar.REDIS_AUTH_SECRET_ARN: self.auth_secret_arn,
                EnvVar.CACHE_REPLICATION_GROUP_ID: self.replication_group_id,
                EnvVar.LOG_LEVEL: placement.log_level,
            },
            namer=args.namer,
            context=args.context,
            logs_key_arn=args.logs_key_arn,
            # The environment is encrypted with the Secrets Manager key, like the secret.
            environment_key_arn=args.secret_key_arn,
            log_retention_days=args.log_retention_days,
            log_level=placement.log_level,
            timeout_seconds=ROTATION_TIMEOUT_SECONDS,
            access_grants={"elasticache": self._grant_token_change},
            # Its rules into the cache and to the AWS APIs, the subnets' routes and endpoints.
            start_after=[*group.access_rules, *placement.placement_ready],
        )

    def _grant_token_change(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Describe and modify exactly this replication group (its token)."""
        grant = Grant("ChangeOwnAuthToken", ROTATION_ACTIONS, (self.group.arn,))
        return attach_grants(resource_name, role, [grant], parent=self)

    def _alarms(self) -> None:
        args = self._args
        for index, member in enumerate(
            member_cluster_ids(self.replication_group_id, args.node_count)
        ):
            node = f"{index + 1:03d}"
            for label, metric, statistic, threshold, description in (
                (
                    "cpu",
                    "EngineCPUUtilization",
                    "Average",
                    args.cpu_alarm_percent,
                    f"Cache engine CPU on {member} above {args.cpu_alarm_percent}% for 15 minutes",
                ),
                (
                    "memory",
                    "DatabaseMemoryUsagePercentage",
                    "Average",
                    args.memory_alarm_percent,
                    f"Cache memory on {member} above {args.memory_alarm_percent}% for 15 minutes",
                ),
                # Evictions mean the working set no longer fits; one burst is noise.
                (
                    "evictions",
                    "Evictions",
                    "Sum",
                    0,
                    f"Cache {member} evicting keys for 15 minutes: the node type is too small",
                ),
            ):
                metric_alarm(
                    f"{self._name}-{node}-{label}-alarm",
                    alarm_name=args.namer.name(f"cache-{node}-{label}"),
                    description=description,
                    namespace="AWS/ElastiCache",
                    metric_name=metric,
                    dimensions={"CacheClusterId": member},
                    statistic=statistic,
                    comparison="GreaterThanThreshold",
                    threshold=threshold,
                    evaluation_periods=3,
                    topic_arn=args.alarm_topic_arn,
                    parent=self,
                )

    # -- grants --------------------------------------------------------------------------
    def grant_secret_read(
        self, resource_name: str, role: aws.iam.Role
    ) -> aws.iam.RolePolicy | None:
        """Let `role` read the AUTH token; None when TLS and the token are off."""
        if self.auth_secret_arn is None:
            return None
        return self._grant_secret_read(resource_name, role, "CacheAuth", self.auth_secret_arn)
