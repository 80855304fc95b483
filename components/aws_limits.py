"""AWS facts the components check against: allowed values and limits each service documents.

Plain data, no Pulumi: the components, the config layer and the tests read them from here.
"""

from __future__ import annotations

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
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

# Aurora PostgreSQL majors with a parameter-group family and Serverless v2 support.
AURORA_MAJORS = (13, 14, 15, 16, 17)
# Databases every Aurora PostgreSQL cluster already has (or RDS reserves for itself).
RESERVED_DB_NAMES = ("rdsadmin", "template0", "template1")
# Engine versions (major.minor) of the Redis-compatible engines ElastiCache offers.
CACHE_ENGINE_VERSIONS = {"valkey": ("7.2", "8.0", "8.1"), "redis": ("6.2", "7.0", "7.1")}
# API Gateway stage cache sizes (GB).
API_CACHE_SIZES_GB = ("0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237")

# Shortest backup/maintenance windows each service accepts.
RDS_MIN_WINDOW_MINUTES = 30
ELASTICACHE_MIN_WINDOW_MINUTES = 60


def aurora_parameter_group_family(engine_version: str) -> str:
    return f"aurora-postgresql{engine_version.split('.')[0]}"


def cache_parameter_group_family(engine: str, engine_version: str) -> str:
    major = engine_version.split(".")[0]
    # Redis 6 is the one family named after the whole major line.
    return "redis6.x" if (engine, major) == ("redis", "6") else f"{engine}{major}"
