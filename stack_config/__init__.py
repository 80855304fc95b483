"""Stack settings: the only code that reads Pulumi config, above `components/`.

The keys are not written here: each tier's settings class declares its own (see
`components/tunables.py`); this module adds the few stack-wide keys (names, tags, data
protection, log retention, zones), reads every key in one pass, applies the rules that span
tiers, and raises one `ConfigError` listing every bad key, its value and what is allowed (G8),
before any resource is registered.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.api import PublicApiSettings
from components.audit import AuditTrailSettings
from components.aws_limits import LOG_RETENTION_DAYS
from components.backup import DatabaseBackupSettings
from components.cache import RedisReplicationGroupSettings
from components.database import EncryptedAuroraSettings
from components.delivery import MediaDistributionSettings
from components.jobs import JobQueueSettings
from components.media_storage import MediaStorageSettings
from components.naming import MAX_PREFIX_LENGTH, MAX_SUFFIX_LENGTH, Namer
from components.network import NatStrategy, SecureVpcSettings
from components.observability import AlarmTopicSettings
from components.protection import Lifecycle
from components.stream import AnalyticsStreamSettings
from components.tunables import Problem, Tunable, Tunables, describe, render, tunable
from components.worker import MediaWorkerServiceSettings, job_timeout_rule, scratch_rule

PROJECT = "media-pipeline"

_TAG_VALUE = r"^[\w .:/=+@-]{0,256}$"
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")
_TAG_SAFE = "tag-safe characters, <= 256"


STACK_NAME = "the stack name"


@dataclass(frozen=True, kw_only=True)
class StackWide(Tunables):
    """Keys every tier shares: names, tags, data protection, log retention, zones."""

    TIER = "stack"

    prefix: str = tunable(
        "prefix",
        "media",
        "First part of every physical name (G2); may be empty.",
        pattern=rf"^([a-z](?!.*--)(?:[a-z0-9-]{{0,{MAX_PREFIX_LENGTH - 2}}}[a-z0-9])?)?$",
        allowed=f"empty or lowercase letters, digits and single inner hyphens, starting with "
        f"a letter, <= {MAX_PREFIX_LENGTH} chars",
    )
    suffix: str = tunable(
        "environmentSuffix",
        "dev",
        "Last part of every physical name (G2); each stack's own by default, so a new stack "
        "never takes another's account-wide names.",
        default_from=STACK_NAME,
        pattern=rf"^[a-z0-9]{{1,{MAX_SUFFIX_LENGTH}}}$",
        allowed=f"1-{MAX_SUFFIX_LENGTH} lowercase letters or digits",
    )
    owner: str = tunable(
        "owner",
        "platform-team",
        "Owner tag on every resource (G4).",
        pattern=_TAG_VALUE,
        allowed=_TAG_SAFE,
    )
    cost_center: str = tunable(
        "costCenter",
        "media-platform",
        "CostCenter tag on every resource (G4).",
        pattern=_TAG_VALUE,
        allowed=_TAG_SAFE,
    )
    data_classification: str = tunable(
        "dataClassification",
        "confidential",
        "DataClassification tag (G4).",
        choices=("public", "internal", "confidential", "restricted"),
    )
    compliance_regime: str = tunable(
        "complianceRegime",
        "MPA-CSP",
        "Compliance tag (e.g. MPA-CSP, TPN, GDPR).",
        pattern=_TAG_VALUE,
        allowed=_TAG_SAFE,
    )
    extra_tags: tuple[str, ...] = tunable(
        "extraTags", (), "Extra tags as 'Key=Value' strings, added to every resource."
    )
    data_protection: bool = tunable(
        "dataProtection",
        False,
        "Protect data on destroy: the data stores (Aurora, EFS, stream, dead-letter queues, "
        "audit bucket, KMS keys) protected and retained, deletion protection, final "
        "snapshots, 30-day key and secret recovery windows, buckets and repositories kept "
        "when not empty (G3).",
    )
    log_retention_days: int = tunable(
        "logRetentionDays", 30, "Retention of every log group (O1).", choices=LOG_RETENTION_DAYS
    )
    az_count: int = tunable(
        "availabilityZoneCount", 2, "Availability zones to spread over (G7).", range=(2, 3)
    )

    def rules(self) -> list[Problem]:
        problems = []
        for item in self.extra_tags:
            key, sep, value = item.partition("=")
            if not sep or not _TAG_KEY.match(key) or not re.match(_TAG_VALUE, value):
                problems.append(Problem("extra_tags", item, "'Key=Value' with tag-safe characters"))
            elif key.lower().startswith("aws:"):
                problems.append(
                    Problem("extra_tags", item, "keys not starting with 'aws:' (reserved by AWS)")
                )
        return problems

    @property
    def extra(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.extra_tags)


TIERS: tuple[type[Tunables], ...] = (
    StackWide,
    SecureVpcSettings,
    EncryptedAuroraSettings,
    DatabaseBackupSettings,
    RedisReplicationGroupSettings,
    AnalyticsStreamSettings,
    JobQueueSettings,
    MediaStorageSettings,
    MediaWorkerServiceSettings,
    MediaDistributionSettings,
    PublicApiSettings,
    AlarmTopicSettings,
    AuditTrailSettings,
)


def declared_keys() -> list[tuple[type[Tunables], str, Tunable]]:
    """(tier, field name, declaration) of every key, in the order of the config table."""
    return [(tier, name, declared) for tier in TIERS for name, declared in tier.declarations()]


KEYS_BY_NAME: dict[str, Tunable] = {declared.key: declared for _, _, declared in declared_keys()}
if len(KEYS_BY_NAME) != len(declared_keys()):
    raise TypeError("a config key is declared twice")


class ConfigError(ValueError):
    """Bad stack configuration; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration for stack ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class StackSettings:
    """Every tier's validated settings, plus the stack's identity."""

    project: str
    stack: str
    region: str
    stack_wide: StackWide
    network: SecureVpcSettings
    database: EncryptedAuroraSettings
    backups: DatabaseBackupSettings
    cache: RedisReplicationGroupSettings
    stream: AnalyticsStreamSettings
    queue: JobQueueSettings
    media_storage: MediaStorageSettings
    worker: MediaWorkerServiceSettings
    delivery: MediaDistributionSettings
    api: PublicApiSettings
    alarms: AlarmTopicSettings
    audit: AuditTrailSettings

    @property
    def protection(self) -> Lifecycle:
        return Lifecycle(self.stack_wide.data_protection)

    @property
    def log_retention_days(self) -> int:
        return self.stack_wide.log_retention_days

    def namer(self) -> Namer:
        return Namer(self.stack_wide.prefix, self.stack_wide.suffix)

    def common_tags(self) -> dict[str, str]:
        """The tags every taggable resource carries, applied once as provider default tags
        (G4). Extra tags never override the governed ones."""
        wide = self.stack_wide
        governed = {
            "Environment": wide.suffix,
            "Project": self.project,
            "Stack": self.stack,
            "Owner": wide.owner,
            "CostCenter": wide.cost_center,
            "DataClassification": wide.data_classification,
            "Compliance": wide.compliance_regime,
            "ManagedBy": "pulumi",
        }
        return {**wide.extra, **governed}

    def require_zones(self, zone_names: list[str]) -> list[str]:
        """The first `availabilityZoneCount` of the region's zones (G1); error if the region
        has fewer."""
        wanted = self.stack_wide.az_count
        if len(zone_names) < wanted:
            raise ConfigError(
                [
                    f"availabilityZoneCount={wanted}: region {self.region} has only "
                    f"{len(zone_names)} available zone(s) ({', '.join(zone_names) or 'none'}); "
                    f"allowed: 2..{min(3, len(zone_names))}"
                ]
            )
        return sorted(zone_names)[:wanted]


def _key_label(tier: type[Tunables]):
    keys = {name: declared.key for name, declared in tier.declarations()}
    return lambda name: keys.get(name, name)


def _read_tier(tier: type[Tunables], raw: Mapping[str, str], problems: list[str]) -> Any:
    values = {}
    for name, declared in tier.declarations():
        if declared.key not in raw:
            continue
        text = raw[declared.key]
        try:
            values[name] = declared.parse(text)
        except (ValueError, TypeError):
            problems.append(render(declared.key, text, f"a value of type {declared.kind}"))
    settings = tier(**values)
    problems += settings.tunable_problems(_key_label(tier))
    return settings


def _media_rules(settings: StackSettings) -> list[str]:
    """The worker must hold the largest upload, and finish its job within SQS's lease ceiling."""
    worker, media = settings.worker, settings.media_storage
    keys = {
        **{name: d.key for name, d in MediaWorkerServiceSettings.declarations()},
        **{name: d.key for name, d in MediaStorageSettings.declarations()},
    }
    problems = scratch_rule(media.upload_max_bytes, worker.ephemeral_storage_gib)
    problems += job_timeout_rule(
        worker.source_max_duration_seconds,
        worker.transcode_seconds_per_media_second,
        media.upload_max_bytes,
    )
    return describe(problems, lambda name: keys.get(name, name))


def _cross_tier_rules(settings: StackSettings) -> list[str]:
    """Rules that span tiers: the media path's sizes, second regions apart from the stack's,
    and what data protection forbids."""
    problems = _media_rules(settings)
    second_regions = (
        (DatabaseBackupSettings.key_of("copy_region"), settings.backups.copy_region, "a copy"),
        (AuditTrailSettings.key_of("replica_region"), settings.audit.replica_region, "a replica"),
    )
    for key, region, kept in second_regions:
        if region and region == settings.region:
            problems.append(
                render(
                    key,
                    region,
                    f"a region other than the stack's ({kept} beside the original protects "
                    "nothing)",
                )
            )
    if settings.api.rotates_key and settings.network.nat_strategy is NatStrategy.NONE:
        problems.append(
            render(
                SecureVpcSettings.key_of("nat_strategy"),
                NatStrategy.NONE.value,
                f"ONE_PER_AZ or SINGLE while {PublicApiSettings.key_of('key_rotation_days')} is "
                "above 0 (the API Gateway management API the rotation calls has no interface "
                "endpoint)",
            )
        )
    if not settings.protection.protect_data:
        return problems
    protected = f"when {StackWide.key_of('data_protection')} is true"
    if settings.network.nat_strategy is NatStrategy.SINGLE:
        problems.append(
            render(
                SecureVpcSettings.key_of("nat_strategy"),
                NatStrategy.SINGLE.value,
                f"ONE_PER_AZ or NONE {protected} (a single NAT is a non-production cost option)",
            )
        )
    if not settings.cache.transit_encryption:
        problems.append(
            render(
                RedisReplicationGroupSettings.key_of("transit_encryption"),
                False,
                f"true {protected} (turning TLS off is a development convenience only)",
            )
        )
    if "*" in settings.media_storage.upload_cors_origins:
        problems.append(
            render(
                MediaStorageSettings.key_of("upload_cors_origins"),
                list(settings.media_storage.upload_cors_origins),
                f"explicit origins, no * {protected} (any web page could drive uploads)",
            )
        )
    return problems


def parse_settings(
    raw: Mapping[str, str], *, project: str, stack: str, region: str | None
) -> StackSettings:
    """Validate raw project config (key -> string value) in one pass."""
    problems = [_unknown_key(name) for name in sorted(set(raw) - set(KEYS_BY_NAME))]
    if not region or not _REGION.match(region):
        problems.append(
            f"aws:region={json.dumps(region)}: allowed an AWS region name such as "
            "eu-central-1 (set it with `pulumi config set aws:region ...`)"
        )
    supplied = {k: v for k, v in _stack_name_defaults(stack).items() if k not in raw}
    raw = {**supplied, **raw}
    tiers = [_read_tier(tier, raw, problems) for tier in TIERS]
    settings = StackSettings(project, stack, region or "", *tiers)
    problems += _cross_tier_rules(settings)
    if problems:
        raise ConfigError([_name_the_stack_default(problem, supplied) for problem in problems])
    return settings


def _stack_name_defaults(stack: str) -> dict[str, str]:
    """Keys whose default is the stack's name, for a stack that does not set them."""
    return {
        declared.key: stack
        for _tier, _name, declared in declared_keys()
        if declared.default_from == STACK_NAME
    }


def _name_the_stack_default(problem: str, supplied: Mapping[str, str]) -> str:
    """A problem with a value the stack did not set says where it came from."""
    for key in supplied:
        if problem.startswith(f"{key}="):
            return f"{problem} ({STACK_NAME}, as {key} is not set: set {key})"
    return problem


def _unknown_key(name: str) -> str:
    close = difflib.get_close_matches(name, KEYS_BY_NAME, n=1, cutoff=0.75)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"{name}: unknown key in namespace '{PROJECT}'{hint}; allowed keys: see "
        "Pulumi.yaml `config:`"
    )


def load_settings() -> StackSettings:
    """Read this stack's config from the Pulumi runtime and validate it (G8)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    namespace = f"{PROJECT}:"
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {
        key[len(namespace) :]: str(value)
        for key, value in everything.items()
        if key.startswith(namespace)
    }
    return parse_settings(
        raw,
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        region=pulumi.Config("aws").get("region"),
    )
