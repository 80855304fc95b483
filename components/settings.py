"""Stack settings: the only module that reads Pulumi config.

Every key of the project namespace is declared once in ``CONFIG_KEYS`` (type, default,
description — ``Pulumi.yaml`` mirrors it and a test keeps the two equal). ``load_settings``
parses and validates every key in one pass and raises a single ``ConfigError`` listing each
bad key, its value and what is allowed (G8), before any resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

PROJECT = "media-pipeline"

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)

# Fargate's allowed task sizes (Linux): CPU units -> memory MiB.
FARGATE_MEMORY_BY_CPU: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

# Engine versions whose major has a matching parameter-group family and Serverless v2 support.
AURORA_MAJORS = (13, 14, 15, 16, 17)
CACHE_ENGINE_VERSIONS = {"valkey": ("7.2", "8.0", "8.1"), "redis": ("6.2", "7.0", "7.1")}
API_CACHE_SIZES_GB = ("0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237")

MAX_PREFIX_LENGTH = 15
MAX_SUFFIX_LENGTH = 10

# Shortest backup/maintenance windows each service accepts (RDS 30 min, ElastiCache 60 min).
RDS_MIN_WINDOW_MINUTES = 30
ELASTICACHE_MIN_WINDOW_MINUTES = 60
# Databases every Aurora PostgreSQL cluster already has (or RDS reserves for itself).
RESERVED_DB_NAMES = ("rdsadmin", "template0", "template1")
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def aurora_parameter_group_family(engine_version: str) -> str:
    return f"aurora-postgresql{engine_version.split('.')[0]}"


def cache_parameter_group_family(engine: str, engine_version: str) -> str:
    major = engine_version.split(".")[0]
    # Redis 6 is the one family named after the whole major line.
    return "redis6.x" if (engine, major) == ("redis", "6") else f"{engine}{major}"


def _minute_of(moment: str) -> int:
    *day, hours, minutes = moment.split(":")
    offset = _WEEKDAYS.index(day[0]) * MINUTES_PER_DAY if day else 0
    return offset + int(hours) * 60 + int(minutes)


def window_span(window: str) -> tuple[int, int]:
    """(start, length) in minutes of a UTC window, daily `hh:mm-hh:mm` or weekly
    `ddd:hh:mm-ddd:hh:mm`; a window may wrap past midnight or the end of the week."""
    start_text, end_text = window.split("-")
    period = MINUTES_PER_WEEK if start_text[:3] in _WEEKDAYS else MINUTES_PER_DAY
    start = _minute_of(start_text)
    return start, (_minute_of(end_text) - start) % period


def window_pair_problems(daily: tuple[str, str], weekly: tuple[str, str],
                         minimum_minutes: int) -> list[str]:
    """Problems of a (field, daily window) and (field, weekly window) pair given to a component:
    form, minimum length, and no overlap between the two."""
    problems = []
    for (field_name, window), pattern, form in ((daily, _DAILY_WINDOW, "hh:mm-hh:mm"),
                                                (weekly, _WEEKLY_WINDOW, "ddd:hh:mm-ddd:hh:mm")):
        if not pattern.match(window):
            problems.append(f"{field_name}={window!r}: allowed {form} (UTC)")
        elif window_span(window)[1] < minimum_minutes:
            problems.append(f"{field_name}={window!r}: allowed at least {minimum_minutes} minutes")
    if not problems and windows_overlap(daily[1], weekly[1]):
        problems.append(f"{weekly[0]}={weekly[1]!r}: allowed a window that does not overlap "
                        f"{daily[0]} ({daily[1]!r})")
    return problems


def windows_overlap(daily: str, weekly: str) -> bool:
    """Whether a daily window (repeated every day) meets a weekly window."""
    daily_start, daily_length = window_span(daily)
    weekly_start, weekly_length = window_span(weekly)
    daily_minutes = {(day * MINUTES_PER_DAY + daily_start + i) % MINUTES_PER_WEEK
                     for day in range(7) for i in range(daily_length)}
    return any((weekly_start + i) % MINUTES_PER_WEEK in daily_minutes
               for i in range(weekly_length))


class ConfigError(ValueError):
    """Bad stack configuration; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration for stack ({len(problems)} problem(s)):\n{lines}")


class NatStrategy(StrEnum):
    ONE_PER_AZ = "ONE_PER_AZ"
    SINGLE = "SINGLE"
    NONE = "NONE"


class StreamMode(StrEnum):
    ON_DEMAND = "ON_DEMAND"
    PROVISIONED = "PROVISIONED"


class ApiAuth(StrEnum):
    API_KEY = "API_KEY"
    IAM = "IAM"


class AuditTrailMode(StrEnum):
    CREATE = "CREATE"
    EXISTING = "EXISTING"
    OFF = "OFF"


@dataclass(frozen=True)
class ConfigKey:
    """One declared key of the project's config namespace."""

    name: str
    kind: str  # how the value parses: string | integer | number | boolean | array
    default: Any
    description: str

    @property
    def pulumi_type(self) -> str:
        """The type declared in Pulumi.yaml, which has no fractional number type."""
        return "string" if self.kind == "number" else self.kind


def _k(name: str, type_: str, default: Any, description: str) -> ConfigKey:
    return ConfigKey(name, type_, default, description)


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    # naming, tags, protection
    _k("prefix", "string", "media",
       "First part of every physical name; lowercase letters, digits, hyphens, "
       f"<= {MAX_PREFIX_LENGTH} chars; may be empty."),
    _k("environmentSuffix", "string", "dev",
       f"Last part of every physical name (G2); lowercase letters and digits, "
       f"1-{MAX_SUFFIX_LENGTH} chars."),
    _k("owner", "string", "platform-team", "Owner tag on every resource (G4)."),
    _k("costCenter", "string", "media-platform", "CostCenter tag on every resource (G4)."),
    _k("dataClassification", "string", "confidential",
       "DataClassification tag: public, internal, confidential or restricted."),
    _k("complianceRegime", "string", "MPA-CSP", "Compliance tag (e.g. MPA-CSP, TPN, GDPR)."),
    _k("extraTags", "array", [], "Extra tags as 'Key=Value' strings, added to every resource."),
    _k("dataProtection", "boolean", False,
       "Protect data on destroy: the data stores (Aurora, EFS, stream, dead-letter queues, "
       "audit bucket, KMS keys) protected and retained, deletion protection, final "
       "snapshots, 30-day key and secret recovery windows, buckets and repositories kept "
       "when not empty (G3)."),
    _k("logRetentionDays", "integer", 30,
       "Retention of every log group, one of CloudWatch's allowed values (O1)."),
    # network
    _k("availabilityZoneCount", "integer", 2, "Availability zones to spread over: 2 or 3 (G7)."),
    _k("vpcCidr", "string", "10.0.0.0/16", "VPC IPv4 CIDR, private range, /16 to /20."),
    _k("natStrategy", "string", "ONE_PER_AZ",
       "NAT gateways: ONE_PER_AZ (HA), SINGLE (cheap, non-production) or NONE (needs endpoints)."),
    _k("dataSubnetNacls", "boolean", True, "Network ACLs on the data subnets (N5)."),
    _k("vpcEndpoints", "boolean", True,
       "S3 gateway and interface endpoints for the AWS APIs the workloads call (N6)."),
    # database
    _k("dbEngineVersion", "string", "16.6",
       "Aurora PostgreSQL major.minor (major 13-17); automatic minor upgrades are off, so "
       "minor upgrades are applied by changing this key."),
    _k("dbMinCapacity", "number", 0.5, "Serverless v2 minimum ACUs (0.5-256, steps of 0.5)."),
    _k("dbMaxCapacity", "number", 4, "Serverless v2 maximum ACUs (>= minimum, <= 256)."),
    _k("dbReaderCount", "integer", 1, "Aurora readers in other AZs (1-15) (D2)."),
    _k("dbName", "string", "media", "Initial database name."),
    _k("dbBackupRetentionDays", "integer", 7, "Automated backup / PITR retention, 1-35 days (D3)."),
    _k("dbBackupWindow", "string", "02:00-03:00", "Daily backup window, UTC hh:mm-hh:mm."),
    _k("dbMaintenanceWindow", "string", "sun:03:30-sun:04:30",
       "Weekly maintenance window, UTC ddd:hh:mm-ddd:hh:mm."),
    _k("dbSecretRotationDays", "integer", 30, "Master secret rotation period, 1-365 days (D5)."),
    # cache
    _k("cacheEngine", "string", "valkey", "Redis-compatible engine: valkey or redis."),
    _k("cacheEngineVersion", "string", "8.0",
       "Engine version major.minor (valkey 7.2/8.0/8.1, redis 6.2/7.0/7.1)."),
    _k("cacheNodeType", "string", "cache.t4g.micro", "ElastiCache node type."),
    _k("cacheNodeCount", "integer", 2, "Cache nodes (primary + replicas) in distinct AZs, 2-6."),
    _k("cacheTransitEncryption", "boolean", True,
       "TLS + AUTH token on the cache; turning it off is a logged opt-out (C3)."),
    _k("cacheSnapshotRetentionDays", "integer", 1, "Cache snapshot retention, 0-35 days (C4)."),
    _k("cacheSnapshotWindow", "string", "01:00-02:00", "Daily snapshot window, UTC hh:mm-hh:mm."),
    _k("cacheMaintenanceWindow", "string", "sun:05:00-sun:06:00",
       "Weekly maintenance window, UTC ddd:hh:mm-ddd:hh:mm."),
    # stream
    _k("streamMode", "string", "ON_DEMAND", "Kinesis capacity mode: ON_DEMAND or PROVISIONED."),
    _k("streamShardCount", "integer", 1, "Shards when streamMode is PROVISIONED, 1-500."),
    _k("streamRetentionHours", "integer", 24, "Stream retention, 24-8760 hours (S2)."),
    # queue
    _k("queueMaxReceiveCount", "integer", 5,
       "Receives before a job message moves to the dead-letter queue, 1-100 (W6)."),
    _k("jobTimeoutSeconds", "integer", 900, "Longest a worker spends on one job, 30-3600 s."),
    _k("queueVisibilityTimeoutSeconds", "integer", 1200,
       "Jobs-queue visibility timeout, longer than jobTimeoutSeconds, <= 43200 s."),
    # worker
    _k("workerCpu", "integer", 512, "Worker task CPU units (a Fargate size)."),
    _k("workerMemory", "integer", 1024, "Worker task memory MiB (allowed for workerCpu)."),
    _k("workerMinTasks", "integer", 2, "Minimum worker tasks, >= 2 for multi-AZ (W7)."),
    _k("workerMaxTasks", "integer", 20, "Maximum worker tasks, >= workerMinTasks, <= 200 (W7)."),
    _k("workerFargateBase", "integer", 1, "Tasks always on regular FARGATE before weights apply."),
    _k("workerFargateWeight", "integer", 1, "Weight of FARGATE beyond the base (W2)."),
    _k("workerSpotWeight", "integer", 3, "Weight of FARGATE_SPOT beyond the base (W2)."),
    _k("workerImage", "string", "",
       "Worker image URI; empty builds services/worker and pushes it to the stack's ECR."),
    _k("workerEfsMount", "boolean", True, "Mount the shared EFS file system into workers (W4)."),
    _k("workerCpuTarget", "integer", 70, "Target CPU % for worker scaling, 10-90 (W7)."),
    _k("workerBacklogPerTask", "integer", 10,
       "Target visible jobs per running task for backlog scaling, 1-1000 (W7)."),
    _k("workerStopTimeoutSeconds", "integer", 110,
       "Grace between SIGTERM and SIGKILL, 2-120 s (Spot gives 120 s) (W8)."),
    # api
    _k("apiAuth", "string", "API_KEY", "Method authorisation: API_KEY or IAM (A3)."),
    _k("apiThrottleRateLimit", "number", 50, "Steady requests/s for stage and usage plan (A2)."),
    _k("apiThrottleBurstLimit", "integer", 100, "Burst requests for stage and usage plan (A2)."),
    _k("apiQuotaLimit", "integer", 100000, "Requests per quota period per API key (A2)."),
    _k("apiQuotaPeriod", "string", "MONTH", "Quota period: DAY, WEEK or MONTH."),
    _k("apiWafRateLimit", "integer", 2000, "WAF requests per 5 minutes per IP, 10-2000000000."),
    _k("apiReservedConcurrency", "integer", -1,
       "Reserved concurrency of the API Lambda; -1 leaves it unreserved."),
    _k("apiLambdaMemoryMb", "integer", 256, "API Lambda memory, 128-10240 MiB."),
    _k("apiCacheSizeGb", "string", "", "Stage cache size (encrypted) or empty for no cache."),
    _k("apiManageCloudwatchRole", "boolean", False,
       "Manage the account-wide API Gateway CloudWatch Logs role (one stack per account)."),
    # operations
    _k("alarmEmail", "string", "", "E-mail subscribed to the alarm topic; empty for none."),
    _k("auditTrailMode", "string", "CREATE",
       "CloudTrail: CREATE a trail, EXISTING (organisation trail, give its ARN) or OFF (O3)."),
    _k("auditTrailExistingArn", "string", "", "ARN of the existing trail when mode is EXISTING."),
    _k("auditLogTransitionDays", "integer", 30, "Days before audit logs move to Glacier IR."),
    _k("auditLogExpirationDays", "integer", 365, "Days before audit logs expire."),
    _k("alarmApi5xxThreshold", "integer", 5, "API 5xx responses per 5 minutes that alarm."),
    _k("alarmApiLatencyP99Ms", "integer", 3000, "API p99 latency (ms) that alarms."),
    _k("alarmWorkerCpuPercent", "integer", 85, "Worker CPU % that alarms."),
    _k("alarmWorkerMemoryPercent", "integer", 85, "Worker memory % that alarms."),
    _k("alarmDbCpuPercent", "integer", 80, "Database CPU % that alarms."),
    _k("alarmCacheCpuPercent", "integer", 75, "Cache engine CPU % that alarms."),
    _k("alarmQueueOldestMessageSeconds", "integer", 1800, "Age of the oldest job that alarms."),
    _k("alarmStreamIteratorAgeMs", "integer", 60000, "Stream iterator age (ms) that alarms (S5)."),
)

KEYS_BY_NAME = {key.name: key for key in CONFIG_KEYS}


# ---------------------------------------------------------------------------------------
# The validated, typed result
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataProtection:
    """What `dataProtection` switches on together (G3)."""

    enabled: bool

    @property
    def kms_deletion_window_days(self) -> int:
        return 30 if self.enabled else 7

    @property
    def secret_recovery_window_days(self) -> int:
        # 0 deletes at once so a re-deploy can reuse the name; 7-30 is the allowed window.
        return 30 if self.enabled else 0

    @property
    def force_destroy(self) -> bool:
        """Empty buckets / repositories / consumers on destroy."""
        return not self.enabled


@dataclass(frozen=True)
class NetworkSettings:
    az_count: int
    cidr: str
    nat_strategy: NatStrategy
    data_subnet_nacls: bool
    vpc_endpoints: bool


@dataclass(frozen=True)
class DatabaseSettings:
    engine_version: str
    min_capacity: float
    max_capacity: float
    reader_count: int
    name: str
    backup_retention_days: int
    backup_window: str
    maintenance_window: str
    secret_rotation_days: int

    @property
    def parameter_group_family(self) -> str:
        return aurora_parameter_group_family(self.engine_version)


@dataclass(frozen=True)
class CacheSettings:
    engine: str
    engine_version: str
    node_type: str
    node_count: int
    transit_encryption: bool
    snapshot_retention_days: int
    snapshot_window: str
    maintenance_window: str

    @property
    def parameter_group_family(self) -> str:
        return cache_parameter_group_family(self.engine, self.engine_version)


@dataclass(frozen=True)
class StreamSettings:
    mode: StreamMode
    shard_count: int
    retention_hours: int


@dataclass(frozen=True)
class QueueSettings:
    max_receive_count: int
    job_timeout_seconds: int
    visibility_timeout_seconds: int


@dataclass(frozen=True)
class WorkerSettings:
    cpu: int
    memory: int
    min_tasks: int
    max_tasks: int
    fargate_base: int
    fargate_weight: int
    spot_weight: int
    image: str
    efs_mount: bool
    cpu_target: int
    backlog_per_task: int
    stop_timeout_seconds: int


@dataclass(frozen=True)
class ApiSettings:
    auth: ApiAuth
    throttle_rate_limit: float
    throttle_burst_limit: int
    quota_limit: int
    quota_period: str
    waf_rate_limit: int
    reserved_concurrency: int
    lambda_memory_mb: int
    cache_size_gb: str
    manage_cloudwatch_role: bool


@dataclass(frozen=True)
class AlarmThresholds:
    api_5xx: int
    api_latency_p99_ms: int
    worker_cpu_percent: int
    worker_memory_percent: int
    db_cpu_percent: int
    cache_cpu_percent: int
    queue_oldest_message_seconds: int
    stream_iterator_age_ms: int


@dataclass(frozen=True)
class ObservabilitySettings:
    alarm_email: str
    audit_trail_mode: AuditTrailMode
    audit_trail_existing_arn: str
    audit_log_transition_days: int
    audit_log_expiration_days: int
    thresholds: AlarmThresholds


@dataclass(frozen=True)
class TagSettings:
    owner: str
    cost_center: str
    data_classification: str
    compliance_regime: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackSettings:
    project: str
    stack: str
    region: str
    prefix: str
    suffix: str
    tags: TagSettings
    protection: DataProtection
    log_retention_days: int
    network: NetworkSettings
    database: DatabaseSettings
    cache: CacheSettings
    stream: StreamSettings
    queue: QueueSettings
    worker: WorkerSettings
    api: ApiSettings
    observability: ObservabilitySettings

    def require_zones(self, zone_names: list[str]) -> list[str]:
        """The first `az_count` of the region's zones; error if the region has fewer."""
        if len(zone_names) < self.network.az_count:
            raise ConfigError([
                f"availabilityZoneCount={self.network.az_count}: region {self.region} has only "
                f"{len(zone_names)} available zone(s) ({', '.join(zone_names) or 'none'}); "
                f"allowed: 2..{min(3, len(zone_names))}"
            ])
        return sorted(zone_names)[: self.network.az_count]


# ---------------------------------------------------------------------------------------
# Parsing: collect every problem, never stop at the first
# ---------------------------------------------------------------------------------------

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")
_SUFFIX = re.compile(rf"^[a-z0-9]{{1,{MAX_SUFFIX_LENGTH}}}$")
_PREFIX = re.compile(rf"^([a-z](?:[a-z0-9-]{{0,{MAX_PREFIX_LENGTH - 2}}}[a-z0-9])?)?$")
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")
_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DAILY_WINDOW = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
_WEEKLY_WINDOW = re.compile(
    r"^(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):[0-5]\d-"
    r"(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):[0-5]\d$"
)
_NODE_TYPE = re.compile(r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
_IMAGE = re.compile(r"^[a-z0-9][\w.-]*(:\d+)?(/[\w.-]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_TRAIL_ARN = re.compile(r"^arn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:\d{12}:trail/[\w.-]{3,128}$")
_CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")


class _Reader:
    """Reads raw string config values by declared type, recording problems."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw = raw
        self.problems: list[str] = []

    def problem(self, name: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{name}={json.dumps(value)}: allowed {allowed}")

    def get(self, name: str) -> Any:
        key = KEYS_BY_NAME[name]
        if name not in self.raw:
            return key.default
        text = self.raw[name]
        try:
            return _PARSERS[key.kind](text)
        except (ValueError, TypeError):
            self.problem(name, text, f"a value of type {key.kind}")
            return key.default

    def text(self, name: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self.get(name)
        if pattern is not None and not pattern.match(value):
            self.problem(name, value, allowed)
        return value

    def choice(self, name: str, choices: tuple[str, ...] | type[Enum]) -> Any:
        value = self.get(name)
        options = tuple(c.value for c in choices) if isinstance(choices, type) else choices
        if value not in options:
            self.problem(name, value, "one of " + ", ".join(options))
            value = KEYS_BY_NAME[name].default
        return choices(value) if isinstance(choices, type) else value

    def number(self, name: str, low: float, high: float, step: float | None = None) -> Any:
        value = self.get(name)
        in_range = low <= value <= high
        on_step = step is None or (value / step).is_integer()
        if not (in_range and on_step):
            steps = f" in steps of {step}" if step else ""
            self.problem(name, value, f"{low}..{high}{steps}")
        return value

    def flag(self, name: str) -> bool:
        return bool(self.get(name))


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"-?\d+", text.strip()):
        raise ValueError(text)
    return int(text)


def _parse_number(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return int(value) if value.is_integer() else value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _parse_array(text: str) -> list[str]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(text)
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": _parse_int,
    "number": _parse_number,
    "boolean": _parse_bool,
    "array": _parse_array,
}


def _read_tags(r: _Reader) -> TagSettings:
    extra: dict[str, str] = {}
    for item in r.get("extraTags"):
        key, sep, value = item.partition("=")
        if not sep or not _TAG_KEY.match(key) or not _TAG_VALUE.match(value):
            r.problem("extraTags", item, "'Key=Value' with tag-safe characters")
        elif key.lower().startswith("aws:"):
            r.problem("extraTags", item, "keys not starting with 'aws:' (reserved by AWS)")
        else:
            extra[key] = value
    return TagSettings(
        owner=r.text("owner", _TAG_VALUE, "tag-safe characters, <= 256"),
        cost_center=r.text("costCenter", _TAG_VALUE, "tag-safe characters, <= 256"),
        data_classification=r.choice("dataClassification", _CLASSIFICATIONS),
        compliance_regime=r.text("complianceRegime", _TAG_VALUE, "tag-safe characters, <= 256"),
        extra=extra,
    )


def _read_network(r: _Reader, protected: bool) -> NetworkSettings:
    az_count = r.number("availabilityZoneCount", 2, 3)
    cidr = r.get("vpcCidr")
    try:
        net = ipaddress.IPv4Network(cidr, strict=True)
        if not net.is_private or not 16 <= net.prefixlen <= 20:
            r.problem("vpcCidr", cidr, "a private (RFC 1918) IPv4 network from /16 to /20")
    except ValueError:
        r.problem("vpcCidr", cidr, "an IPv4 network in CIDR form such as 10.0.0.0/16")
    nat = r.choice("natStrategy", NatStrategy)
    endpoints = r.flag("vpcEndpoints")
    if nat is NatStrategy.SINGLE and protected:
        r.problem("natStrategy", nat.value,
                  "ONE_PER_AZ or NONE when dataProtection is true (a single NAT is a "
                  "non-production cost option)")
    if nat is NatStrategy.NONE and not endpoints:
        r.problem("natStrategy", nat.value,
                  "ONE_PER_AZ or SINGLE unless vpcEndpoints is true (tasks must reach ECR, "
                  "Secrets Manager and CloudWatch Logs)")
    return NetworkSettings(az_count, cidr, nat, r.flag("dataSubnetNacls"), endpoints)


def _read_database(r: _Reader) -> DatabaseSettings:
    version = r.get("dbEngineVersion")
    major = version.split(".")[0]
    if not re.fullmatch(r"\d+\.\d+", version) or int(major) not in AURORA_MAJORS:
        r.problem("dbEngineVersion", version,
                  "major.minor with major in " + ", ".join(map(str, AURORA_MAJORS)))
    min_acu = r.number("dbMinCapacity", 0.5, 256, step=0.5)
    max_acu = r.number("dbMaxCapacity", 0.5, 256, step=0.5)
    if max_acu < min_acu:
        r.problem("dbMaxCapacity", max_acu, f">= dbMinCapacity ({min_acu})")
    # At least one reader: D2 puts a failover target in another AZ.
    readers = r.number("dbReaderCount", 1, 15)
    name = r.text("dbName", _DB_NAME, "lowercase letter then letters, digits, _ (<= 63)")
    if name in RESERVED_DB_NAMES:
        r.problem("dbName", name, "a name other than " + ", ".join(RESERVED_DB_NAMES)
                  + " (they exist in every cluster)")
    backup = r.text("dbBackupWindow", _DAILY_WINDOW, "hh:mm-hh:mm (UTC)")
    maintenance = r.text("dbMaintenanceWindow", _WEEKLY_WINDOW,
                         "ddd:hh:mm-ddd:hh:mm (UTC, ddd = mon..sun)")
    _check_windows(r, ("dbBackupWindow", backup), ("dbMaintenanceWindow", maintenance),
                   RDS_MIN_WINDOW_MINUTES, "RDS")
    return DatabaseSettings(
        engine_version=version,
        min_capacity=min_acu,
        max_capacity=max_acu,
        reader_count=readers,
        name=name,
        backup_retention_days=r.number("dbBackupRetentionDays", 1, 35),
        backup_window=backup,
        maintenance_window=maintenance,
        secret_rotation_days=r.number("dbSecretRotationDays", 1, 365),
    )


def _check_windows(r: _Reader, daily: tuple[str, str], weekly: tuple[str, str],
                   minimum: int, service: str) -> None:
    """Both windows long enough, and the daily one never inside the weekly one."""
    well_formed = True
    for (key, window), pattern in ((daily, _DAILY_WINDOW), (weekly, _WEEKLY_WINDOW)):
        if not pattern.match(window):
            well_formed = False
        elif window_span(window)[1] < minimum:
            well_formed = False
            r.problem(key, window, f"a window of at least {minimum} minutes ({service} minimum)")
    if well_formed and windows_overlap(daily[1], weekly[1]):
        r.problem(weekly[0], weekly[1],
                  f"a window that does not overlap {daily[0]} ({daily[1]}); {service} rejects "
                  "overlapping windows")


def _read_cache(r: _Reader, protected: bool) -> CacheSettings:
    engine = r.choice("cacheEngine", tuple(CACHE_ENGINE_VERSIONS))
    version = r.get("cacheEngineVersion")
    if version not in CACHE_ENGINE_VERSIONS[engine]:
        r.problem("cacheEngineVersion", version,
                  f"for {engine}: " + ", ".join(CACHE_ENGINE_VERSIONS[engine]))
    # Two nodes at least: automatic failover and Multi-AZ need a replica (C1). More nodes
    # than zones is fine: the component places them round-robin over the zones.
    nodes = r.number("cacheNodeCount", 2, 6)
    transit = r.flag("cacheTransitEncryption")
    if protected and not transit:
        r.problem("cacheTransitEncryption", transit,
                  "true when dataProtection is true (turning TLS off is a development "
                  "convenience only)")
    snapshot = r.text("cacheSnapshotWindow", _DAILY_WINDOW, "hh:mm-hh:mm (UTC)")
    maintenance = r.text("cacheMaintenanceWindow", _WEEKLY_WINDOW,
                         "ddd:hh:mm-ddd:hh:mm (UTC, ddd = mon..sun)")
    _check_windows(r, ("cacheSnapshotWindow", snapshot), ("cacheMaintenanceWindow", maintenance),
                   ELASTICACHE_MIN_WINDOW_MINUTES, "ElastiCache")
    return CacheSettings(
        engine=engine,
        engine_version=version,
        node_type=r.text("cacheNodeType", _NODE_TYPE, "an ElastiCache node type like "
                         "cache.t4g.micro"),
        node_count=nodes,
        transit_encryption=transit,
        snapshot_retention_days=r.number("cacheSnapshotRetentionDays", 0, 35),
        snapshot_window=snapshot,
        maintenance_window=maintenance,
    )


def _read_stream(r: _Reader) -> StreamSettings:
    mode = r.choice("streamMode", StreamMode)
    shards = r.number("streamShardCount", 1, 500)
    default_shards = KEYS_BY_NAME["streamShardCount"].default
    if mode is StreamMode.ON_DEMAND and shards != default_shards:
        r.problem("streamShardCount", shards,
                  f"unset (default {default_shards}) when streamMode is ON_DEMAND "
                  "(AWS sizes on-demand streams itself)")
    return StreamSettings(mode, shards, r.number("streamRetentionHours", 24, 8760))


def _read_queue(r: _Reader) -> QueueSettings:
    timeout = r.number("jobTimeoutSeconds", 30, 3600)
    visibility = r.number("queueVisibilityTimeoutSeconds", 60, 43200)
    if visibility <= timeout:
        r.problem("queueVisibilityTimeoutSeconds", visibility,
                  f"more than jobTimeoutSeconds ({timeout}) so a running job is not redelivered")
    return QueueSettings(r.number("queueMaxReceiveCount", 1, 100), timeout, visibility)


def _read_worker(r: _Reader, stop_ceiling: int) -> WorkerSettings:
    cpu = r.get("workerCpu")
    memory = r.get("workerMemory")
    if cpu not in FARGATE_MEMORY_BY_CPU:
        r.problem("workerCpu", cpu, "one of " + ", ".join(map(str, FARGATE_MEMORY_BY_CPU)))
    elif memory not in FARGATE_MEMORY_BY_CPU[cpu]:
        allowed = FARGATE_MEMORY_BY_CPU[cpu]
        r.problem("workerMemory", memory,
                  f"for workerCpu={cpu}: {allowed[0]}..{allowed[-1]} in steps of "
                  f"{allowed[1] - allowed[0] if len(allowed) > 1 else allowed[0]} "
                  f"({', '.join(map(str, allowed))})")
    min_tasks = r.number("workerMinTasks", 2, 200)
    max_tasks = r.number("workerMaxTasks", 2, 200)
    if max_tasks < min_tasks:
        r.problem("workerMaxTasks", max_tasks, f">= workerMinTasks ({min_tasks})")
    fargate_weight = r.number("workerFargateWeight", 0, 1000)
    spot_weight = r.number("workerSpotWeight", 0, 1000)
    if fargate_weight + spot_weight == 0:
        r.problem("workerSpotWeight", spot_weight,
                  "> 0 or workerFargateWeight > 0 (all-zero weights launch nothing past the base)")
    image = r.get("workerImage")
    if image and not _IMAGE.match(image):
        r.problem("workerImage", image,
                  "empty (build from services/worker) or registry/repository:tag or @sha256:digest")
    return WorkerSettings(
        cpu=cpu,
        memory=memory,
        min_tasks=min_tasks,
        max_tasks=max_tasks,
        fargate_base=r.number("workerFargateBase", 0, 100),
        fargate_weight=fargate_weight,
        spot_weight=spot_weight,
        image=image,
        efs_mount=r.flag("workerEfsMount"),
        cpu_target=r.number("workerCpuTarget", 10, 90),
        backlog_per_task=r.number("workerBacklogPerTask", 1, 1000),
        stop_timeout_seconds=r.number("workerStopTimeoutSeconds", 2, stop_ceiling),
    )


def _read_api(r: _Reader) -> ApiSettings:
    reserved = r.get("apiReservedConcurrency")
    if reserved != -1 and not 1 <= reserved <= 1000:
        r.problem("apiReservedConcurrency", reserved, "-1 (unreserved) or 1..1000")
    cache_size = r.get("apiCacheSizeGb")
    if cache_size and cache_size not in API_CACHE_SIZES_GB:
        r.problem("apiCacheSizeGb", cache_size, "empty (no cache) or one of "
                  + ", ".join(API_CACHE_SIZES_GB))
    return ApiSettings(
        auth=r.choice("apiAuth", ApiAuth),
        throttle_rate_limit=r.number("apiThrottleRateLimit", 1, 10000),
        throttle_burst_limit=r.number("apiThrottleBurstLimit", 1, 5000),
        quota_limit=r.number("apiQuotaLimit", 1, 2_000_000_000),
        quota_period=r.choice("apiQuotaPeriod", ("DAY", "WEEK", "MONTH")),
        waf_rate_limit=r.number("apiWafRateLimit", 10, 2_000_000_000),
        reserved_concurrency=reserved,
        lambda_memory_mb=r.number("apiLambdaMemoryMb", 128, 10240),
        cache_size_gb=cache_size,
        manage_cloudwatch_role=r.flag("apiManageCloudwatchRole"),
    )


def _read_observability(r: _Reader) -> ObservabilitySettings:
    email = r.get("alarmEmail")
    if email and not _EMAIL.match(email):
        r.problem("alarmEmail", email, "empty or an e-mail address")
    mode = r.choice("auditTrailMode", AuditTrailMode)
    existing = r.get("auditTrailExistingArn")
    if mode is AuditTrailMode.EXISTING and not _TRAIL_ARN.match(existing):
        r.problem("auditTrailExistingArn", existing,
                  "a CloudTrail trail ARN (arn:aws:cloudtrail:<region>:<account>:trail/<name>) "
                  "when auditTrailMode is EXISTING")
    if mode is not AuditTrailMode.EXISTING and existing:
        r.problem("auditTrailExistingArn", existing,
                  "empty unless auditTrailMode is EXISTING (create or bring your own, not both)")
    transition = r.number("auditLogTransitionDays", 1, 3650)
    expiration = r.number("auditLogExpirationDays", 1, 3650)
    if expiration <= transition:
        r.problem("auditLogExpirationDays", expiration,
                  f"more than auditLogTransitionDays ({transition})")
    thresholds = AlarmThresholds(
        api_5xx=r.number("alarmApi5xxThreshold", 1, 100000),
        api_latency_p99_ms=r.number("alarmApiLatencyP99Ms", 50, 29000),
        worker_cpu_percent=r.number("alarmWorkerCpuPercent", 1, 100),
        worker_memory_percent=r.number("alarmWorkerMemoryPercent", 1, 100),
        db_cpu_percent=r.number("alarmDbCpuPercent", 1, 100),
        cache_cpu_percent=r.number("alarmCacheCpuPercent", 1, 100),
        queue_oldest_message_seconds=r.number("alarmQueueOldestMessageSeconds", 60, 1209600),
        stream_iterator_age_ms=r.number("alarmStreamIteratorAgeMs", 1000, 604800000),
    )
    return ObservabilitySettings(email, mode, existing, transition, expiration, thresholds)


def parse_settings(raw: Mapping[str, str], *, project: str, stack: str,
                   region: str | None) -> StackSettings:
    """Validate raw project config (key -> string value) in one pass."""
    r = _Reader(raw)
    for name in sorted(set(raw) - set(KEYS_BY_NAME)):
        close = _closest_key(name)
        hint = f" (did you mean '{close}'?)" if close else ""
        r.problems.append(f"{name}: unknown key in namespace '{PROJECT}'{hint}; allowed keys: "
                          "see Pulumi.yaml `config:`")
    if not region or not _REGION.match(region):
        r.problems.append(f"aws:region={json.dumps(region)}: allowed an AWS region name such as "
                          "eu-central-1 (set it with `pulumi config set aws:region ...`)")
    prefix = r.text("prefix", _PREFIX, f"empty or lowercase letters, digits and inner hyphens, "
                    f"starting with a letter, <= {MAX_PREFIX_LENGTH} chars")
    if "--" in prefix:
        r.problem("prefix", prefix, "no consecutive hyphens")
    suffix = r.text("environmentSuffix", _SUFFIX,
                    f"1-{MAX_SUFFIX_LENGTH} lowercase letters or digits")
    protected = r.flag("dataProtection")
    retention = r.get("logRetentionDays")
    if retention not in LOG_RETENTION_DAYS:
        allowed = "one of " + ", ".join(map(str, LOG_RETENTION_DAYS))
        r.problem("logRetentionDays", retention, allowed)
    tags = _read_tags(r)
    network = _read_network(r, protected)
    queue = _read_queue(r)
    settings = StackSettings(
        project=project,
        stack=stack,
        region=region or "",
        prefix=prefix,
        suffix=suffix,
        tags=tags,
        protection=DataProtection(protected),
        log_retention_days=retention,
        network=network,
        database=_read_database(r),
        cache=_read_cache(r, protected),
        stream=_read_stream(r),
        queue=queue,
        worker=_read_worker(r, stop_ceiling=120),
        api=_read_api(r),
        observability=_read_observability(r),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def _closest_key(name: str) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, KEYS_BY_NAME, n=1, cutoff=0.75)
    return matches[0] if matches else None


def load_settings() -> StackSettings:
    """Read this stack's config from the Pulumi runtime and validate it (G8)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    namespace = f"{PROJECT}:"
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {
        key[len(namespace):]: str(value)
        for key, value in everything.items()
        if key.startswith(namespace)
    }
    return parse_settings(
        raw,
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        region=pulumi.Config("aws").get("region"),
    )
