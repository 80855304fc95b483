"""Settings read once from the environment into frozen dataclasses.

Every problem names the environment variable, so a misconfigured task or function
fails at start-up with a message an operator can act on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

import services
from services.contract import (
    API_ENVIRONMENT,
    DB_LOGIN_IAM,
    DB_LOGIN_PASSWORD,
    DB_LOGIN_SECRET,
    DEFAULT_LADDER,
    DEFAULT_LOG_LEVEL,
    DEFAULT_UPLOAD_CONTENT_TYPES,
    LOG_LEVELS,
    MIGRATE_ENVIRONMENT,
    PLAYBACK_GRANT_SECONDS_DEFAULT,
    PLAYBACK_GRANT_SECONDS_RANGE,
    RDS_CA_BUNDLE,
    SEGMENT_SECONDS_DEFAULT,
    SEGMENT_SECONDS_RANGE,
    SOURCE_MAX_DURATION_DEFAULT,
    TRANSFER_CONCURRENCY_DEFAULT,
    UPLOAD_MAX_BYTES_CEILING,
    UPLOAD_MAX_BYTES_DEFAULT,
    UPLOAD_URL_TTL_DEFAULT,
    UPLOAD_URL_TTL_MAX,
    WORKER_ENVIRONMENT,
    EnvVar,
    Rung,
    SslMode,
    parse_ladder,
)

_TRUE = frozenset({"1", "true", "yes", "on"})
KEY_PAIR_ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"
"""A CloudFront public key's id (e.g. `K2JCJMDEHXQW5F`), as the Key-Pair-Id of a grant."""
# A host name as CloudFront serves it (the distribution's domain or an alternate domain):
# lower-case labels, no scheme, port or path.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_KEY_PAIR_ID = re.compile(KEY_PAIR_ID_PATTERN)
PUBLIC_KEYS_MAX = 5
"""CloudFront's limit of public keys in one key group: a rotation holds the old and new."""
_PUBLIC_KEYS_MAX_BYTES = 64 * 1024
_FALSE = frozenset({"0", "false", "no", "off"})
SQS_MAX_VISIBILITY_SECONDS = 43_200


class SettingsError(ValueError):
    """An environment variable is missing or holds a value that is not allowed."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"environment variable {name}: {problem}")
        self.variable = name


class _Env:
    """Typed reads from one environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(name, "is required but not set")
            return default
        return value

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def integer(self, name: str, default: int | None = None, *, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(name, "is required but not set")
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, f"must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise SettingsError(name, f"must be between {low} and {high}, got {number}")
        return number

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, f"must be a number, got {value!r}") from None
        if not low <= number <= high:
            raise SettingsError(name, f"must be between {low} and {high}, got {number}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(name, f"must be true or false, got {value!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).upper()
        if value not in allowed:
            raise SettingsError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def words(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list (UPLOAD_CONTENT_TYPES), lower-cased, without blanks."""
        value = self.raw(name)
        if value is None:
            return default
        words = tuple(word.strip().lower() for word in value.split(",") if word.strip())
        if not words:
            raise SettingsError(name, f"must list at least one value, got {value!r}")
        return words

    def ladder(self, name: str, default: str) -> tuple[Rung, ...]:
        try:
            return parse_ladder(self.text(name, default))
        except ValueError as error:
            raise SettingsError(name, str(error)) from None

    def ssl_mode(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            return SslMode.VERIFY_FULL
        lowered = value.lower()
        if lowered in _TRUE or lowered == SslMode.VERIFY_FULL:
            return SslMode.VERIFY_FULL
        if lowered in _FALSE or lowered == SslMode.DISABLE:
            return SslMode.DISABLE
        if lowered == SslMode.REQUIRE:
            return SslMode.REQUIRE
        raise SettingsError(name, f"must be true, false or require, got {value!r}")

    def absolute_path(self, name: str, default: str | None = None) -> PurePosixPath:
        value = self.text(name, default)
        path = PurePosixPath(value)
        if not path.is_absolute():
            raise SettingsError(name, f"must be an absolute path, got {value!r}")
        return path


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    host: str
    port: int
    name: str
    ssl_mode: str
    """`verify-full` (DB_SSL=true, the default), `require`, or `disable` (DB_SSL=false)."""
    ssl_root_cert: str | None = None
    """PEM bundle to trust instead of the system store (DB_SSL_ROOT_CERT); with `verify-full`
    and none given, the RDS CA bundle shipped with the code (RDS_CA_BUNDLE)."""
    iam_user: str | None = None
    """Login role authenticated with an RDS IAM auth token per connection (DB_IAM_USER)."""
    secret_arn: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    host: str
    port: int
    tls: bool
    auth_secret_arn: str | None = None
    auth_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    database: DatabaseSettings
    redis: RedisSettings
    stream_name: str
    cache_ttl_seconds: int
    log_level: str
    aws_region: str | None


@dataclass(frozen=True, kw_only=True)
class UploadSettings:
    """How the API opens multipart uploads into the ingest bucket (M1)."""

    ingest_bucket: str
    max_bytes: int
    content_types: tuple[str, ...]
    url_ttl_seconds: int


@dataclass(frozen=True, kw_only=True)
class PlaybackSettings:
    """How the API signs playback grants (M8): all three variables, or no delivery."""

    domain: str
    """The distribution's playback host name (PLAYBACK_DOMAIN)."""
    key_pair_id: str
    """The CloudFront public key's id the grants name (PLAYBACK_KEY_PAIR_ID)."""
    signing_secret_arn: str
    """Secret whose string is the matching private key PEM (PLAYBACK_SIGNING_SECRET_ARN)."""
    grant_seconds: int
    """Lifetime of a grant (PLAYBACK_GRANT_SECONDS)."""


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    common: CommonSettings
    uploads: UploadSettings
    playback: PlaybackSettings | None = None
    """None when the stack has no delivery: the playback route answers 503."""


@dataclass(frozen=True, kw_only=True)
class KeysSettings:
    """Key delivery (M9): where the content keyring is and which grants to trust."""

    content_key_secret_arn: str
    public_keys: Mapping[str, Any] = field(repr=False)
    """CloudFront key group's public keys by id (RSAPublicKey), from PLAYBACK_PUBLIC_KEYS."""
    log_level: str
    aws_region: str | None


@dataclass(frozen=True, kw_only=True)
class CacheTokenRotationSettings:
    """The cache AUTH token's rotation function (issue 14, item 7)."""

    redis: RedisSettings
    """The primary endpoint the new token is tested against; `auth_secret_arn` is the one
    secret this function rotates."""
    replication_group_id: str
    """The replication group whose token is changed (CACHE_REPLICATION_GROUP_ID)."""
    log_level: str
    aws_region: str | None


@dataclass(frozen=True, kw_only=True)
class MediaSettings:
    """Where sources come from, how they are checked and transcoded, where outputs go."""

    ingest_bucket: str
    media_bucket: str
    ladder: tuple[Rung, ...]
    segment_seconds: int
    max_source_bytes: int
    max_duration_seconds: int
    delete_source_after_processing: bool
    transfer_concurrency: int
    ffmpeg_path: str


@dataclass(frozen=True, kw_only=True)
class MigrateSettings:
    database: DatabaseSettings
    log_level: str
    aws_region: str | None


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    common: CommonSettings
    jobs_queue_url: str
    dead_letter_queue_url: str
    max_receive_count: int
    job_timeout_seconds: int
    visibility_timeout_seconds: int
    content_key_secret_arn: str
    scratch_dir: PurePosixPath
    media_root: PurePosixPath | None
    """The shared EFS volume when mounted (W4); the media path does not need it."""
    media: MediaSettings
    batch_size: int
    receive_wait_seconds: int
    retry_base_seconds: float
    retry_max_seconds: float
    stop_timeout_seconds: float
    ffprobe_path: str


class DbAuth(Enum):
    """How a service proves who it is to PostgreSQL, by the variables that configure it."""

    IAM = DB_LOGIN_IAM
    SECRET = DB_LOGIN_SECRET
    PASSWORD = DB_LOGIN_PASSWORD

    @property
    def variables(self) -> tuple[str, ...]:
        return self.value


API_DB_AUTH = tuple(map(DbAuth, API_ENVIRONMENT.db_logins))
WORKER_DB_AUTH = tuple(map(DbAuth, WORKER_ENVIRONMENT.db_logins))
MIGRATE_DB_AUTH = tuple(map(DbAuth, MIGRATE_ENVIRONMENT.db_logins))


def _choices(allowed: tuple[DbAuth, ...]) -> str:
    """`A or B`, `A, B or C`: the sources a service with two or more of them accepts."""
    texts = [" with ".join(auth.variables) for auth in allowed]
    return f"{', '.join(texts[:-1])} or {texts[-1]}"


def _db_auth(env: _Env, allowed: tuple[DbAuth, ...]) -> DbAuth:
    """The one credential source configured among those this service allows."""
    given = [
        (auth, names)
        for auth in allowed
        if (names := [name for name in auth.variables if env.raw(name) is not None])
    ]
    if len(given) > 1:
        (_, first), (_, second) = given[:2]
        raise SettingsError(
            first[0],
            f"cannot be combined with {' and '.join(second)};"
            f" set exactly one of {_choices(allowed)}",
        )
    if not given:
        if len(allowed) == 1:
            raise SettingsError(allowed[0].variables[0], "is required but not set")
        raise SettingsError(
            allowed[0].variables[0], f"is not set; set exactly one of {_choices(allowed)}"
        )
    auth, names = given[0]
    for name in auth.variables:
        if name not in names:
            raise SettingsError(name, f"is required with {' and '.join(sorted(names))}")
    return auth


def default_root_cert(ssl_mode: str) -> str | None:
    """The platform's database is always RDS: `verify-full` trusts AWS's RDS certificate
    authorities, shipped beside this code in every Lambda archive and the worker image."""
    if ssl_mode != SslMode.VERIFY_FULL:
        return None
    return str(Path(services.__file__).resolve().parent / RDS_CA_BUNDLE)


def _database(
    env: _Env, *, allowed_auth: tuple[DbAuth, ...], region: str | None
) -> DatabaseSettings:
    auth = _db_auth(env, allowed_auth)
    ssl_mode = env.ssl_mode(EnvVar.DB_SSL)
    if auth == DbAuth.IAM:
        if ssl_mode == SslMode.DISABLE:
            # RDS accepts an IAM auth token only on a TLS connection.
            raise SettingsError(
                EnvVar.DB_IAM_USER,
                f"needs TLS, so {EnvVar.DB_SSL} must be true or require,"
                f" got {env.raw(EnvVar.DB_SSL)!r}",
            )
        if region is None:
            raise SettingsError(
                EnvVar.AWS_REGION,
                f"is required with {EnvVar.DB_IAM_USER} (the auth token is signed per region)",
            )
    return DatabaseSettings(
        host=env.text(EnvVar.DB_HOST),
        port=env.integer(EnvVar.DB_PORT, 5432, low=1, high=65535),
        name=env.text(EnvVar.DB_NAME),
        ssl_mode=ssl_mode,
        ssl_root_cert=env.optional(EnvVar.DB_SSL_ROOT_CERT) or default_root_cert(ssl_mode),
        iam_user=env.optional(EnvVar.DB_IAM_USER) if auth == DbAuth.IAM else None,
        secret_arn=env.optional(EnvVar.DB_SECRET_ARN) if auth == DbAuth.SECRET else None,
        username=env.optional(EnvVar.DB_USERNAME) if auth == DbAuth.PASSWORD else None,
        password=env.optional(EnvVar.DB_PASSWORD) if auth == DbAuth.PASSWORD else None,
    )


def _region(env: _Env) -> str | None:
    return env.optional(EnvVar.AWS_REGION) or env.optional(EnvVar.AWS_DEFAULT_REGION)


def _redis(env: _Env) -> RedisSettings:
    return RedisSettings(
        host=env.text(EnvVar.REDIS_HOST),
        port=env.integer(EnvVar.REDIS_PORT, 6379, low=1, high=65535),
        tls=env.boolean(EnvVar.REDIS_TLS, True),
        auth_secret_arn=env.optional(EnvVar.REDIS_AUTH_SECRET_ARN),
        auth_token=env.optional(EnvVar.REDIS_AUTH_TOKEN),
    )


def _common(env: _Env, *, allowed_auth: tuple[DbAuth, ...]) -> CommonSettings:
    region = _region(env)
    return CommonSettings(
        database=_database(env, allowed_auth=allowed_auth, region=region),
        redis=_redis(env),
        stream_name=env.text(EnvVar.STREAM_NAME),
        cache_ttl_seconds=env.integer(EnvVar.CACHE_TTL_SECONDS, 300, low=1, high=86_400 * 7),
        log_level=env.choice(EnvVar.LOG_LEVEL, DEFAULT_LOG_LEVEL, LOG_LEVELS),
        aws_region=region,
    )


def _upload_max_bytes(env: _Env) -> int:
    return env.integer(
        EnvVar.UPLOAD_MAX_BYTES, UPLOAD_MAX_BYTES_DEFAULT, low=1, high=UPLOAD_MAX_BYTES_CEILING
    )


def load_api_settings(environ: Mapping[str, str] | None = None) -> ApiSettings:
    """Settings of the API Lambda: IAM database authentication or a secret by ARN."""
    env = _Env(os.environ if environ is None else environ)
    uploads = UploadSettings(
        ingest_bucket=env.text(EnvVar.INGEST_BUCKET),
        max_bytes=_upload_max_bytes(env),
        content_types=env.words(EnvVar.UPLOAD_CONTENT_TYPES, DEFAULT_UPLOAD_CONTENT_TYPES),
        url_ttl_seconds=env.integer(
            EnvVar.UPLOAD_URL_TTL_SECONDS, UPLOAD_URL_TTL_DEFAULT, low=60, high=UPLOAD_URL_TTL_MAX
        ),
    )
    return ApiSettings(
        common=_common(env, allowed_auth=API_DB_AUTH),
        uploads=uploads,
        playback=_playback(env),
    )


def _playback(env: _Env) -> PlaybackSettings | None:
    """The signing trio, all or none (a partial set is a configuration error); the grant
    lifetime is read either way, so a bad value is reported even without delivery."""
    low, high = PLAYBACK_GRANT_SECONDS_RANGE
    grant_seconds = env.integer(
        EnvVar.PLAYBACK_GRANT_SECONDS, PLAYBACK_GRANT_SECONDS_DEFAULT, low=low, high=high
    )
    trio = (EnvVar.PLAYBACK_DOMAIN, EnvVar.PLAYBACK_KEY_PAIR_ID, EnvVar.PLAYBACK_SIGNING_SECRET_ARN)
    given = [name for name in trio if env.raw(name) is not None]
    if not given:
        return None
    for name in trio:
        if name not in given:
            raise SettingsError(name, f"is required with {' and '.join(given)}")
    domain = env.text(EnvVar.PLAYBACK_DOMAIN)
    if not _HOST_NAME.fullmatch(domain):
        raise SettingsError(
            EnvVar.PLAYBACK_DOMAIN,
            f"must be a lower-case host name without scheme, port or path, got {domain!r}",
        )
    key_pair_id = env.text(EnvVar.PLAYBACK_KEY_PAIR_ID)
    if not _KEY_PAIR_ID.fullmatch(key_pair_id):
        raise SettingsError(
            EnvVar.PLAYBACK_KEY_PAIR_ID,
            f"must be a CloudFront public key id (1-64 letters and digits), got {key_pair_id!r}",
        )
    return PlaybackSettings(
        domain=domain,
        key_pair_id=key_pair_id,
        signing_secret_arn=env.text(EnvVar.PLAYBACK_SIGNING_SECRET_ARN),
        grant_seconds=grant_seconds,
    )


def load_keys_settings(environ: Mapping[str, str] | None = None) -> KeysSettings:
    """Settings of the key-delivery function (M9); it reads no database."""
    env = _Env(os.environ if environ is None else environ)
    return KeysSettings(
        content_key_secret_arn=env.text(EnvVar.CONTENT_KEY_SECRET_ARN),
        public_keys=_public_keys(env),
        log_level=env.choice(EnvVar.LOG_LEVEL, DEFAULT_LOG_LEVEL, LOG_LEVELS),
        aws_region=_region(env),
    )


def load_cache_token_rotation_settings(
    environ: Mapping[str, str] | None = None,
) -> CacheTokenRotationSettings:
    """Settings of the cache token's rotation function; it reads no database and no token
    from its environment (the token is the secret it rotates)."""
    env = _Env(os.environ if environ is None else environ)
    return CacheTokenRotationSettings(
        redis=RedisSettings(
            host=env.text(EnvVar.REDIS_HOST),
            port=env.integer(EnvVar.REDIS_PORT, 6379, low=1, high=65535),
            tls=env.boolean(EnvVar.REDIS_TLS, True),
            auth_secret_arn=env.text(EnvVar.REDIS_AUTH_SECRET_ARN),
        ),
        replication_group_id=env.text(EnvVar.CACHE_REPLICATION_GROUP_ID),
        log_level=env.choice(EnvVar.LOG_LEVEL, DEFAULT_LOG_LEVEL, LOG_LEVELS),
        aws_region=_region(env),
    )


def _public_keys(env: _Env) -> dict[str, Any]:
    """PLAYBACK_PUBLIC_KEYS: `{"<key pair id>": "<RSA public key PEM>"}`, the key group's
    keys. `cryptography` is imported here, not with this module: the API reads its settings
    on every cold start and never needs it."""
    from services.common.signed_access import load_public_key

    name = EnvVar.PLAYBACK_PUBLIC_KEYS
    text = env.text(name)
    try:
        document = json.loads(text) if len(text) <= _PUBLIC_KEYS_MAX_BYTES else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or not 1 <= len(document) <= PUBLIC_KEYS_MAX:
        raise SettingsError(
            name,
            f"must be a JSON object of 1 to {PUBLIC_KEYS_MAX} key pair ids, each with its"
            " public key PEM",
        )
    keys = {}
    for key_pair_id, pem in document.items():
        if not _KEY_PAIR_ID.fullmatch(key_pair_id):
            raise SettingsError(name, f"key pair id {key_pair_id!r} is not 1-64 letters and digits")
        try:
            keys[key_pair_id] = load_public_key(pem)
        except ValueError as error:
            raise SettingsError(name, f"key pair {key_pair_id}: {error}") from None
    return keys


def _media(env: _Env) -> MediaSettings:
    low, high = SEGMENT_SECONDS_RANGE
    return MediaSettings(
        ingest_bucket=env.text(EnvVar.INGEST_BUCKET),
        media_bucket=env.text(EnvVar.MEDIA_BUCKET),
        ladder=env.ladder(EnvVar.TRANSCODE_LADDER, DEFAULT_LADDER),
        segment_seconds=env.integer(
            EnvVar.SEGMENT_SECONDS, SEGMENT_SECONDS_DEFAULT, low=low, high=high
        ),
        max_source_bytes=_upload_max_bytes(env),
        max_duration_seconds=env.integer(
            EnvVar.SOURCE_MAX_DURATION_SECONDS, SOURCE_MAX_DURATION_DEFAULT, low=1, high=86_400
        ),
        delete_source_after_processing=env.boolean(EnvVar.DELETE_SOURCE_AFTER_PROCESSING, False),
        transfer_concurrency=env.integer(
            EnvVar.TRANSFER_CONCURRENCY, TRANSFER_CONCURRENCY_DEFAULT, low=1, high=64
        ),
        ffmpeg_path=env.text(EnvVar.FFMPEG_PATH, "ffmpeg"),
    )


def load_migrate_settings(environ: Mapping[str, str] | None = None) -> MigrateSettings:
    """Settings of the migration function: the master secret by ARN (it creates the roles)."""
    env = _Env(os.environ if environ is None else environ)
    region = _region(env)
    return MigrateSettings(
        database=_database(env, allowed_auth=MIGRATE_DB_AUTH, region=region),
        log_level=env.choice(EnvVar.LOG_LEVEL, DEFAULT_LOG_LEVEL, LOG_LEVELS),
        aws_region=region,
    )


def load_worker_settings(environ: Mapping[str, str] | None = None) -> WorkerSettings:
    """Settings of the media worker: IAM database authentication, a secret by ARN, or a
    user name and password injected by ECS."""
    env = _Env(os.environ if environ is None else environ)
    common = _common(env, allowed_auth=WORKER_DB_AUTH)
    job_timeout = env.integer(
        EnvVar.JOB_TIMEOUT_SECONDS, 120, low=1, high=SQS_MAX_VISIBILITY_SECONDS
    )
    # No rule against JOB_TIMEOUT_SECONDS: a running job extends its message's visibility
    # and its lease every third of this (M4), so a job may outlast it many times over.
    visibility = env.integer(
        EnvVar.VISIBILITY_TIMEOUT_SECONDS, 300, low=1, high=SQS_MAX_VISIBILITY_SECONDS
    )
    retry_max = env.number(
        EnvVar.RETRY_MAX_SECONDS, 900.0, low=0.0, high=float(SQS_MAX_VISIBILITY_SECONDS)
    )
    return WorkerSettings(
        common=common,
        jobs_queue_url=env.text(EnvVar.JOBS_QUEUE_URL),
        dead_letter_queue_url=env.text(EnvVar.DEAD_LETTER_QUEUE_URL),
        max_receive_count=env.integer(EnvVar.MAX_RECEIVE_COUNT, low=1, high=1000),
        job_timeout_seconds=job_timeout,
        visibility_timeout_seconds=visibility,
        content_key_secret_arn=env.text(EnvVar.CONTENT_KEY_SECRET_ARN),
        scratch_dir=env.absolute_path(EnvVar.SCRATCH_DIR, "/tmp"),
        media_root=(env.absolute_path(EnvVar.MEDIA_ROOT) if env.raw(EnvVar.MEDIA_ROOT) else None),
        media=_media(env),
        batch_size=env.integer(EnvVar.WORKER_BATCH_SIZE, 10, low=1, high=10),
        receive_wait_seconds=env.integer(EnvVar.RECEIVE_WAIT_SECONDS, 20, low=0, high=20),
        retry_base_seconds=env.number(EnvVar.RETRY_BASE_SECONDS, 5.0, low=0.0, high=retry_max),
        retry_max_seconds=retry_max,
        stop_timeout_seconds=env.number(EnvVar.STOP_TIMEOUT_SECONDS, 100.0, low=1.0, high=3600.0),
        ffprobe_path=env.text(EnvVar.FFPROBE_PATH, "ffprobe"),
    )
