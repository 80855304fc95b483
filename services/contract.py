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
    {EnvVar.DB_HOST, EnvVar.DB_NAME, EnvVar.REDIS_HOST, EnvVar.STREAM_NAME, EnvVar.MEDIA_ROOT}
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


API_ENVIRONMENT = ServiceEnvironment(
    service="api",
    required=_DATA_PLANE_REQUIRED,
    optional=_DATA_PLANE - _DATA_PLANE_REQUIRED,
    db_logins=(DB_LOGIN_IAM, DB_LOGIN_SECRET),
)
_WORKER_REQUIRED = _DATA_PLANE_REQUIRED | {
    EnvVar.JOBS_QUEUE_URL,
    EnvVar.DEAD_LETTER_QUEUE_URL,
    EnvVar.MAX_RECEIVE_COUNT,
}
WORKER_ENVIRONMENT = ServiceEnvironment(
    service="worker",
    required=_WORKER_REQUIRED,
    optional=(_DATA_PLANE - _WORKER_REQUIRED)
    | {
        EnvVar.JOB_TIMEOUT_SECONDS,
        EnvVar.VISIBILITY_TIMEOUT_SECONDS,
        EnvVar.STOP_TIMEOUT_SECONDS,
        EnvVar.CONTENT_KEY_SECRET_ARN,
        EnvVar.SCRATCH_DIR,
        EnvVar.WORKER_BATCH_SIZE,
        EnvVar.RECEIVE_WAIT_SECONDS,
        EnvVar.RETRY_BASE_SECONDS,
        EnvVar.RETRY_MAX_SECONDS,
        EnvVar.FFPROBE_PATH,
        EnvVar.HEALTHCHECK_MAX_AGE_SECONDS,
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


# What a stack may set: always TLS. Without the RDS CA bundle only `require` works;
# `verify-full` once the bundle ships with the code.
DB_SSL_MODES = (SslMode.REQUIRE, SslMode.VERIFY_FULL)

# PostgreSQL login roles of the services, created by migrations/003_service_roles.sql. The
# infrastructure sets them as DB_IAM_USER and scopes each service's `rds-db:connect` to its own.
API_DB_USER = "media_api"
WORKER_DB_USER = "media_worker"

# Request limits of POST /videos and GET /videos: API Gateway checks the body against
# CREATE_VIDEO_SCHEMA before the handler runs, and the handler checks again.
TITLE_MAX = 200
CREATOR_MAX = 100
SOURCE_PATH_MAX = 1024
LIMIT_DEFAULT = 20
"""Videos per page of `GET /videos` when `limit` is not given."""
LIMIT_MAX = 100
"""Largest `limit` of `GET /videos`."""

CREATE_VIDEO_MODEL = "CreateVideo"
CREATE_VIDEO_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": CREATE_VIDEO_MODEL,
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "creator", "source_path"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX},
        "creator": {"type": "string", "minLength": 1, "maxLength": CREATOR_MAX},
        "source_path": {"type": "string", "minLength": 1, "maxLength": SOURCE_PATH_MAX},
    },
}
CREATE_VIDEO_FIELDS = frozenset(CREATE_VIDEO_SCHEMA["properties"])
