"""What crosses between the infrastructure (`components/`) and the services (`services/`).

The environment variable names each service reads, the database roles the services log in
as, and the limits of the API's requests. `components/` writes these and `services/` reads
them; both import them from here so that neither side spells a name or a limit of its own.

Standard library only, and nothing from `services.common`: this module ships in the Lambda
packages and the worker image, and the Pulumi program imports it as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class EnvVar:
    """Environment variable names, one attribute per variable."""

    # Database
    DB_HOST = "DB_HOST"
    DB_PORT = "DB_PORT"
    DB_NAME = "DB_NAME"
    DB_SSL = "DB_SSL"
    DB_SSL_ROOT_CERT = "DB_SSL_ROOT_CERT"
    DB_IAM_USER = "DB_IAM_USER"
    DB_SECRET_ARN = "DB_SECRET_ARN"
    DB_USERNAME = "DB_USERNAME"
    DB_PASSWORD = "DB_PASSWORD"
    # Cache and stream
    REDIS_HOST = "REDIS_HOST"
    REDIS_PORT = "REDIS_PORT"
    REDIS_TLS = "REDIS_TLS"
    REDIS_AUTH_SECRET_ARN = "REDIS_AUTH_SECRET_ARN"
    REDIS_AUTH_TOKEN = "REDIS_AUTH_TOKEN"
    CACHE_REPLICATION_GROUP_ID = "CACHE_REPLICATION_GROUP_ID"
    STREAM_NAME = "STREAM_NAME"
    CACHE_TTL_SECONDS = "CACHE_TTL_SECONDS"
    # Files and logging
    MEDIA_ROOT = "MEDIA_ROOT"
    SCRATCH_DIR = "SCRATCH_DIR"
    LOG_LEVEL = "LOG_LEVEL"
    # Worker
    JOBS_QUEUE_URL = "JOBS_QUEUE_URL"
    DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
    MAX_RECEIVE_COUNT = "MAX_RECEIVE_COUNT"
    JOB_TIMEOUT_SECONDS = "JOB_TIMEOUT_SECONDS"
    VISIBILITY_TIMEOUT_SECONDS = "VISIBILITY_TIMEOUT_SECONDS"
    STOP_TIMEOUT_SECONDS = "STOP_TIMEOUT_SECONDS"
    CONTENT_KEY_SECRET_ARN = "CONTENT_KEY_SECRET_ARN"
    WORKER_BATCH_SIZE = "WORKER_BATCH_SIZE"
    RECEIVE_WAIT_SECONDS = "RECEIVE_WAIT_SECONDS"
    RETRY_BASE_SECONDS = "RETRY_BASE_SECONDS"
    RETRY_MAX_SECONDS = "RETRY_MAX_SECONDS"
    FFPROBE_PATH = "FFPROBE_PATH"
    HEALTHCHECK_MAX_AGE_SECONDS = "HEALTHCHECK_MAX_AGE_SECONDS"
    # Media path (M1-M6)
    INGEST_BUCKET = "INGEST_BUCKET"
    MEDIA_BUCKET = "MEDIA_BUCKET"
    UPLOAD_MAX_BYTES = "UPLOAD_MAX_BYTES"
    UPLOAD_CONTENT_TYPES = "UPLOAD_CONTENT_TYPES"
    UPLOAD_URL_TTL_SECONDS = "UPLOAD_URL_TTL_SECONDS"
    TRANSCODE_LADDER = "TRANSCODE_LADDER"
    SEGMENT_SECONDS = "SEGMENT_SECONDS"
    SOURCE_MAX_DURATION_SECONDS = "SOURCE_MAX_DURATION_SECONDS"
    DELETE_SOURCE_AFTER_PROCESSING = "DELETE_SOURCE_AFTER_PROCESSING"
    TRANSFER_CONCURRENCY = "TRANSFER_CONCURRENCY"
    FFMPEG_PATH = "FFMPEG_PATH"
    # Delivery and signed playback (M7-M9)
    PLAYBACK_DOMAIN = "PLAYBACK_DOMAIN"
    PLAYBACK_KEY_PAIR_ID = "PLAYBACK_KEY_PAIR_ID"
    PLAYBACK_SIGNING_SECRET_ARN = "PLAYBACK_SIGNING_SECRET_ARN"
    PLAYBACK_GRANT_SECONDS = "PLAYBACK_GRANT_SECONDS"
    PLAYBACK_PUBLIC_KEYS = "PLAYBACK_PUBLIC_KEYS"
    # API key rotation
    API_KEY_SECRET_ARN = "API_KEY_SECRET_ARN"
    API_KEY_NAME = "API_KEY_NAME"
    API_KEY_ID = "API_KEY_ID"
    API_USAGE_PLAN_ID = "API_USAGE_PLAN_ID"
    # Set by Lambda and ECS themselves, never by the infrastructure code.
    AWS_REGION = "AWS_REGION"
    AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"


# Database logins: a service is given exactly one of the groups it accepts.
DB_LOGIN_IAM = (EnvVar.DB_IAM_USER,)
DB_LOGIN_SECRET = (EnvVar.DB_SECRET_ARN,)
DB_LOGIN_PASSWORD = (EnvVar.DB_USERNAME, EnvVar.DB_PASSWORD)

PLATFORM_VARIABLES = frozenset({EnvVar.AWS_REGION, EnvVar.AWS_DEFAULT_REGION})

_DATABASE = frozenset(
    {EnvVar.DB_HOST, EnvVar.DB_PORT, EnvVar.DB_NAME, EnvVar.DB_SSL, EnvVar.DB_SSL_ROOT_CERT}
)
_DATA_PLANE_REQUIRED = frozenset(
    {EnvVar.DB_HOST, EnvVar.DB_NAME, EnvVar.REDIS_HOST, EnvVar.STREAM_NAME}
)
_DATA_PLANE = (
    _DATABASE
    | _DATA_PLANE_REQUIRED
    | {
        EnvVar.REDIS_PORT,
        EnvVar.REDIS_TLS,
        EnvVar.REDIS_AUTH_SECRET_ARN,
        EnvVar.REDIS_AUTH_TOKEN,
        EnvVar.CACHE_TTL_SECONDS,
        EnvVar.LOG_LEVEL,
    }
)


@dataclass(frozen=True)
class ServiceEnvironment:
    """The variables one service reads."""

    service: str
    required: frozenset[str]
    """Read without a default: the service refuses to start without them."""
    optional: frozenset[str]
    """Read with a default, or configuring something the service can do without."""
    db_logins: tuple[tuple[str, ...], ...]
    """Exactly one of these groups of variables must be set (the database login)."""

    @property
    def variables(self) -> frozenset[str]:
        """Every variable the service reads, those set by the platform included."""
        logins = {name for group in self.db_logins for name in group}
        return self.required | self.optional | logins | PLATFORM_VARIABLES


_UPLOADS = frozenset(
    {EnvVar.UPLOAD_MAX_BYTES, EnvVar.UPLOAD_CONTENT_TYPES, EnvVar.UPLOAD_URL_TTL_SECONDS}
)
_PLAYBACK_SIGNING = frozenset(
    {EnvVar.PLAYBACK_DOMAIN, EnvVar.PLAYBACK_KEY_PAIR_ID, EnvVar.PLAYBACK_SIGNING_SECRET_ARN}
)
API_ENVIRONMENT = ServiceEnvironment(
    service="api",
    required=_DATA_PLANE_REQUIRED | {EnvVar.INGEST_BUCKET},
    # Without the signing trio the playback route answers 503 (a stack without delivery).
    optional=(_DATA_PLANE - _DATA_PLANE_REQUIRED)
    | _UPLOADS
    | _PLAYBACK_SIGNING
    | {EnvVar.PLAYBACK_GRANT_SECONDS},
    db_logins=(DB_LOGIN_IAM, DB_LOGIN_SECRET),
)
_WORKER_REQUIRED = _DATA_PLANE_REQUIRED | {
    EnvVar.JOBS_QUEUE_URL,
    EnvVar.DEAD_LETTER_QUEUE_URL,
    EnvVar.MAX_RECEIVE_COUNT,
    EnvVar.INGEST_BUCKET,
    EnvVar.MEDIA_BUCKET,
    EnvVar.CONTENT_KEY_SECRET_ARN,
}
WORKER_ENVIRONMENT = ServiceEnvironment(
    service="worker",
    required=_WORKER_REQUIRED,
    optional=(_DATA_PLANE - _WORKER_REQUIRED)
    | {
        EnvVar.JOB_TIMEOUT_SECONDS,
        EnvVar.VISIBILITY_TIMEOUT_SECONDS,
        EnvVar.STOP_TIMEOUT_SECONDS,
        EnvVar.SCRATCH_DIR,
        EnvVar.MEDIA_ROOT,
        EnvVar.WORKER_BATCH_SIZE,
        EnvVar.RECEIVE_WAIT_SECONDS,
        EnvVar.RETRY_BASE_SECONDS,
        EnvVar.RETRY_MAX_SECONDS,
        EnvVar.FFPROBE_PATH,
        EnvVar.HEALTHCHECK_MAX_AGE_SECONDS,
        EnvVar.UPLOAD_MAX_BYTES,
        EnvVar.TRANSCODE_LADDER,
        EnvVar.SEGMENT_SECONDS,
        EnvVar.SOURCE_MAX_DURATION_SECONDS,
        EnvVar.DELETE_SOURCE_AFTER_PROCESSING,
        EnvVar.TRANSFER_CONCURRENCY,
        EnvVar.FFMPEG_PATH,
    },
    # The password pair is for ECS `secrets` injection; the stacks use IAM tokens.
    db_logins=(DB_LOGIN_IAM, DB_LOGIN_SECRET, DB_LOGIN_PASSWORD),
)
MIGRATE_ENVIRONMENT = ServiceEnvironment(
    service="migrate",
    required=frozenset({EnvVar.DB_HOST, EnvVar.DB_NAME}),
    optional=(_DATABASE - {EnvVar.DB_HOST, EnvVar.DB_NAME}) | {EnvVar.LOG_LEVEL},
    # Only the master user may create the services' roles.
    db_logins=(DB_LOGIN_SECRET,),
)


# Key delivery (M9): a Lambda function URL behind the distribution; it reads no database.
KEYS_ENVIRONMENT = ServiceEnvironment(
    service="keys",
    required=frozenset({EnvVar.CONTENT_KEY_SECRET_ARN, EnvVar.PLAYBACK_PUBLIC_KEYS}),
    optional=frozenset({EnvVar.LOG_LEVEL}),
    db_logins=(),
)


# Rotation of the cache's AUTH token (issue 14, item 7): a Secrets Manager rotation function
# that changes the replication group's token with ElastiCache's ROTATE strategy.
CACHE_TOKEN_ROTATION_ENVIRONMENT = ServiceEnvironment(
    service="cache-token-rotation",
    required=frozenset(
        {EnvVar.REDIS_HOST, EnvVar.REDIS_AUTH_SECRET_ARN, EnvVar.CACHE_REPLICATION_GROUP_ID}
    ),
    optional=frozenset({EnvVar.REDIS_PORT, EnvVar.REDIS_TLS, EnvVar.LOG_LEVEL}),
    db_logins=(),
)
CACHE_TOKEN_ROTATION_HANDLER = "services.rotation.cache_token.handler"
CACHE_AUTH_TOKEN_SPECIALS = "!&#$^<>-"
"""The only special characters ElastiCache accepts in an AUTH token (16-128 printable
characters; https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html)."""
CACHE_AUTH_TOKEN_LENGTH = 64


# Rotation of the API key (issue 14, item 7): a Secrets Manager rotation function that issues
# a new API Gateway key into the usage plan and retires the key before the previous one.
API_KEY_ROTATION_ENVIRONMENT = ServiceEnvironment(
    service="api-key-rotation",
    required=frozenset(
        {
            EnvVar.API_KEY_SECRET_ARN,
            EnvVar.API_KEY_NAME,
            EnvVar.API_KEY_ID,
            EnvVar.API_USAGE_PLAN_ID,
        }
    ),
    optional=frozenset({EnvVar.LOG_LEVEL}),
    db_logins=(),
)
API_KEY_ROTATION_HANDLER = "services.rotation.api_key.handler"
API_KEY_LENGTH = 40
"""Characters of every API key value the stack makes (Pulumi's first, the rotation's later):
letters and digits only, as API Gateway requires of a value it is given (20-128 characters)."""


def env_flag(value: bool) -> str:
    """A boolean as the services read it (`REDIS_TLS`)."""
    return "true" if value else "false"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "INFO"


class SslMode:
    """How a TLS connection to PostgreSQL is checked (`DB_SSL`)."""

    DISABLE = "disable"
    REQUIRE = "require"  # encrypted, server certificate not verified (libpq sslmode=require)
    VERIFY_FULL = "verify-full"  # encrypted, chain and host name verified


# What a stack may set: always TLS; `verify-full` checks the server against the RDS CA bundle
# that ships with the code (refreshed by scripts/refresh_rds_ca.py).
DB_SSL_MODES = (SslMode.REQUIRE, SslMode.VERIFY_FULL)
RDS_CA_BUNDLE = "common/certs/rds-ca-bundle.pem"
"""The bundle's path inside the `services` package (every Lambda archive, the worker image)."""

# PostgreSQL login roles of the services, created by migrations/003_service_roles.sql. The
# infrastructure sets them as DB_IAM_USER and scopes each service's `rds-db:connect` to its own.
API_DB_USER = "media_api"
WORKER_DB_USER = "media_worker"

# Request limits of the API: API Gateway checks bodies against the models below before the
# handler runs, and the handler checks again (with the stack's own upload limits).
TITLE_MAX = 200
CREATOR_MAX = 100
LIMIT_DEFAULT = 20
"""Videos per page of `GET /videos` when `limit` is not given."""
LIMIT_MAX = 100
"""Largest `limit` of `GET /videos`."""

# -- Uploads (M1) --------------------------------------------------------------------------
MIB = 1024 * 1024
GIB = 1024 * MIB
S3_MIN_PART_BYTES = 5 * MIB
"""Every part but the last must be at least this (S3 rejects Complete with EntityTooSmall)."""
S3_MAX_PART_BYTES = 5 * GIB
S3_MAX_PARTS = 10_000
PART_SIZE_FLOOR = 8 * MIB
"""Smallest part size the API hands out: fewer requests than S3's 5 MiB minimum."""
UPLOAD_MAX_BYTES_CEILING = 5 * 1024 * GIB
"""Largest upload any stack may accept (5 TiB: S3's long-standing single-object limit)."""
PART_URLS_PER_REQUEST = 100
"""Part URLs one `POST /videos/{id}/upload/parts` returns at most, so a 100 GB upload
never needs one giant response."""
UPLOAD_MAX_BYTES_DEFAULT = 50 * GIB
UPLOAD_URL_TTL_DEFAULT = 900
UPLOAD_URL_TTL_MAX = 3600
"""Presigned URLs die with the signer's session anyway (a Lambda role session), so short."""
DEFAULT_UPLOAD_CONTENT_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/x-matroska",
    "video/webm",
    "video/mp2t",
)
CHECKSUM_SHA256_PATTERN = r"^[A-Za-z0-9+/]{43}=$"
"""Base64 of a SHA-256 digest, as S3's x-amz-checksum-sha256 header carries it."""
CONTENT_TYPE_PATTERN = r"^[a-z]+/[a-z0-9.+-]{1,100}$"
CHECKSUM_HEADER = "x-amz-checksum-sha256"

# -- S3 layout (M1, M6) --------------------------------------------------------------------
SOURCE_PREFIX = "sources/"
MEDIA_PREFIX = "media/"
MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "index.m3u8"
POSTER = "poster.jpg"
KEYS_DIRECTORY = "keys"


def source_key(video_id: str) -> str:
    """The ingest object of a video: derived from the id, never taken from a request."""
    return f"{SOURCE_PREFIX}{video_id}/source"


def media_prefix(video_id: str, version: int) -> str:
    """Where version `version` of a video's renditions is published (no leading slash)."""
    return f"{MEDIA_PREFIX}{video_id}/v{version}/"


def key_uri(video_id: str, key_version: str) -> str:
    """The URI the playlists give for a title's AES-128 key: an absolute path on the
    playback domain, under the video's prefix so the same signed access covers it. The
    delivery tier routes `media/*/keys/*` to key delivery; no object is ever stored there."""
    return f"/{MEDIA_PREFIX}{video_id}/{KEYS_DIRECTORY}/{key_version}.key"


# -- Delivery and signed playback (M7-M9) ----------------------------------------------------
# CloudFront's signed-access names: cookies for players, query parameters for the session URL
# that sets those cookies on the playback domain. The distribution forwards exactly these to
# key delivery, which checks the grant again (defence in depth behind the edge's check).
SIGNED_COOKIE_POLICY = "CloudFront-Policy"
SIGNED_COOKIE_SIGNATURE = "CloudFront-Signature"
SIGNED_COOKIE_KEY_PAIR_ID = "CloudFront-Key-Pair-Id"
SIGNED_COOKIES = (SIGNED_COOKIE_POLICY, SIGNED_COOKIE_SIGNATURE, SIGNED_COOKIE_KEY_PAIR_ID)
SIGNED_QUERY_POLICY = "Policy"
SIGNED_QUERY_SIGNATURE = "Signature"
SIGNED_QUERY_KEY_PAIR_ID = "Key-Pair-Id"
SIGNED_QUERY_PARAMETERS = (SIGNED_QUERY_POLICY, SIGNED_QUERY_SIGNATURE, SIGNED_QUERY_KEY_PAIR_ID)
SESSION_PATH = "session"
# CloudFront path patterns (no leading slash) routed to key delivery instead of the bucket.
KEY_PATH_PATTERN = f"{MEDIA_PREFIX}*/{KEYS_DIRECTORY}/*"
SESSION_PATH_PATTERN = f"{MEDIA_PREFIX}*/{SESSION_PATH}"
PLAYLIST_PATH_PATTERN = f"{MEDIA_PREFIX}*.m3u8"
MEDIA_PATH_PATTERN = f"{MEDIA_PREFIX}*"
PLAYBACK_GRANT_SECONDS_DEFAULT = 3600
PLAYBACK_GRANT_SECONDS_RANGE = (300, 86_400)
KEYS_HANDLER = "services.keys.handler.handler"


def title_path(video_id: str) -> str:
    """The path a grant covers: every version, playlist, segment and key of one video."""
    return f"/{MEDIA_PREFIX}{video_id}/"


def grant_resource(domain: str, video_id: str) -> str:
    """The custom policy's Resource for one title on the playback domain (M8)."""
    return f"https://{domain}{title_path(video_id)}*"


def session_path(video_id: str) -> str:
    """Where a web player redeems a grant's signed URL for cookies on the playback domain."""
    return f"{title_path(video_id)}{SESSION_PATH}"


# -- Content key (K3, M5) -------------------------------------------------------------------
CONTENT_KEY_BYTES = 32
KEYRING_CURRENT = "current"
KEYRING_KEYS = "keys"
"""The content-key secret holds `{"current": "<version>", "keys": {"<version>": "<base64 of
CONTENT_KEY_BYTES bytes>"}}`. Rotation adds a version and moves `current`; earlier versions
stay, so titles keyed from them stay playable. A version is 1-64 of [A-Za-z0-9_-]."""
KEY_VERSION_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


# -- Transcoding (M3, M4) -------------------------------------------------------------------
AUDIO_BITRATE_KBPS = 128
SEGMENT_SECONDS_DEFAULT = 4
SEGMENT_SECONDS_RANGE = (2, 10)
DEFAULT_LADDER = "1080:5000,720:3000,480:1200,360:700"
"""`height:video kb/s` per rendition, tallest first: H.264 High + AAC-LC."""
LADDER_HEIGHT_RANGE = (144, 2160)
LADDER_KBPS_RANGE = (100, 50_000)
LADDER_MAX_RUNGS = 8
SOURCE_MAX_DURATION_DEFAULT = 4 * 3600
TRANSFER_CONCURRENCY_DEFAULT = 8


@dataclass(frozen=True, order=True)
class Rung:
    """One rendition of the ladder."""

    height: int
    video_kbps: int

    @property
    def name(self) -> str:
        return f"{self.height}p"


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """`"1080:5000,720:3000"` as rungs, tallest first; ValueError says what is wrong."""
    rungs = []
    for item in text.split(","):
        height, sep, kbps = item.strip().partition(":")
        if not sep or not height.isdigit() or not kbps.isdigit():
            raise ValueError(f"rung {item.strip()!r} is not height:kbps (e.g. 720:3000)")
        rung = Rung(int(height), int(kbps))
        low, high = LADDER_HEIGHT_RANGE
        if not low <= rung.height <= high or rung.height % 2:
            raise ValueError(f"rung {item.strip()!r}: height must be even, {low} to {high}")
        low, high = LADDER_KBPS_RANGE
        if not low <= rung.video_kbps <= high:
            raise ValueError(f"rung {item.strip()!r}: kb/s must be {low} to {high}")
        rungs.append(rung)
    heights = [rung.height for rung in rungs]
    if len(set(heights)) != len(heights):
        raise ValueError("two rungs have the same height")
    if len(rungs) > LADDER_MAX_RUNGS:
        raise ValueError(f"at most {LADDER_MAX_RUNGS} rungs")
    return tuple(sorted(rungs, reverse=True))


def format_ladder(rungs: tuple[Rung, ...]) -> str:
    return ",".join(f"{rung.height}:{rung.video_kbps}" for rung in rungs)


# -- API models -----------------------------------------------------------------------------
CREATE_VIDEO_MODEL = "CreateVideo"
UPLOAD_PARTS_MODEL = "UploadParts"
CREATE_VIDEO_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": CREATE_VIDEO_MODEL,
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "creator", "size_bytes", "content_type"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX},
        "creator": {"type": "string", "minLength": 1, "maxLength": CREATOR_MAX},
        "size_bytes": {"type": "integer", "minimum": 1, "maximum": UPLOAD_MAX_BYTES_CEILING},
        "content_type": {"type": "string", "pattern": CONTENT_TYPE_PATTERN},
    },
}
CREATE_VIDEO_FIELDS = frozenset(CREATE_VIDEO_SCHEMA["properties"])
UPLOAD_PARTS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": UPLOAD_PARTS_MODEL,
    "type": "object",
    "additionalProperties": False,
    "required": ["parts"],
    "properties": {
        "parts": {
            "type": "array",
            "minItems": 1,
            "maxItems": PART_URLS_PER_REQUEST,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["part_number", "checksum_sha256"],
                "properties": {
                    "part_number": {"type": "integer", "minimum": 1, "maximum": S3_MAX_PARTS},
                    "checksum_sha256": {"type": "string", "pattern": CHECKSUM_SHA256_PATTERN},
                },
            },
        }
    },
}
