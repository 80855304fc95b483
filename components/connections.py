"""What the services on the platform connect to, shared by the API function and the workers.

Only endpoints, names and secret ARNs travel here — never a secret value — and they become
the environment contract of `services/` (`services/contract.py`). Each service logs in to
the database as its own role with IAM tokens (`DB_IAM_USER`); no service sees the master
secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import pulumi

from services.contract import DB_SSL_MODES, EnvVar, env_flag


def db_ssl_problems(field_name: str, value: str) -> list[str]:
    if value in DB_SSL_MODES:
        return []
    return [f"{field_name}={value!r}: allowed one of " + ", ".join(DB_SSL_MODES)]


@dataclass(frozen=True, kw_only=True)
class DataPlane:
    """The database, cache and stream a service uses."""

    db_host: pulumi.Input[str]
    """Aurora writer endpoint (required)."""
    db_port: pulumi.Input[int]
    """PostgreSQL port (required)."""
    db_name: pulumi.Input[str]
    """Database name (required)."""
    redis_host: pulumi.Input[str]
    """Cache primary endpoint (required)."""
    redis_port: pulumi.Input[int]
    """Cache port (required)."""
    stream_name: pulumi.Input[str]
    """Kinesis stream events are put on (required)."""
    redis_tls: bool = True
    """Whether the cache speaks TLS; default True (C3)."""
    redis_auth_secret_arn: pulumi.Input[str] | None = None
    """Secret holding the cache AUTH token (plain string); default None (no AUTH)."""

    @classmethod
    def of_tiers(cls, *, database: Any, cache: Any, stream: Any, **rest: Any) -> Self:
        """The data plane of the platform's own database, cache and stream components."""
        return cls(
            db_host=database.endpoint,
            db_port=database.port,
            db_name=database.database_name,
            redis_host=cache.primary_endpoint,
            redis_port=cache.port,
            redis_tls=cache.transit_encryption,
            redis_auth_secret_arn=cache.auth_secret_arn,
            stream_name=stream.name,
            **rest,
        )

    def environment(self, db_ssl: str, db_user: str) -> dict[str, pulumi.Input[str]]:
        """The variables both services read to reach the data plane."""
        return {
            EnvVar.DB_HOST: self.db_host,
            EnvVar.DB_PORT: as_text(self.db_port),
            EnvVar.DB_NAME: self.db_name,
            EnvVar.DB_SSL: db_ssl,
            EnvVar.DB_IAM_USER: db_user,
            EnvVar.REDIS_HOST: self.redis_host,
            EnvVar.REDIS_PORT: as_text(self.redis_port),
            EnvVar.REDIS_TLS: env_flag(self.redis_tls),
            EnvVar.STREAM_NAME: self.stream_name,
        }


def as_text(value: pulumi.Input[Any]) -> pulumi.Output[str]:
    return pulumi.Output.from_input(value).apply(str)
