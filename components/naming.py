"""Physical names `{prefix}-{resource}-{suffix}` (G2) and the common tags (G4).

Each AWS resource kind has its own length and character rules; `Namer.name` checks the
finished name against them so a bad name fails the preview instead of the deploy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# The name budget: the longest prefix and suffix every kind's limit still fits (G2).
MAX_PREFIX_LENGTH = 15
MAX_SUFFIX_LENGTH = 10
# The resource word of the S3 server-access-log bucket (`{prefix}-s3-logs-{account}-{region}-
# {suffix}`): the policy pack recognises the one bucket allowed SSE-S3 by it.
ACCESS_LOG_BUCKET = "s3-logs"


@dataclass(frozen=True)
class NameRule:
    max_length: int
    pattern: re.Pattern[str]
    allowed: str


def _rule(max_length: int, pattern: str, allowed: str) -> NameRule:
    return NameRule(max_length, re.compile(pattern), allowed)


_LOWER_HYPHENATED = r"^[a-z](?!.*--)[a-z0-9-]*[a-z0-9]$"


class NameKind(Enum):
    """AWS naming rules per resource kind (documented limits of each service)."""

    GENERIC = _rule(255, r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "letters, digits, _ . -")
    S3_BUCKET = _rule(
        63,
        r"^[a-z0-9](?!.*\.\.)[a-z0-9.-]*[a-z0-9]$",
        "lowercase letters, digits, . - ; starts and ends alphanumeric",
    )
    RDS_IDENTIFIER = _rule(
        63, _LOWER_HYPHENATED, "lowercase letters, digits, single hyphens; starts with a letter"
    )
    ELASTICACHE_ID = _rule(
        40, _LOWER_HYPHENATED, "lowercase letters, digits, single hyphens; starts with a letter"
    )
    # AWS stores the name lowercased: an uppercase name would show a diff on every update.
    ELASTICACHE_SUBNET_GROUP = _rule(255, r"^[a-z0-9-]+$", "lowercase letters, digits, -")
    # CreateSnapshot documents no rule; 255 is the limit of serverless snapshot names, and the
    # identifier form is what the console accepts for a backup name.
    ELASTICACHE_SNAPSHOT = _rule(
        255, _LOWER_HYPHENATED, "lowercase letters, digits, single hyphens; starts with a letter"
    )
    IAM_ROLE = _rule(64, r"^[\w+=,.@-]+$", "letters, digits, + = , . @ _ -")
    IAM_POLICY = _rule(128, r"^[\w+=,.@-]+$", "letters, digits, + = , . @ _ -")
    LAMBDA_FUNCTION = _rule(64, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    SQS_QUEUE = _rule(80, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    KINESIS_STREAM = _rule(128, r"^[A-Za-z0-9_.-]+$", "letters, digits, _ . -")
    LOG_GROUP = _rule(512, r"^[A-Za-z0-9_./#-]+$", "letters, digits, _ . / # -")
    KMS_ALIAS = _rule(256, r"^alias/(?!aws/)[A-Za-z0-9:/_-]+$", "alias/ then letters, : / _ -")
    SECRET = _rule(512, r"^[A-Za-z0-9/_+=.@-]+$", "letters, digits, / _ + = . @ -")
    ECS = _rule(255, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    ECR_REPOSITORY = _rule(
        256, r"^[a-z0-9](?:[a-z0-9._/-]*[a-z0-9])?$", "lowercase letters, digits, . _ / -"
    )
    WAF = _rule(128, r"^[\w-]+$", "letters, digits, _ -")
    SNS_TOPIC = _rule(256, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    CLOUDTRAIL = _rule(128, r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,}$", "letters, digits, _ . -")
    PIPE = _rule(64, r"^[A-Za-z0-9_.-]+$", "letters, digits, _ . -")
    SECURITY_GROUP = _rule(255, r"^[A-Za-z0-9 ._:/()#,@\[\]+=&;{}!$*-]+$", "ASCII name chars")
    DB_SUBNET_GROUP = _rule(255, r"^[a-z0-9 ._-]+$", "lowercase letters, digits, space . _ -")
    PARAMETER_GROUP = _rule(
        255, _LOWER_HYPHENATED, "lowercase letters, digits, single hyphens; starts with a letter"
    )
    DASHBOARD = _rule(255, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    # Public keys, key groups and cache, origin-request and response-headers policies.
    CLOUDFRONT = _rule(128, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    CLOUDFRONT_OAC = _rule(64, r"^[A-Za-z0-9_-]+$", "letters, digits, _ -")
    # CloudWatch Logs delivery sources and destinations (PutDeliverySource: [\w-]{1,60}).
    LOG_DELIVERY = _rule(60, r"^[\w-]+$", "letters, digits, _ -")


class InvalidNameError(ValueError):
    """A physical name breaks its AWS rule."""


@dataclass(frozen=True)
class Namer:
    """Builds and checks physical names for one stack."""

    prefix: str
    suffix: str

    def name(self, resource: str, kind: NameKind = NameKind.GENERIC) -> str:
        parts = [p for p in (self.prefix, resource, self.suffix) if p]
        full = "-".join(parts)
        check_name(full, kind)
        return full

    def path(self, leading: str, resource: str, kind: NameKind = NameKind.LOG_GROUP) -> str:
        """A name with a fixed service path in front, e.g. `/ecs/{prefix}-worker-{suffix}`."""
        full = leading + "-".join(p for p in (self.prefix, resource, self.suffix) if p)
        check_name(full, kind)
        return full

    def alias(self, resource: str) -> str:
        return self.path("alias/", resource, NameKind.KMS_ALIAS)


def check_name(name: str, kind: NameKind) -> None:
    rule = kind.value
    if len(name) > rule.max_length:
        raise InvalidNameError(
            f"name '{name}' is {len(name)} chars; {kind.name} names allow at most "
            f"{rule.max_length} (shorten the prefix or the environment suffix)"
        )
    if not rule.pattern.match(name):
        raise InvalidNameError(f"name '{name}' breaks the {kind.name} rule: allowed {rule.allowed}")


def name_tag(name: str) -> dict[str, str]:
    return {"Name": name}


def member_cluster_ids(replication_group_id: str, node_count: int) -> list[str]:
    """The ids ElastiCache gives the nodes of a cluster-mode-disabled group, `<group>-001`,
    `-002`, …; node metrics carry those ids (there is no group-level dimension)."""
    return [f"{replication_group_id}-{index + 1:03d}" for index in range(node_count)]
