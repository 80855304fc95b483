"""The platform's security and compliance rules as plain functions (O4).

Each rule checks one resource: `rule.check(resource_type, props) -> [violation messages]`,
where `props` are the resource's inputs with the engine's camelCase keys — what CrossGuard
hands a policy (`args.props`) and what the offline engine records (`Registered.inputs`). A
rule that needs the other resources (a bucket and its configuration resources) checks the
whole stack instead: `rule.check_stack([(type, name, props), ...])`, a CrossGuard stack
policy. The policy pack (`policy/__main__.py`), the unit tests and the offline plan all call
these same functions. Nothing here imports Pulumi.

Values the engine cannot know during `pulumi preview` (ARNs of resources not yet created)
arrive as `UNKNOWN` and count as "set" / "as required": CrossGuard checks again with every
value known before each resource is created during `pulumi up`.

Two rules need stack facts (`PolicyConfig`): the environment suffix (names, Environment tag)
and whether the stack protects its data (destroyability). The pack reads them from its
config (`policy/policy-config.<stack>.json`, passed with `--policy-pack-config`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# CloudWatch Logs' allowed retention periods: the AWS fact the components check against too.
# (0 / absent means "never expire".) Plain data, no Pulumi.
from components.aws_limits import LOG_RETENTION_DAYS

# The one kind of bucket allowed SSE-S3: the target of S3 server access logs, which S3's
# logging service delivers to reliably only under SSE-S3 (components/media_storage.py). Its
# name carries this word between the prefix and the account id.
from components.naming import ACCESS_LOG_BUCKET

Props = Mapping[str, Any]
Check = Callable[[str, Props], list[str]]
Captured = list[tuple[str, str, Props]]
"""(type, logical name, props) of every resource of a stack."""
StackCheck = Callable[[Captured], list[tuple[str, str]]]
"""A check over a whole stack: (logical name, message) of each resource found wrong."""

POLICY_DIR = Path(__file__).resolve().parent
PROVIDER_TYPE = "pulumi:providers:aws"

# The governed tags every resource gets from the provider's default tags (G4).
REQUIRED_TAGS = (
    "Environment",
    "Project",
    "Owner",
    "CostCenter",
    "DataClassification",
    "Compliance",
    "ManagedBy",
)
OPEN_IPV4, OPEN_IPV6 = "0.0.0.0/0", "::/0"
KMS_MIN_WINDOW, KMS_MAX_WINDOW = 7, 30
MIN_SECRET_RECOVERY_DAYS = 7


class _Unknown:
    """A value the engine does not know yet (computed by a resource not yet created)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


# ---------------------------------------------------------------------------------------
# Value helpers: tolerant of UNKNOWN, of numbers that arrive as floats and of JSON strings
# ---------------------------------------------------------------------------------------


def given(value: Any) -> bool:
    return value is UNKNOWN or value not in (None, "", [], {})


def is_true(value: Any) -> bool:
    return value is UNKNOWN or value is True or value == "true"


def not_true(value: Any) -> bool:
    return value is UNKNOWN or not (value is True or value == "true")


def equals(value: Any, expected: Any) -> bool:
    return value is UNKNOWN or value == expected


def customer_key(value: Any) -> bool:
    """A CMK: set, and not an AWS-managed alias such as `alias/aws/sns`."""
    return given(value) and (value is UNKNOWN or "alias/aws/" not in str(value))


def document(value: Any) -> Any:
    """Nested inputs of providers and policies may arrive as JSON text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def items(value: Any) -> list[Any]:
    value = document(value)
    if value is UNKNOWN or value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def nested(props: Props, *path: str) -> Any:
    """A nested input, or None; UNKNOWN anywhere on the way is UNKNOWN."""
    value: Any = props
    for key in path:
        value = document(value)
        if value is UNKNOWN:
            return UNKNOWN
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# ---------------------------------------------------------------------------------------
# Rule and config
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig:
    """Stack facts the config-dependent rules need."""

    environment_suffix: str
    data_protection: bool

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> PolicyConfig:
        """From one rule's config (CrossGuard gives each rule only its own keys)."""
        return cls(
            environment_suffix=str(raw.get("environmentSuffix", "")),
            data_protection=raw.get("dataProtection") is True,
        )

    @classmethod
    def for_stack(cls, stack: str) -> PolicyConfig:
        """From `policy/policy-config.<stack>.json`, the file CI passes to the pack."""
        raw = json.loads((POLICY_DIR / f"policy-config.{stack}.json").read_text())
        merged: dict[str, Any] = {}
        for name in CONFIGURED_RULES:
            merged.update({k: v for k, v in raw.get(name, {}).items() if k != "enforcementLevel"})
        return cls.from_mapping(merged)


@dataclass(frozen=True)
class Rule:
    """One policy: which resource types it looks at and what it finds wrong with one."""

    name: str
    description: str
    requirements: str
    mandatory: bool
    checks: Mapping[str, Callable[[Props], list[str]]] = field(default_factory=dict)
    """Checks per resource type token."""
    every_aws_type: Check | None = None
    """A check for every `aws:` resource type (gets the type too)."""
    stack_types: tuple[str, ...] = ()
    """The types a stack check looks at (and counts as checked)."""
    stack_check: StackCheck | None = None
    """A check that needs the other resources of the stack (CrossGuard's stack policy)."""

    def applies_to(self, resource_type: str) -> bool:
        return (
            resource_type in self.checks
            or resource_type in self.stack_types
            or (self.every_aws_type is not None and resource_type.startswith("aws:"))
        )

    def check(self, resource_type: str, props: Props) -> list[str]:
        if resource_type in self.checks:
            found = self.checks[resource_type](props)
        elif self.every_aws_type is not None and resource_type.startswith("aws:"):
            found = self.every_aws_type(resource_type, props)
        else:
            return []
        return [f"{message} ({self.requirements})" for message in found]

    def check_stack(self, resources: Captured) -> list[tuple[str, str]]:
        if self.stack_check is None:
            return []
        return [
            (name, f"{message} ({self.requirements})")
            for name, message in self.stack_check(resources)
        ]


def _require(condition: bool, message: str) -> list[str]:
    return [] if condition else [message]


# ---------------------------------------------------------------------------------------
# Encryption at rest with customer-managed keys (K1, D4, C2, W4, S3, O1, O3)
# ---------------------------------------------------------------------------------------


def _rds_cluster_at_rest(p: Props) -> list[str]:
    return _require(is_true(p.get("storageEncrypted")), "storageEncrypted must be true") + _require(
        customer_key(p.get("kmsKeyId")), "kmsKeyId must be a customer key ARN"
    )


def _rds_instance_at_rest(p: Props) -> list[str]:
    if not is_true(p.get("performanceInsightsEnabled")):
        return []
    return _require(
        customer_key(p.get("performanceInsightsKmsKeyId")),
        "performanceInsightsKmsKeyId must be a customer key ARN when Performance Insights is on",
    )


def _cache_at_rest(p: Props) -> list[str]:
    return _require(
        is_true(p.get("atRestEncryptionEnabled")), "atRestEncryptionEnabled must be true"
    ) + _require(customer_key(p.get("kmsKeyId")), "kmsKeyId must be a customer key ARN")


def _efs_at_rest(p: Props) -> list[str]:
    return _require(is_true(p.get("encrypted")), "encrypted must be true") + _require(
        customer_key(p.get("kmsKeyId")), "kmsKeyId must be a customer key ARN"
    )


def _kms_master_key(p: Props) -> list[str]:
    return _require(
        customer_key(p.get("kmsMasterKeyId")),
        "kmsMasterKeyId must be a customer key (not absent, not alias/aws/...)",
    )


def _kinesis_at_rest(p: Props) -> list[str]:
    return _require(
        equals(p.get("encryptionType"), "KMS"), "encryptionType must be KMS"
    ) + _require(
        customer_key(p.get("kmsKeyId")), "kmsKeyId must be a customer key (not alias/aws/kinesis)"
    )


def _kms_key_id(p: Props) -> list[str]:
    return _require(customer_key(p.get("kmsKeyId")), "kmsKeyId must be a customer key ARN")


def _ecr_at_rest(p: Props) -> list[str]:
    configs = items(p.get("encryptionConfigurations"))
    ok = p.get("encryptionConfigurations") is UNKNOWN or any(
        equals(nested(c, "encryptionType"), "KMS") and customer_key(nested(c, "kmsKey"))
        for c in configs
    )
    return _require(
        ok, "encryptionConfigurations must use encryptionType KMS with a customer kmsKey"
    )


_ACCESS_LOG_BUCKET_NAME = re.compile(rf"^([a-z0-9-]+-)?{ACCESS_LOG_BUCKET}-\d{{12}}-[a-z0-9-]+$")


def is_access_log_bucket(name: Any) -> bool:
    return isinstance(name, str) and bool(_ACCESS_LOG_BUCKET_NAME.match(name))


def _s3_sse(p: Props) -> list[str]:
    rules = items(p.get("rules"))

    def encrypted(rule: Any) -> bool:
        default = nested(rule, "applyServerSideEncryptionByDefault")
        if is_access_log_bucket(p.get("bucket")) and equals(
            nested(default, "sseAlgorithm"), "AES256"
        ):
            return True
        return equals(nested(default, "sseAlgorithm"), "aws:kms") and customer_key(
            nested(default, "kmsMasterKeyId")
        )

    ok = p.get("rules") is UNKNOWN or (bool(rules) and all(encrypted(r) for r in rules))
    return _require(
        ok,
        "every rule must apply sseAlgorithm aws:kms with a customer kmsMasterKeyId (AES256 "
        f"only on an S3 access-log bucket, `{{prefix}}-{ACCESS_LOG_BUCKET}-<account>-…`)",
    )


ENCRYPTED_AT_REST = Rule(
    name="cmk-encryption-at-rest",
    description="Data stores, queues, topics, streams, secrets, images, buckets and trails are "
    "encrypted with customer-managed KMS keys.",
    requirements="K1",
    mandatory=True,
    checks={
        "aws:rds/cluster:Cluster": _rds_cluster_at_rest,
        "aws:rds/clusterInstance:ClusterInstance": _rds_instance_at_rest,
        "aws:elasticache/replicationGroup:ReplicationGroup": _cache_at_rest,
        "aws:efs/fileSystem:FileSystem": _efs_at_rest,
        "aws:sqs/queue:Queue": _kms_master_key,
        "aws:sns/topic:Topic": _kms_master_key,
        "aws:kinesis/stream:Stream": _kinesis_at_rest,
        "aws:secretsmanager/secret:Secret": _kms_key_id,
        "aws:cloudtrail/trail:Trail": _kms_key_id,
        "aws:ecr/repository:Repository": _ecr_at_rest,
        "aws:s3/bucketServerSideEncryptionConfiguration:"
        "BucketServerSideEncryptionConfiguration": _s3_sse,
    },
)


def _key_rotation(p: Props) -> list[str]:
    spec = p.get("customerMasterKeySpec") or p.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec not in ("SYMMETRIC_DEFAULT", UNKNOWN):
        return []  # AWS rotates only symmetric encryption keys
    return _require(is_true(p.get("enableKeyRotation")), "enableKeyRotation must be true")


KEY_ROTATION = Rule(
    name="kms-key-rotation",
    description="Every symmetric customer-managed key rotates automatically.",
    requirements="K1",
    mandatory=True,
    checks={"aws:kms/key:Key": _key_rotation},
)


BUCKET_TYPE = "aws:s3/bucket:Bucket"
BUCKET_COMPANIONS = {
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "no BucketServerSideEncryptionConfiguration: S3's default is SSE-S3, not a "
        "customer-managed key"
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "no BucketPublicAccessBlock: public ACLs and policies are not blocked"
    ),
}


def _buckets_encrypted_and_private(resources: Captured) -> list[tuple[str, str]]:
    """Each bucket has its encryption configuration and public-access block; what those hold
    is checked by `cmk-encryption-at-rest` and `no-public-data-access`. A bucket whose name is
    unknown during preview is checked again once it is known."""
    attached: dict[str, set[str]] = {token: set() for token in BUCKET_COMPANIONS}
    for resource_type, _, props in resources:
        if resource_type in attached and isinstance(props.get("bucket"), str):
            attached[resource_type].add(props["bucket"])
    problems = []
    for resource_type, name, props in resources:
        bucket = props.get("bucket")
        if resource_type != BUCKET_TYPE or not isinstance(bucket, str):
            continue
        problems += [
            (name, message)
            for token, message in BUCKET_COMPANIONS.items()
            if bucket not in attached[token]
        ]
    return problems


BUCKETS_ENCRYPTED_AND_PRIVATE = Rule(
    name="s3-buckets-encrypted-and-private",
    description="Every S3 bucket has a customer-key encryption configuration and a "
    "public-access block (a bucket without them is SSE-S3 and may be made public).",
    requirements="K1, M1, O3",
    mandatory=True,
    stack_types=(BUCKET_TYPE,),
    stack_check=_buckets_encrypted_and_private,
)


# ---------------------------------------------------------------------------------------
# CloudFront distributions (M7, M8)
# ---------------------------------------------------------------------------------------

DISTRIBUTION_TYPE = "aws:cloudfront/distribution:Distribution"
LOG_DELIVERY_SOURCE_TYPE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
LOG_DELIVERY_TYPE = "aws:cloudwatch/logDelivery:LogDelivery"
# TLS floors CloudFront offers with a custom certificate; older ones allow TLS 1.0/1.1.
TLS_1_2_OR_LATER = re.compile(r"^TLSv1\.[23]")
# Protocols CloudFront may speak to a custom origin; anything below TLS 1.2 is refused.
ORIGIN_TLS_1_2_OR_LATER = frozenset({"TLSv1.2"})


def _behaviours(p: Props) -> list[tuple[str, Any]]:
    """(label, behaviour) of the default and every ordered cache behaviour."""
    default = document(p.get("defaultCacheBehavior"))
    ordered = items(p.get("orderedCacheBehaviors"))
    labelled = [("defaultCacheBehavior", default)]
    labelled += [(f"orderedCacheBehaviors[{nested(b, 'pathPattern')}]", b) for b in ordered]
    return labelled


def _behaviour(label: str, behaviour: Any) -> list[str]:
    if behaviour is UNKNOWN:
        return []
    return _require(
        equals(nested(behaviour, "viewerProtocolPolicy"), "https-only"),
        f"{label}.viewerProtocolPolicy must be https-only",
    ) + _require(
        given(nested(behaviour, "trustedKeyGroups")),
        f"{label}.trustedKeyGroups must name a key group (signed access only)",
    )


def _origin(origin: Any) -> list[str]:
    if origin is UNKNOWN:
        return []
    origin_id = nested(origin, "originId")
    problems = _require(
        given(nested(origin, "originAccessControlId")),
        f"origin {origin_id!r} must sign with an origin access control",
    )
    identity = nested(origin, "s3OriginConfig", "originAccessIdentity")
    if identity is not UNKNOWN and identity:
        problems.append(f"origin {origin_id!r} must not use a legacy origin access identity")
    custom = nested(origin, "customOriginConfig")
    if given(custom) and custom is not UNKNOWN:
        protocols = items(nested(custom, "originSslProtocols"))
        problems += _require(
            equals(nested(custom, "originProtocolPolicy"), "https-only"),
            f"origin {origin_id!r}: customOriginConfig.originProtocolPolicy must be https-only",
        ) + _require(
            all(p is UNKNOWN or p in ORIGIN_TLS_1_2_OR_LATER for p in protocols),
            f"origin {origin_id!r}: customOriginConfig.originSslProtocols must be TLSv1.2 only",
        )
    return problems


def _viewer_tls(p: Props) -> list[str]:
    """With a certificate of the stack's own, TLS 1.2 or later (the default *.cloudfront.net
    certificate's floor is fixed by CloudFront and cannot be raised)."""
    certificate = document(p.get("viewerCertificate"))
    own = given(nested(certificate, "acmCertificateArn")) or given(
        nested(certificate, "iamCertificateId")
    )
    version = nested(certificate, "minimumProtocolVersion")
    ok = not own or version is UNKNOWN or bool(TLS_1_2_OR_LATER.match(str(version or "")))
    return _require(
        ok, f"viewerCertificate.minimumProtocolVersion={version!r} must be TLSv1.2_* or later"
    )


def _distribution(p: Props) -> list[str]:
    problems = [m for label, b in _behaviours(p) for m in _behaviour(label, b)]
    problems += [m for origin in items(p.get("origins")) for m in _origin(origin)]
    return problems + _viewer_tls(p)


def _is_distribution_arn(value: Any) -> bool:
    return value is UNKNOWN or (
        isinstance(value, str) and ":cloudfront::" in value and ":distribution/" in value
    )


def _access_logged_sources(resources: Captured) -> int:
    """Access-log delivery sources of distributions that a delivery sends somewhere."""
    delivered = {
        props.get("deliverySourceName")
        for resource_type, _, props in resources
        if resource_type == LOG_DELIVERY_TYPE
    }
    return sum(
        1
        for resource_type, _, props in resources
        if resource_type == LOG_DELIVERY_SOURCE_TYPE
        and equals(props.get("logType"), "ACCESS_LOGS")
        and _is_distribution_arn(props.get("resourceArn"))
        and (UNKNOWN in delivered or props.get("name") is UNKNOWN or props.get("name") in delivered)
    )


def _distributions_hardened(resources: Captured) -> list[tuple[str, str]]:
    """Each distribution: HTTPS only, signed access on every behaviour, origin access control
    on every origin, TLS 1.2+ with its own certificate, and access logs. A distribution's ARN
    is not among its inputs, so standard logging v2 is matched by count: as many delivered
    ACCESS_LOGS sources of distributions as distributions without legacy logging."""
    distributions = [(n, p) for t, n, p in resources if t == DISTRIBUTION_TYPE]
    problems = [(name, m) for name, props in distributions for m in _distribution(props)]
    unlogged = [
        name for name, props in distributions if not given(nested(props, "loggingConfig", "bucket"))
    ]
    if len(unlogged) > _access_logged_sources(resources):
        problems += [
            (
                name,
                "no access logs: neither loggingConfig nor an ACCESS_LOGS log delivery "
                "source of the distribution with a log delivery",
            )
            for name in unlogged
        ]
    return problems


DISTRIBUTIONS_HARDENED = Rule(
    name="cloudfront-distributions-hardened",
    description="Every CloudFront distribution is HTTPS-only, requires signed access (a "
    "trusted key group) on every behaviour, reaches every origin through origin access "
    "control over TLS 1.2, enforces TLS 1.2 or later with its own certificate, and logs "
    "access.",
    requirements="M7, M8",
    mandatory=True,
    stack_types=(DISTRIBUTION_TYPE,),
    stack_check=_distributions_hardened,
)


# ---------------------------------------------------------------------------------------
# Encryption in transit (C3, W4, D6)
# ---------------------------------------------------------------------------------------


def _cache_in_transit(p: Props) -> list[str]:
    return _require(
        is_true(p.get("transitEncryptionEnabled")), "transitEncryptionEnabled must be true"
    )


def _efs_volumes_in_transit(p: Props) -> list[str]:
    problems = []
    for volume in items(p.get("volumes")):
        efs = nested(volume, "efsVolumeConfiguration")
        if efs is None:
            continue
        name = nested(volume, "name")
        if not equals(nested(efs, "transitEncryption"), "ENABLED"):
            problems.append(f"EFS volume {name!r}: transitEncryption must be ENABLED")
        if not equals(nested(efs, "authorizationConfig", "iam"), "ENABLED"):
            problems.append(f"EFS volume {name!r}: authorizationConfig.iam must be ENABLED")
    return problems


def _postgres_force_ssl(p: Props) -> list[str]:
    family = p.get("family")
    if family is UNKNOWN or not str(family or "").startswith("aurora-postgresql"):
        return []
    forced = any(
        nested(q, "name") == "rds.force_ssl" and str(nested(q, "value")) == "1"
        for q in items(p.get("parameters"))
    )
    return _require(
        forced or p.get("parameters") is UNKNOWN, "parameters must set rds.force_ssl = 1"
    )


ENCRYPTED_IN_TRANSIT = Rule(
    name="encryption-in-transit",
    description="Cache connections use TLS, EFS mounts use TLS with IAM authorisation and "
    "Aurora PostgreSQL refuses non-TLS connections.",
    requirements="C3, W4, D6",
    mandatory=True,
    checks={
        "aws:elasticache/replicationGroup:ReplicationGroup": _cache_in_transit,
        "aws:ecs/taskDefinition:TaskDefinition": _efs_volumes_in_transit,
        "aws:rds/clusterParameterGroup:ClusterParameterGroup": _postgres_force_ssl,
    },
)


# ---------------------------------------------------------------------------------------
# Nothing public (D6, C4, N1, W1, O3)
# ---------------------------------------------------------------------------------------


def _not_publicly_accessible(p: Props) -> list[str]:
    return _require(not_true(p.get("publiclyAccessible")), "publiclyAccessible must be false")


def _subnet_not_public(p: Props) -> list[str]:
    return _require(
        not_true(p.get("mapPublicIpOnLaunch")), "mapPublicIpOnLaunch must be false"
    ) + _require(
        not_true(p.get("assignIpv6AddressOnCreation")), "assignIpv6AddressOnCreation must be false"
    )


def _service_no_public_ip(p: Props) -> list[str]:
    return _require(
        not_true(nested(p, "networkConfiguration", "assignPublicIp")),
        "networkConfiguration.assignPublicIp must be false",
    )


def _bucket_access_blocked(p: Props) -> list[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [f"{flag} must be true" for flag in flags if not is_true(p.get(flag))]


NO_PUBLIC_ACCESS = Rule(
    name="no-public-data-access",
    description="Databases, subnets and tasks get no public addresses; buckets block public "
    "access.",
    requirements="D6, C4, N1, W1, O3",
    mandatory=True,
    checks={
        "aws:rds/clusterInstance:ClusterInstance": _not_publicly_accessible,
        "aws:rds/instance:Instance": _not_publicly_accessible,
        "aws:ec2/subnet:Subnet": _subnet_not_public,
        "aws:ecs/service:Service": _service_no_public_ip,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _bucket_access_blocked,
    },
)


def _open_cidrs(ipv4: Any, ipv6: Any) -> list[str]:
    found = [c for c in items(ipv4) if c == OPEN_IPV4] + [c for c in items(ipv6) if c == OPEN_IPV6]
    return [f"ingress from {c} is open to the internet" for c in found]


def _ingress_rule(p: Props) -> list[str]:
    return _open_cidrs(p.get("cidrIpv4"), p.get("cidrIpv6"))


def _legacy_rule(p: Props) -> list[str]:
    if p.get("type") != "ingress":
        return []
    return _open_cidrs(p.get("cidrBlocks"), p.get("ipv6CidrBlocks"))


def _inline_ingress(p: Props) -> list[str]:
    return [
        problem
        for rule in items(p.get("ingress"))
        for problem in _open_cidrs(nested(rule, "cidrBlocks"), nested(rule, "ipv6CidrBlocks"))
    ]


NO_OPEN_INGRESS = Rule(
    name="no-open-ingress",
    description="No security group admits traffic from 0.0.0.0/0 or ::/0; the API is public "
    "only through API Gateway.",
    requirements="N3",
    mandatory=True,
    checks={
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _ingress_rule,
        "aws:ec2/securityGroupRule:SecurityGroupRule": _legacy_rule,
        "aws:ec2/securityGroup:SecurityGroup": _inline_ingress,
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": _inline_ingress,
    },
)


# ---------------------------------------------------------------------------------------
# Logs (O1) and the audit trail (O3)
# ---------------------------------------------------------------------------------------


def _log_group(p: Props) -> list[str]:
    retention = p.get("retentionInDays")
    retention_ok = retention is UNKNOWN or (
        retention is not None and float(retention) in LOG_RETENTION_DAYS
    )
    return (
        _require(customer_key(p.get("kmsKeyId")), "kmsKeyId must be a customer key ARN")
        + _require(
            retention_ok,
            f"retentionInDays={retention} must be one of CloudWatch's "
            "periods (never 'never expire')",
        )
        + _require(not_true(p.get("skipDestroy")), "skipDestroy must be false")
    )


LOG_GROUPS = Rule(
    name="log-groups-encrypted-with-retention",
    description="Every log group is KMS-encrypted, expires, and is deleted with the stack.",
    requirements="O1",
    mandatory=True,
    checks={"aws:cloudwatch/logGroup:LogGroup": _log_group},
)


def _trail(p: Props) -> list[str]:
    flags = ("enableLogFileValidation", "isMultiRegionTrail", "includeGlobalServiceEvents")
    return [f"{flag} must be true" for flag in flags if not is_true(p.get(flag))] + _require(
        given(p.get("cloudWatchLogsGroupArn")),
        "cloudWatchLogsGroupArn must deliver to CloudWatch Logs",
    )


def _versioning(p: Props) -> list[str]:
    return _require(
        equals(nested(p, "versioningConfiguration", "status"), "Enabled"),
        "versioningConfiguration.status must be Enabled",
    )


AUDIT_TRAIL = Rule(
    name="audit-trail-hardened",
    description="Trails validate log files, cover every region and global services and "
    "deliver to CloudWatch Logs; buckets are versioned.",
    requirements="O3",
    mandatory=True,
    checks={
        "aws:cloudtrail/trail:Trail": _trail,
        "aws:s3/bucketVersioning:BucketVersioning": _versioning,
    },
)


# ---------------------------------------------------------------------------------------
# IAM least privilege (S4, W3)
# ---------------------------------------------------------------------------------------


def _no_wildcard_actions(p: Props) -> list[str]:
    policy = document(p.get("policy"))
    if policy is UNKNOWN or not isinstance(policy, Mapping):
        return []
    problems = []
    for statement in items(policy.get("Statement")):
        if nested(statement, "Effect") != "Allow":
            continue
        wild = [
            a
            for a in items(nested(statement, "Action"))
            if isinstance(a, str) and (a == "*" or a.endswith(":*"))
        ]
        if wild:
            problems.append(
                f"statement {nested(statement, 'Sid')!r} allows wildcard actions {wild}"
            )
    return problems


IAM_NO_WILDCARD_ACTIONS = Rule(
    name="iam-no-wildcard-actions",
    description="Inline and managed IAM policies name exact actions, never `*` or `service:*`.",
    requirements="S4, W3",
    mandatory=True,
    checks={
        "aws:iam/rolePolicy:RolePolicy": _no_wildcard_actions,
        "aws:iam/policy:Policy": _no_wildcard_actions,
    },
)


# ---------------------------------------------------------------------------------------
# Tags (G4), names (G2), destroyability (G3): these need the stack's facts
# ---------------------------------------------------------------------------------------


def _required_tags(config: PolicyConfig) -> Callable[[Props], list[str]]:
    def check(p: Props) -> list[str]:
        default_tags = nested(p, "defaultTags", "tags")
        if default_tags is UNKNOWN:
            return []
        tags = default_tags if isinstance(default_tags, Mapping) else {}
        missing = [k for k in REQUIRED_TAGS if not tags.get(k)]
        problems = _require(not missing, f"defaultTags.tags is missing {missing}")
        environment = tags.get("Environment")
        if environment and environment != config.environment_suffix:
            problems.append(
                f"defaultTags.tags.Environment={environment!r} must be the stack's "
                f"suffix {config.environment_suffix!r}"
            )
        return problems

    return check


# Inputs that hold a physical AWS name, by preference.
NAME_PROPS = (
    "name",
    "bucket",
    "clusterIdentifier",
    "identifier",
    "replicationGroupId",
    "dashboardName",
    "functionName",
    "family",
)
# Names scoped inside a parent resource that already carries the suffix, or fixed by AWS.
SCOPED_NAME_TYPES = frozenset(
    {
        "aws:iam/rolePolicy:RolePolicy",
        "aws:apigateway/model:Model",
        "aws:apigateway/requestValidator:RequestValidator",
        "aws:apigateway/authorizer:Authorizer",
        "aws:apigateway/stage:Stage",
        # DNS records carry the names of the stack's own zone (deliveryDomainName, ACM's
        # validation record): the DNS decides them, not the naming convention.
        "aws:route53/record:Record",
    }
)


# Names AWS dictates (the API Gateway execution-log group is named after the API id + stage).
AWS_FIXED_NAMES = (re.compile(r"^API-Gateway-Execution-Logs_"),)


def _names_carry_suffix(config: PolicyConfig) -> Check:
    token = re.compile(rf"(^|[^A-Za-z0-9]){re.escape(config.environment_suffix)}([^A-Za-z0-9]|$)")

    def check(resource_type: str, p: Props) -> list[str]:
        if resource_type in SCOPED_NAME_TYPES:
            return []
        for key in NAME_PROPS:
            value = p.get(key)
            if isinstance(value, str) and value:
                if any(fixed.match(value) for fixed in AWS_FIXED_NAMES):
                    return []
                return _require(
                    bool(token.search(value)),
                    f"{key}={value!r} must carry the suffix '-{config.environment_suffix}'",
                )
        return []

    return check


def _destroyable(config: PolicyConfig) -> Mapping[str, Callable[[Props], list[str]]]:
    """G3: with data protection off everything goes on destroy; with it on, nothing does."""
    protect = config.data_protection

    def flag(key: str, wanted_when_unprotected: bool) -> Callable[[Props], list[str]]:
        wanted = wanted_when_unprotected != protect

        def check(p: Props) -> list[str]:
            value = p.get(key)
            ok = is_true(value) if wanted else not_true(value)
            return _require(
                ok,
                f"{key} must be {str(wanted).lower()} when dataProtection is "
                f"{str(protect).lower()}",
            )

        return check

    def both(*checks: Callable[[Props], list[str]]) -> Callable[[Props], list[str]]:
        return lambda p: [m for c in checks for m in c(p)]

    def secret(p: Props) -> list[str]:
        window = p.get("recoveryWindowInDays")
        if window is UNKNOWN:
            return []
        days = 30 if window is None else float(window)
        ok = days >= MIN_SECRET_RECOVERY_DAYS if protect else days == 0
        return _require(
            ok,
            f"recoveryWindowInDays={window} must be "
            f"{'>= 7' if protect else '0'} when dataProtection is "
            f"{str(protect).lower()}",
        )

    def key(p: Props) -> list[str]:
        window = p.get("deletionWindowInDays")
        if window is UNKNOWN:
            return []
        days = KMS_MAX_WINDOW if window is None else float(window)
        wanted = KMS_MAX_WINDOW if protect else KMS_MIN_WINDOW
        return _require(
            days == wanted,
            f"deletionWindowInDays={window} must be {wanted} when "
            f"dataProtection is {str(protect).lower()}",
        )

    def cache(p: Props) -> list[str]:
        has_final = given(p.get("finalSnapshotIdentifier"))
        return _require(
            has_final == protect,
            "finalSnapshotIdentifier must be "
            f"{'set' if protect else 'absent'} when dataProtection is "
            f"{str(protect).lower()}",
        )

    return {
        "aws:rds/cluster:Cluster": both(
            flag("deletionProtection", False), flag("skipFinalSnapshot", True)
        ),
        "aws:rds/instance:Instance": both(
            flag("deletionProtection", False), flag("skipFinalSnapshot", True)
        ),
        "aws:secretsmanager/secret:Secret": secret,
        "aws:kms/key:Key": key,
        "aws:s3/bucket:Bucket": flag("forceDestroy", True),
        "aws:ecr/repository:Repository": flag("forceDelete", True),
        "aws:kinesis/stream:Stream": flag("enforceConsumerDeletion", True),
        # Destroy disables and deletes a distribution; retained, it is only disabled.
        "aws:cloudfront/distribution:Distribution": flag("retainOnDelete", False),
        "aws:elasticache/replicationGroup:ReplicationGroup": cache,
    }


# ---------------------------------------------------------------------------------------
# Advisory: deprecated resources and arguments (pulumi-aws v7)
# ---------------------------------------------------------------------------------------

DEPRECATED_TYPES = {
    "aws:s3/bucketV2:BucketV2": "aws.s3.Bucket",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:"
    "BucketServerSideEncryptionConfigurationV2": "aws.s3.BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioningV2:BucketVersioningV2": "aws.s3.BucketVersioning",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2": (
        "aws.s3.BucketLifecycleConfiguration"
    ),
    "aws:s3/bucketAclV2:BucketAclV2": "aws.s3.BucketAcl",
    "aws:s3/bucketLoggingV2:BucketLoggingV2": "aws.s3.BucketLogging",
    "aws:ec2/securityGroupRule:SecurityGroupRule": (
        "aws.vpc.SecurityGroupIngressRule / SecurityGroupEgressRule"
    ),
}
# Inline arguments that v7 deprecates (buckets) or that fight the separate rule resources the
# components use (security groups), each with what to use instead.
DEPRECATED_INPUTS = {
    "aws:s3/bucket:Bucket": {
        "serverSideEncryptionConfiguration": "aws.s3.BucketServerSideEncryptionConfiguration",
        "versioning": "aws.s3.BucketVersioning",
        "lifecycleRules": "aws.s3.BucketLifecycleConfiguration",
        "policy": "aws.s3.BucketPolicy",
        "acl": "aws.s3.BucketOwnershipControls (ACLs disabled)",
        "grants": "aws.s3.BucketOwnershipControls (ACLs disabled)",
        "logging": "aws.s3.BucketLogging",
    },
    "aws:ec2/securityGroup:SecurityGroup": {
        "ingress": "aws.vpc.SecurityGroupIngressRule",
        "egress": "aws.vpc.SecurityGroupEgressRule",
    },
}


def _deprecated(resource_type: str, p: Props) -> list[str]:
    if resource_type in DEPRECATED_TYPES:
        return [f"{resource_type} is deprecated: use {DEPRECATED_TYPES[resource_type]}"]
    inline = DEPRECATED_INPUTS.get(resource_type, {})
    return [
        f"inline {key} is deprecated or discouraged: use {instead}"
        for key, instead in inline.items()
        if given(p.get(key))
    ]


# ---------------------------------------------------------------------------------------
# The rule set
# ---------------------------------------------------------------------------------------

# Rules that read `PolicyConfig`; their names are the keys of the pack's config file.
CONFIGURED_RULES = ("required-tags", "names-carry-suffix", "destroyable-unless-protected")


STATIC_RULES = (
    ENCRYPTED_AT_REST,
    KEY_ROTATION,
    ENCRYPTED_IN_TRANSIT,
    NO_PUBLIC_ACCESS,
    BUCKETS_ENCRYPTED_AND_PRIVATE,
    NO_OPEN_INGRESS,
    LOG_GROUPS,
    AUDIT_TRAIL,
    IAM_NO_WILDCARD_ACTIONS,
    DISTRIBUTIONS_HARDENED,
    Rule(
        name="no-deprecated-resources",
        description="No resource type or inline argument that pulumi-aws v7 deprecates (or "
        "that fights the separate rule resources).",
        requirements="G1",
        mandatory=False,
        every_aws_type=_deprecated,
    ),
)


def configured_rules(config: PolicyConfig) -> tuple[Rule, ...]:
    """The rules that need the stack's facts; names are listed in `CONFIGURED_RULES`."""
    return (
        Rule(
            name="required-tags",
            description="The provider's default tags carry every governed tag, Environment "
            "being the stack's suffix.",
            requirements="G4",
            mandatory=True,
            checks={PROVIDER_TYPE: _required_tags(config)},
        ),
        Rule(
            name="names-carry-suffix",
            description="Every physical name carries the stack's environment suffix.",
            requirements="G2",
            mandatory=True,
            every_aws_type=_names_carry_suffix(config),
        ),
        Rule(
            name="destroyable-unless-protected",
            description="Without data protection everything is destroyable (no deletion "
            "protection, no final snapshot, no recovery windows, buckets and "
            "repositories emptied); with it, all of that is on.",
            requirements="G3",
            mandatory=True,
            checks=_destroyable(config),
        ),
    )


def build_rules(config: PolicyConfig) -> tuple[Rule, ...]:
    return STATIC_RULES + configured_rules(config)


@dataclass(frozen=True)
class Finding:
    rule: str
    mandatory: bool
    resource: str
    message: str


def evaluate(
    rules: tuple[Rule, ...], resources: list[tuple[str, str, Props]]
) -> tuple[dict[str, int], list[Finding]]:
    """Run every rule over `(type, name, props)`; returns resources checked per rule and
    every violation."""
    checked = {rule.name: 0 for rule in rules}
    findings = []
    for resource_type, name, props in resources:
        for rule in rules:
            if not rule.applies_to(resource_type):
                continue
            checked[rule.name] += 1
            findings += [
                Finding(rule.name, rule.mandatory, name, m)
                for m in rule.check(resource_type, props)
            ]
    for rule in rules:
        findings += [
            Finding(rule.name, rule.mandatory, name, m) for name, m in rule.check_stack(resources)
        ]
    return checked, findings
