"""Physical names (G2) and common tags (G4)."""

from __future__ import annotations

import pytest

from components.naming import (
    MAX_PREFIX_LENGTH,
    MAX_SUFFIX_LENGTH,
    InvalidNameError,
    NameKind,
    Namer,
)
from stack_config import parse_settings


def test_name_is_prefix_resource_suffix_g2():
    assert Namer("streamflix", "dev").name("kinesis") == "streamflix-kinesis-dev"


def test_empty_prefix_gives_resource_suffix_g2():
    assert Namer("", "prod").name("aurora", NameKind.RDS_IDENTIFIER) == "aurora-prod"


def test_log_group_path_and_kms_alias_carry_the_suffix_g2():
    namer = Namer("media", "dev")
    assert namer.path("/ecs/", "worker") == "/ecs/media-worker-dev"
    assert namer.alias("database-key") == "alias/media-database-key-dev"


def test_name_longer_than_the_kind_allows_is_rejected_with_the_limit():
    namer = Namer("a" * 30, "dev")
    with pytest.raises(
        InvalidNameError,
        match=r"is 45 chars; ELASTICACHE_ID names allow at "
        r"most 40 \(shorten the prefix or the environment suffix\)",
    ):
        namer.name("cache12345", NameKind.ELASTICACHE_ID)


def test_charset_is_checked_per_kind():
    with pytest.raises(InvalidNameError, match="breaks the S3_BUCKET rule: allowed lowercase"):
        Namer("Media", "dev").name("trail", NameKind.S3_BUCKET)
    assert Namer("Media", "dev").name("trail", NameKind.IAM_ROLE) == "Media-trail-dev"


def test_longest_allowed_prefix_and_suffix_fit_the_tightest_limit_g2():
    """Sizing rule behind the settings limits: the cache id (40 chars) still fits."""
    namer = Namer("p" * MAX_PREFIX_LENGTH, "s" * MAX_SUFFIX_LENGTH)
    assert len(namer.name("cache", NameKind.ELASTICACHE_ID)) <= 40


def test_common_tags_cover_cost_and_compliance_and_extras_cannot_override_g4():
    settings = parse_settings(
        {
            "environmentSuffix": "prod",
            "owner": "media-ops",
            "costCenter": "cc-42",
            "extraTags": '["Team=transcode", "ManagedBy=console"]',
        },
        project="media-pipeline",
        stack="prod",
        region="eu-central-1",
    )
    assert settings.common_tags() == {
        "Team": "transcode",
        "Environment": "prod",
        "Project": "media-pipeline",
        "Stack": "prod",
        "Owner": "media-ops",
        "CostCenter": "cc-42",
        "DataClassification": "confidential",
        "Compliance": "MPA-CSP",
        "ManagedBy": "pulumi",
    }


def test_elasticache_subnet_group_rule_is_lowercase_alphanumerics_and_hyphens_255():
    """CreateCacheSubnetGroup: at most 255 letters, digits or hyphens, stored lowercase."""
    kind = NameKind.ELASTICACHE_SUBNET_GROUP
    assert Namer("media", "dev").name("cache-subnets", kind) == "media-cache-subnets-dev"
    assert Namer("", "dev").name("x" * 251, kind) == "x" * 251 + "-dev"
    with pytest.raises(
        InvalidNameError, match="is 256 chars; ELASTICACHE_SUBNET_GROUP names allow at most 255"
    ):
        Namer("", "dev").name("x" * 252, kind)
    for bad in ("Media", "media_files", "media.files", "media files"):
        with pytest.raises(
            InvalidNameError,
            match="breaks the ELASTICACHE_SUBNET_GROUP rule: allowed lowercase letters, digits, -",
        ):
            Namer(bad, "dev").name("cache-subnets", kind)


def test_elasticache_snapshot_rule_is_a_255_character_identifier():
    kind = NameKind.ELASTICACHE_SNAPSHOT
    assert len(Namer("", "dev").name("s" * 251, kind)) == 255
    with pytest.raises(InvalidNameError, match="ELASTICACHE_SNAPSHOT names allow at most 255"):
        Namer("", "dev").name("s" * 252, kind)
    for bad in ("1media", "media--x", "Media"):
        with pytest.raises(InvalidNameError, match="breaks the ELASTICACHE_SNAPSHOT rule"):
            Namer(bad, "dev").name("cache-final", kind)
