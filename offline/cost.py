"""Idle monthly baseline of a stack, from the offline plan and the price table in the repo.

    python -m offline.cost [STACK] [--region REGION] [--max-monthly USD] [--by-resource]

The same `offline.engine.run_stack` as `make plan` evaluates the real `__main__.py`; every
registered resource is then priced from its resolved inputs (Aurora minimum capacity and
instance count, worker minimum tasks, size and Spot share, NAT gateways, interface endpoints
per AZ, cache node type and count, Kinesis mode and shards, keys, secrets, alarms,
dashboards, web ACL rules, public IPv4 addresses) with `offline/prices.json` (730 h/month).
What grows with traffic is named per resource type, not added to the total.

Exit codes: 0 the estimate is complete (and within --max-monthly); 1 above --max-monthly;
2 the stack's settings are invalid; 3 something in the plan cannot be priced: a resource type
this module does not know, or a setting the table has no price for (never costed as 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline.engine import ProgramRun, Registered, run_stack
from stack_config import ConfigError

PRICES_PATH = Path(__file__).with_name("prices.json")
# Fargate includes this much ephemeral storage in every task's price.
FARGATE_INCLUDED_EPHEMERAL_GIB = 20
# Kinesis keeps 24 hours of data in the shard price; longer retention is billed extra.
KINESIS_INCLUDED_RETENTION_HOURS = 24
# CloudWatch bills an alarm as high resolution when its period is below a minute.
HIGH_RESOLUTION_PERIOD_SECONDS = 60


# -- the price table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    borrowed: bool
    """True when the stack's region has no figure and the rule took another region's."""


class PriceTable:
    """`offline/prices.json` seen from one region, applying its `missing_region_rule`."""

    def __init__(self, document: dict[str, Any], region: str):
        self.document = document
        self.region = region
        self.hours_per_month: float = document["hours_per_month"]
        self.compiled: str = document["compiled"]

    @classmethod
    def load(cls, region: str, path: Path = PRICES_PATH) -> PriceTable:
        return cls(json.loads(path.read_text()), region)

    def price(self, key: str, node_type: str | None = None) -> Price | None:
        """The figure for `key` (per node type where the entry has them) in this region, the
        highest figure of another region when this one has none, or None when none has."""
        entry = self.document["prices"][key]
        regions = entry["node_types"].get(node_type, {}) if node_type else entry["regions"]
        own = regions.get(self.region, regions.get("all", {})).get("usd")
        if own is not None:
            return Price(own, entry["unit"], borrowed=False)
        known = [figure["usd"] for figure in regions.values() if figure.get("usd") is not None]
        return Price(max(known), entry["unit"], borrowed=True) if known else None


# -- what the estimate is made of ---------------------------------------------------------


@dataclass
class Line:
    """One priced item: a resource (or the part of one) that is billed while idle."""

    tier: str
    resource: str
    type: str
    what: str
    rate: str
    monthly: float | None
    """None: the table has no price for this item (it is listed, and the exit code is 3)."""
    marks: str = ""
    """'~' a price borrowed from another region; '*' a best case (Fargate Spot)."""


@dataclass
class UsagePart:
    tier: str
    type: str
    resources: list[str]
    driver: str


@dataclass
class Estimate:
    stack: str
    region: str
    table: PriceTable
    lines: list[Line] = field(default_factory=list)
    usage: list[UsagePart] = field(default_factory=list)
    unknown: list[Registered] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.monthly or 0.0 for line in self.lines)

    @property
    def not_priced(self) -> list[Line]:
        return [line for line in self.lines if line.monthly is None]

    @property
    def complete(self) -> bool:
        return not self.not_priced and not self.unknown

    def by_tier(self) -> dict[str, float]:
        tiers: dict[str, float] = defaultdict(float)
        for line in self.lines:
            tiers[line.tier] += line.monthly or 0.0
        return dict(tiers)


@dataclass
class Context:
    """The run and the look-ups the pricing rules share."""

    run: ProgramRun
    table: PriceTable

    def hourly(self, key: str, quantity: float, node_type: str | None = None) -> float | None:
        price = self.table.price(key, node_type)
        return None if price is None else quantity * price.usd * self.table.hours_per_month

    def mark(self, *keys: str, node_type: str | None = None) -> str:
        prices = [self.table.price(key, node_type) for key in keys]
        return "~" if any(price and price.borrowed for price in prices) else ""

    def rate(self, key: str, suffix: str, node_type: str | None = None) -> str:
        price = self.table.price(key, node_type)
        return "no price" if price is None else f"${price.usd:g}{suffix}"


Rule = Callable[[Registered, Context], list[Line]]


def _line(resource: Registered, what: str, rate: str, monthly: float | None, marks: str = ""):
    return Line("", resource.name, resource.type, what, rate, monthly, marks)


# -- pricing rules, one per billed resource type ------------------------------------------


def nat_gateway(resource: Registered, ctx: Context) -> list[Line]:
    return [
        _line(
            resource,
            "NAT gateway x 730 h",
            ctx.rate("nat_gateway_hour", "/h"),
            ctx.hourly("nat_gateway_hour", 1),
            ctx.mark("nat_gateway_hour"),
        )
    ]


def elastic_ip(resource: Registered, ctx: Context) -> list[Line]:
    return [
        _line(
            resource,
            "public IPv4 address x 730 h",
            ctx.rate("public_ipv4_hour", "/h"),
            ctx.hourly("public_ipv4_hour", 1),
            ctx.mark("public_ipv4_hour"),
        )
    ]


def vpc_endpoint(resource: Registered, ctx: Context) -> list[Line]:
    kind = resource.inputs.get("vpcEndpointType", "Gateway")
    if kind == "Gateway":
        return []  # S3 and DynamoDB gateway endpoints have no charge
    if kind != "Interface":
        return [_line(resource, f"{kind} endpoint", "no price", None)]
    zones = len(resource.inputs.get("subnetIds") or [])
    # com.amazonaws.<region>.<service>: the service part may itself hold dots (ecr.api).
    service = str(resource.inputs.get("serviceName", "")).split(".", 3)[-1]
    return [
        _line(
            resource,
            f"interface endpoint ({service}) in {zones} AZ x 730 h",
            ctx.rate("interface_endpoint_hour", "/AZ-h"),
            ctx.hourly("interface_endpoint_hour", zones),
            ctx.mark("interface_endpoint_hour"),
        )
    ]


def _aurora_cluster(ctx: Context, identifier: str) -> Registered | None:
    found = [
        cluster
        for cluster in ctx.run.of_type("aws:rds/cluster:Cluster")
        if cluster.inputs.get("clusterIdentifier") == identifier
    ]
    return found[0] if found else None


def aurora_instance(resource: Registered, ctx: Context) -> list[Line]:
    instance_class = resource.inputs.get("instanceClass")
    if instance_class != "db.serverless":
        return [_line(resource, f"provisioned instance {instance_class}", "no price", None)]
    cluster = _aurora_cluster(ctx, resource.inputs.get("clusterIdentifier", ""))
    scaling = (cluster.inputs if cluster else {}).get("serverlessv2ScalingConfiguration") or {}
    minimum = float(scaling.get("minCapacity", 0.5))
    io_optimized = (cluster.inputs if cluster else {}).get("storageType") == "aurora-iopt1"
    key = "aurora_io_optimized_acu_hour" if io_optimized else "aurora_acu_hour"
    if minimum == 0:
        pause = scaling.get("secondsUntilAutoPause")
        what = f"0 ACU minimum: pauses after {pause:g} s idle (no compute charge)"
        return [_line(resource, what, ctx.rate(key, "/ACU-h"), 0.0)]
    return [
        _line(
            resource,
            f"{minimum:g} ACU minimum (db.serverless) x 730 h",
            ctx.rate(key, "/ACU-h"),
            ctx.hourly(key, minimum),
            ctx.mark(key),
        )
    ]


def aurora_cluster(resource: Registered, ctx: Context) -> list[Line]:
    if not resource.inputs.get("manageMasterUserPassword"):
        return []
    return [
        _line(
            resource,
            "RDS-managed master user secret",
            ctx.rate("secret_month", "/month"),
            _monthly(ctx, "secret_month", 1),
        )
    ]


def _monthly(ctx: Context, key: str, quantity: float) -> float | None:
    price = ctx.table.price(key)
    return None if price is None else quantity * price.usd


def cache_nodes(resource: Registered, ctx: Context) -> list[Line]:
    inputs = resource.inputs
    node_type = inputs.get("nodeType", "")
    count = _cache_node_count(inputs)
    engine = inputs.get("engine", "redis")
    node_hour = ctx.table.price("elasticache_node_hour", node_type)
    if node_hour is None:
        what = f"{count} x {node_type} ({engine}): node type not in offline/prices.json"
        return [_line(resource, what, "no price", None)]
    discount = ctx.table.price("valkey_node_discount").usd if engine == "valkey" else 0.0
    hourly = node_hour.usd * (1 - discount)
    return [
        _line(
            resource,
            f"{count} x {node_type} node ({engine}) x 730 h",
            f"${hourly:.4g}/node-h",
            count * hourly * ctx.table.hours_per_month,
            "~" if node_hour.borrowed else "",
        )
    ]


def _cache_node_count(inputs: dict[str, Any]) -> int:
    if inputs.get("numCacheClusters"):
        return int(inputs["numCacheClusters"])
    groups = int(inputs.get("numNodeGroups") or 1)
    return groups * (int(inputs.get("replicasPerNodeGroup") or 0) + 1)


def kinesis_stream(resource: Registered, ctx: Context) -> list[Line]:
    mode = (resource.inputs.get("streamModeDetails") or {}).get("streamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        key = "kinesis_on_demand_stream_hour"
        return [
            _line(
                resource,
                "on-demand stream x 730 h",
                ctx.rate(key, "/stream-h"),
                ctx.hourly(key, 1),
                ctx.mark(key),
            )
        ]
    shards = int(resource.inputs.get("shardCount") or 1)
    lines = [
        _line(
            resource,
            f"{shards} provisioned shard(s) x 730 h",
            ctx.rate("kinesis_shard_hour", "/shard-h"),
            ctx.hourly("kinesis_shard_hour", shards),
            ctx.mark("kinesis_shard_hour"),
        )
    ]
    retention = int(resource.inputs.get("retentionPeriod") or KINESIS_INCLUDED_RETENTION_HOURS)
    if retention > KINESIS_INCLUDED_RETENTION_HOURS:
        key = "kinesis_extended_retention_shard_hour"
        lines.append(
            _line(
                resource,
                f"{retention} h retention on {shards} shard(s) x 730 h",
                ctx.rate(key, "/shard-h"),
                ctx.hourly(key, shards),
                ctx.mark(key),
            )
        )
    return lines


def kms_key(resource: Registered, ctx: Context) -> list[Line]:
    return [
        _line(
            resource,
            "customer managed key",
            ctx.rate("kms_key_month", "/month"),
            _monthly(ctx, "kms_key_month", 1),
        )
    ]


def secret(resource: Registered, ctx: Context) -> list[Line]:
    return [
        _line(
            resource,
            "secret",
            ctx.rate("secret_month", "/month"),
            _monthly(ctx, "secret_month", 1),
        )
    ]


def metric_alarm(resource: Registered, ctx: Context) -> list[Line]:
    queries = resource.inputs.get("metricQueries") or []
    metrics = sum(1 for query in queries if query.get("metric")) if queries else 1
    periods = [resource.inputs.get("period")] + [
        (query.get("metric") or {}).get("period") for query in queries
    ]
    high = any(p and float(p) < HIGH_RESOLUTION_PERIOD_SECONDS for p in periods)
    key = (
        "cloudwatch_high_resolution_alarm_metric_month" if high else "cloudwatch_alarm_metric_month"
    )
    kind = "high-resolution alarm" if high else "alarm"
    return [
        _line(
            resource,
            f"{kind} on {metrics} metric(s)",
            ctx.rate(key, "/metric-month"),
            _monthly(ctx, key, metrics),
        )
    ]


def dashboard(resource: Registered, ctx: Context) -> list[Line]:
    return [
        _line(
            resource,
            "dashboard",
            ctx.rate("cloudwatch_dashboard_month", "/month"),
            _monthly(ctx, "cloudwatch_dashboard_month", 1),
        )
    ]


def web_acl(resource: Registered, ctx: Context) -> list[Line]:
    rules = len(resource.inputs.get("rules") or [])
    acl = _monthly(ctx, "waf_web_acl_month", 1)
    per_rule = _monthly(ctx, "waf_rule_month", rules)
    scope = resource.inputs.get("scope", "REGIONAL")
    return [
        _line(
            resource,
            f"web ACL ({scope}) with {rules} rule(s)",
            f"{ctx.rate('waf_web_acl_month', '/ACL')} + {ctx.rate('waf_rule_month', '/rule')}",
            None if acl is None or per_rule is None else acl + per_rule,
        )
    ]


def api_stage(resource: Registered, ctx: Context) -> list[Line]:
    if not resource.inputs.get("cacheClusterEnabled"):
        return []
    size = resource.inputs.get("cacheClusterSize", "0.5")
    return [_line(resource, f"stage cache {size} GB: not in offline/prices.json", "no price", None)]


def file_system(resource: Registered, ctx: Context) -> list[Line]:
    if resource.inputs.get("throughputMode") != "provisioned":
        return []
    mibps = resource.inputs.get("provisionedThroughputInMibps")
    return [_line(resource, f"provisioned throughput {mibps} MiB/s", "no price", None)]


# -- the worker service (Fargate) ----------------------------------------------------------


@dataclass(frozen=True)
class TaskSize:
    vcpu: float
    memory_gb: float
    ephemeral_gib: float
    arm: bool


def _task_size(task: Registered) -> TaskSize:
    inputs = task.inputs
    platform = inputs.get("runtimePlatform") or {}
    return TaskSize(
        vcpu=int(inputs.get("cpu", 256)) / 1024,
        memory_gb=int(inputs.get("memory", 512)) / 1024,
        ephemeral_gib=float((inputs.get("ephemeralStorage") or {}).get("sizeInGib", 20)),
        arm=platform.get("cpuArchitecture") == "ARM64",
    )


def _task_definition(ctx: Context, arn: str) -> Registered | None:
    family = str(arn).rsplit("/", 1)[-1].split(":")[0]
    found = [
        task
        for task in ctx.run.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if task.inputs.get("family") == family
    ]
    return found[0] if found else None


def idle_task_count(service: Registered, ctx: Context) -> float:
    """Tasks running while idle: the scaling target's minimum when one scales the service
    (Application Auto Scaling scales in to it), else the service's desired count."""
    cluster = str(service.inputs.get("cluster", "")).rsplit("/", 1)[-1]
    resource_id = f"service/{cluster}/{service.inputs.get('name')}"
    for target in ctx.run.of_type("aws:appautoscaling/target:Target"):
        if target.inputs.get("resourceId") == resource_id:
            return float(target.inputs.get("minCapacity", 0))
    return float(service.inputs.get("desiredCount", 1))


def capacity_split(tasks: float, strategy: list[dict[str, Any]]) -> dict[str, float]:
    """Tasks per capacity provider as ECS places them: each provider's `base` first, the rest
    in proportion to the weights."""
    if not strategy:
        return {"FARGATE": tasks}
    placed = {item["capacityProvider"]: 0.0 for item in strategy}
    remaining = tasks
    for item in strategy:
        base = min(float(item.get("base") or 0), remaining)
        placed[item["capacityProvider"]] += base
        remaining -= base
    weights = sum(float(item.get("weight") or 0) for item in strategy)
    for item in strategy:
        if weights:
            placed[item["capacityProvider"]] += remaining * float(item.get("weight") or 0) / weights
    return placed


def _strategy(service: Registered, ctx: Context) -> list[dict[str, Any]]:
    own = service.inputs.get("capacityProviderStrategies") or []
    if own or service.inputs.get("launchType"):
        return own
    cluster = str(service.inputs.get("cluster", "")).rsplit("/", 1)[-1]
    for providers in ctx.run.of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"):
        if providers.inputs.get("clusterName") == cluster:
            return providers.inputs.get("defaultCapacityProviderStrategies") or []
    return []


def fargate_service(resource: Registered, ctx: Context) -> list[Line]:
    task = _task_definition(ctx, resource.inputs.get("taskDefinition", ""))
    if task is None:
        return [_line(resource, "task definition not in the plan", "no price", None)]
    size = _task_size(task)
    tasks = idle_task_count(resource, ctx)
    split = capacity_split(tasks, _strategy(resource, ctx))
    lines = [
        _fargate_line(resource, ctx, size, count, provider)
        for provider, count in sorted(split.items())
        if count
    ]
    extra_gib = max(0.0, size.ephemeral_gib - FARGATE_INCLUDED_EPHEMERAL_GIB)
    if extra_gib and tasks:
        key = "fargate_ephemeral_gb_hour"
        lines.append(
            _line(
                resource,
                f"{tasks:g} task(s) x {extra_gib:g} GiB ephemeral storage beyond 20 x 730 h",
                ctx.rate(key, "/GB-h"),
                ctx.hourly(key, tasks * extra_gib),
                ctx.mark(key),
            )
        )
    return lines


def _fargate_line(
    resource: Registered, ctx: Context, size: TaskSize, count: float, provider: str
) -> Line:
    arch = "arm" if size.arm else "x86"
    cpu_key, memory_key = f"fargate_{arch}_vcpu_hour", f"fargate_{arch}_gb_hour"
    what = (
        f"{count:g} task(s) x ({size.vcpu:g} vCPU, {size.memory_gb:g} GB, {arch}) "
        f"on {provider} x 730 h"
    )
    cpu, memory = ctx.table.price(cpu_key), ctx.table.price(memory_key)
    if cpu is None or memory is None:
        return _line(resource, what, "no price", None)
    task_hour = size.vcpu * cpu.usd + size.memory_gb * memory.usd
    marks = ctx.mark(cpu_key, memory_key)
    if provider == "FARGATE_SPOT":
        task_hour *= 1 - ctx.table.price("fargate_spot_discount").usd
        marks += "*"
    elif provider != "FARGATE":
        return _line(resource, what, "no price", None)
    monthly = count * task_hour * ctx.table.hours_per_month
    return _line(resource, what, f"${task_hour:.4g}/task-h", monthly, marks)


# -- classification of every resource type -------------------------------------------------

PRICED: dict[str, Rule] = {
    "aws:ec2/natGateway:NatGateway": nat_gateway,
    "aws:ec2/eip:Eip": elastic_ip,
    "aws:ec2/vpcEndpoint:VpcEndpoint": vpc_endpoint,
    "aws:rds/clusterInstance:ClusterInstance": aurora_instance,
    "aws:rds/cluster:Cluster": aurora_cluster,
    "aws:elasticache/replicationGroup:ReplicationGroup": cache_nodes,
    "aws:kinesis/stream:Stream": kinesis_stream,
    "aws:ecs/service:Service": fargate_service,
    "aws:kms/key:Key": kms_key,
    "aws:secretsmanager/secret:Secret": secret,
    "aws:cloudwatch/metricAlarm:MetricAlarm": metric_alarm,
    "aws:cloudwatch/dashboard:Dashboard": dashboard,
    "aws:wafv2/webAcl:WebAcl": web_acl,
    "aws:apigateway/stage:Stage": api_stage,
    "aws:efs/fileSystem:FileSystem": file_system,
}

# What moves the bill of resources that cost nothing while idle (or more than their baseline).
USAGE: dict[str, str] = {
    "aws:ec2/natGateway:NatGateway": "GB processed",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "GB processed (interface endpoints; gateway endpoints "
    "are free)",
    "aws:ec2/flowLog:FlowLog": "flow log records delivered to CloudWatch Logs (ALL traffic)",
    "aws:rds/cluster:Cluster": "ACU-hours above the minimum, storage GB-month, I/O requests "
    "(Aurora Standard), backups beyond the retention's free share",
    "aws:elasticache/replicationGroup:ReplicationGroup": "snapshot storage beyond one free "
    "snapshot, cross-AZ data transfer",
    "aws:kinesis/stream:Stream": "PUT payload units (provisioned), GB in and out and retention "
    "GB-month (on-demand)",
    "aws:ecs/service:Service": "task-hours above the minimum (scale-out by backlog), Spot "
    "price movement, transcode minutes per title",
    "aws:ecs/cluster:Cluster": "Container Insights metrics per cluster, service and task",
    "aws:ecr/repository:Repository": "image storage GB-month",
    "aws:efs/fileSystem:FileSystem": "GB-month stored (Standard, IA), elastic throughput GB "
    "read and written",
    "aws:efs/backupPolicy:BackupPolicy": "AWS Backup storage GB-month of the file system",
    "aws:backup/vault:Vault": "AWS Backup storage GB-month of the recovery points it holds",
    "aws:backup/plan:Plan": "each daily recovery point (storage billed by the vault) and, "
    "with a copy region, cross-region transfer per GB",
    "aws:s3/bucket:Bucket": "GB-month stored per storage class, PUT/GET requests, "
    "lifecycle transitions",
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": "GB replicated to another "
    "region (inter-region transfer) and the KMS requests of re-encryption; the replicas are "
    "stored and billed in the replica bucket",
    "aws:cloudwatch/logGroup:LogGroup": "GB ingested and GB-month stored until retention",
    "aws:cloudtrail/trail:Trail": "first copy of management events is free; data events per "
    "100,000; its S3 and CloudWatch Logs delivery",
    "aws:sqs/queue:Queue": "requests (long polling while idle)",
    "aws:sns/topic:Topic": "publishes and deliveries",
    "aws:pipes/pipe:Pipe": "events after the filter",
    "aws:lambda/function:Function": "requests and GB-seconds (memory x duration)",
    "aws:lambda/invocation:Invocation": "one invocation per deployment",
    "aws:apigateway/restApi:RestApi": "requests (REST API), data out",
    "aws:wafv2/webAcl:WebAcl": "requests inspected",
    "aws:kms/key:Key": "API requests (S3 bucket keys cut them)",
    "aws:secretsmanager/secret:Secret": "API calls per 10,000",
    "aws:cloudfront/distribution:Distribution": "no monthly charge: GB out to viewers (by "
    "edge region), HTTPS requests per 10,000, origin fetches",
    "aws:cloudfront/function:Function": "invocations",
    "aws:cloudfront/monitoringSubscription:MonitoringSubscription": "additional CloudFront "
    "metrics, billed as CloudWatch custom metrics",
    "aws:cloudwatch/logDelivery:LogDelivery": "GB of vended logs delivered",
    "aws:lambda/functionUrl:FunctionUrl": "requests are billed as the function's",
    "docker-build:index:Image": "built on the deploying machine; stored in ECR",
}

# Resources with no charge of their own (configuration, wiring, identities).
FREE: frozenset[str] = frozenset(
    {
        "aws:apigateway/account:Account",
        "aws:apigateway/apiKey:ApiKey",
        "aws:apigateway/deployment:Deployment",
        "aws:apigateway/gatewayResponse:GatewayResponse",
        "aws:apigateway/integration:Integration",
        "aws:apigateway/integrationResponse:IntegrationResponse",
        "aws:apigateway/method:Method",
        "aws:apigateway/methodResponse:MethodResponse",
        "aws:apigateway/methodSettings:MethodSettings",
        "aws:apigateway/model:Model",
        "aws:apigateway/requestValidator:RequestValidator",
        "aws:apigateway/resource:Resource",
        "aws:apigateway/usagePlan:UsagePlan",
        "aws:apigateway/usagePlanKey:UsagePlanKey",
        "aws:appautoscaling/policy:Policy",
        "aws:appautoscaling/target:Target",
        "aws:cloudfront/cachePolicy:CachePolicy",
        "aws:cloudfront/keyGroup:KeyGroup",
        "aws:cloudfront/originAccessControl:OriginAccessControl",
        "aws:cloudfront/originRequestPolicy:OriginRequestPolicy",
        "aws:cloudfront/publicKey:PublicKey",
        "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy",
        "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination",
        "aws:cloudwatch/logDeliverySource:LogDeliverySource",
        "aws:cloudwatch/logResourcePolicy:LogResourcePolicy",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/networkAcl:NetworkAcl",
        "aws:ec2/networkAclRule:NetworkAclRule",
        "aws:ec2/route:Route",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/vpc:Vpc",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:ecr/repositoryPolicy:RepositoryPolicy",
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
        "aws:ecs/taskDefinition:TaskDefinition",
        "aws:efs/accessPoint:AccessPoint",
        "aws:backup/vaultLockConfiguration:VaultLockConfiguration",
        "aws:backup/selection:Selection",
        "aws:efs/fileSystemPolicy:FileSystemPolicy",
        "aws:efs/mountTarget:MountTarget",
        "aws:elasticache/parameterGroup:ParameterGroup",
        "aws:elasticache/subnetGroup:SubnetGroup",
        "aws:iam/policy:Policy",
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:kms/alias:Alias",
        "aws:kms/keyPolicy:KeyPolicy",
        "aws:lambda/permission:Permission",
        "aws:rds/clusterParameterGroup:ClusterParameterGroup",
        "aws:rds/parameterGroup:ParameterGroup",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketLogging:BucketLogging",
        "aws:s3/bucketNotification:BucketNotification",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:secretsmanager/secretPolicy:SecretPolicy",
        "aws:secretsmanager/secretRotation:SecretRotation",
        "aws:secretsmanager/secretVersion:SecretVersion",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
        "aws:sqs/redrivePolicy:RedrivePolicy",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:wafv2/webAclAssociation:WebAclAssociation",
        "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration",
    }
)
# Whole packages with no cloud charge: providers, generated values, local builds.
FREE_PREFIXES = ("pulumi:providers:", "random:", "tls:")


def is_free(type_token: str) -> bool:
    return type_token in FREE or type_token.startswith(FREE_PREFIXES)


def is_known(type_token: str) -> bool:
    return type_token in PRICED or type_token in USAGE or is_free(type_token)


# -- building the estimate -----------------------------------------------------------------


def tiers_of(run: ProgramRun) -> dict[str, str]:
    """URN -> the logical name of the top-level component it sits under ('stack' for
    resources outside any component)."""
    by_urn = {resource.urn: resource for resource in run.resources}
    tiers: dict[str, str] = {}
    for resource in run.resources:
        top = resource
        while top.parent_urn in by_urn:
            top = by_urn[top.parent_urn]
        tiers[resource.urn] = top.name if top is not resource or not resource.custom else "stack"
    return tiers


def estimate(run: ProgramRun, table: PriceTable) -> Estimate:
    ctx = Context(run, table)
    tiers = tiers_of(run)
    result = Estimate(run.stack, run.region, table)
    usage: dict[tuple[str, str], list[str]] = defaultdict(list)
    for resource in run.resources:
        if not resource.custom:
            continue
        if not is_known(resource.type):
            result.unknown.append(resource)
            continue
        for line in PRICED.get(resource.type, lambda *_: [])(resource, ctx):
            line.tier = tiers[resource.urn]
            result.lines.append(line)
        if resource.type in USAGE:
            usage[(tiers[resource.urn], resource.type)].append(resource.name)
    result.usage = [
        UsagePart(tier, type_token, sorted(names), USAGE[type_token])
        for (tier, type_token), names in sorted(usage.items())
    ]
    return result


# -- rendering -----------------------------------------------------------------------------


def money(value: float | None) -> str:
    return "NOT PRICED" if value is None else f"${value:,.2f}"


def grouped(lines: Iterable[Line]) -> list[Line]:
    """Identical items of one tier (same type, description and rate) as one row with a count."""
    groups: dict[tuple, list[Line]] = defaultdict(list)
    for line in lines:
        groups[(line.tier, line.type, line.what, line.rate, line.marks)].append(line)
    rows = []
    for (tier, type_token, what, rate, marks), members in groups.items():
        label = _label(sorted(member.resource for member in members))
        monthly = (
            None if any(m.monthly is None for m in members) else sum(m.monthly for m in members)
        )
        rows.append(Line(tier, label, type_token, what, rate, monthly, marks))
    return rows


def _label(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})"


def render(result: Estimate, *, by_resource: bool = False) -> list[str]:
    tiers = result.by_tier()
    order = sorted(tiers, key=lambda tier: (-tiers[tier], tier))
    out = [
        f"Idle monthly baseline of stack {result.stack} in {result.region} "
        f"(offline plan; {result.table.hours_per_month:g} h/month; USD; prices compiled "
        f"{result.table.compiled}, offline/prices.json)",
        "",
        f"  {'resource':<34} {'what is billed while idle':<58} {'rate':>16} {'monthly':>11}",
    ]
    for tier in order:
        out.append(f"{tier}")
        lines = [line for line in result.lines if line.tier == tier]
        rows = lines if by_resource else grouped(lines)
        for row in sorted(rows, key=lambda r: (-(r.monthly or 0), r.resource)):
            out.append(
                f"  {row.resource[:34]:<34} {row.what[:58]:<58} {row.rate:>16} "
                f"{money(row.monthly):>11} {row.marks}".rstrip()
            )
        out.append(f"  {'':<34} {'':<58} {tier + ' total':>16} {money(tiers[tier]):>11}")
    out += _footer(result)
    return out


def _footer(result: Estimate) -> list[str]:
    out = ["", f"Total idle baseline: {money(result.total)} / month"]
    if any("~" in line.marks for line in result.lines):
        out.append(
            f"  ~ no figure for {result.region} in offline/prices.json: priced at the highest "
            "figure the table has in another region (missing_region_rule)"
        )
    if any("*" in line.marks for line in result.lines):
        out.append("  * Fargate Spot at AWS's 'up to 70 %' discount: a best case, Spot floats")
    if result.not_priced:
        out.append(
            f"  NOT COMPLETE: {len(result.not_priced)} item(s) have no price in "
            "offline/prices.json (listed above as NOT PRICED)"
        )
    if result.unknown:
        out.append(
            f"  NOT COMPLETE: {len(result.unknown)} resource(s) of types offline/cost.py "
            "does not classify:"
        )
        out += [f"    {r.name}  {r.type}" for r in result.unknown]
    out += ["", "Usage-based (not in the total; what moves them):"]
    for part in result.usage:
        kind = part.type.rsplit(":", 1)[-1]
        out.append(f"  {part.tier:<11} {_label(part.resources)[:34]:<34} {kind:<16} {part.driver}")
    return out


def exit_code(result: Estimate, max_monthly: float | None) -> int:
    if not result.complete:
        return 3
    if max_monthly is not None and result.total > max_monthly:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--region", help="override aws:region for this evaluation")
    parser.add_argument("--max-monthly", type=float, help="exit 1 when the total is above this")
    parser.add_argument("--by-resource", action="store_true", help="one row per resource")
    args = parser.parse_args(argv)
    overrides = {"aws:region": args.region} if args.region else None
    try:
        run = run_stack(args.stack, overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    result = estimate(run, PriceTable.load(run.region))
    print("\n".join(render(result, by_resource=args.by_resource)))
    code = exit_code(result, args.max_monthly)
    if code == 1:
        print(f"\nABOVE BUDGET: {money(result.total)} > {money(args.max_monthly)} per month")
    return code


if __name__ == "__main__":
    sys.exit(main())
