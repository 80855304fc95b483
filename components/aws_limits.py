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
# The first minor of each major whose Serverless v2 instances can pause at 0 ACUs (Aurora
# auto-pause, AuroraUserGuide "aurora-serverless-v2-auto-pause"); 17 has it from its first.
AURORA_AUTO_PAUSE_MINORS = {13: 15, 14: 12, 15: 7, 16: 3, 17: 0}
AURORA_AUTO_PAUSE_SECONDS = (300, 86_400)
# RDS Enhanced Monitoring intervals in seconds (0 is off).
ENHANCED_MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)
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


# CloudFront is global, but the pieces that belong to it live in one region: ACM certificates
# for a distribution, WAF web ACLs with scope CLOUDFRONT, CloudFront's metrics (so their alarms
# and the alarms' SNS topic and its key), and the log deliveries of its access logs. AWS
# documents us-east-1 for each ("you must use the US East (N. Virginia) Region"); it is the one
# region the program names, set per resource with pulumi-aws v7's `region` argument.
CLOUDFRONT_REGION = "us-east-1"
# Price classes: _100 serves from North America, Europe and Israel only (viewers in Asia, e.g.
# Tokyo, are served from those); _200 adds Asia, the Middle East and Africa; _All every edge.
CLOUDFRONT_PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")
# CloudFront's geo restriction takes ISO 3166-1 alpha-2 codes: the officially assigned ones
# (the list tzdata keeps as iso3166.tab).
_ISO_3166_ALPHA2_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    YE YT
    ZA ZM ZW
"""
ISO_3166_ALPHA2 = frozenset(_ISO_3166_ALPHA2_CODES.split())
