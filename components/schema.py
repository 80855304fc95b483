"""`SchemaMigrations`: applies the database schema during `pulumi up` (R1, D6).

A VPC Lambda function running `services/migrate` is the only code that reads the RDS-managed
master secret. It applies the numbered migrations in `services/migrations` (which also create
the services' least-privilege database roles) and is invoked by the deployment itself, once
per change of those files, after the writer instance exists. The API function and the worker
service wait for that invocation, so they never start against an older schema; a failing
migration fails `pulumi up` with the function's error instead of surfacing later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import pulumi
import pulumi_aws as aws

from components.connections import as_text, db_ssl_problems
from components.firewall import RoleSecurityGroup
from components.functions import GrantFn, app_function_args, vpc_function
from components.logs import retention_problems
from components.placement import AppPlacement, NetworkGrant
from services.contract import DEFAULT_LOG_LEVEL, EnvVar

HANDLER = "services.migrate.handler.handler"
# The handler gives each statement up to 240 s (services/migrate/handler.py), so the function
# must live longer than that; Lambda allows at most 900 s.
MIN_TIMEOUT_SECONDS = 300
MAX_TIMEOUT_SECONDS = 900


@dataclass(frozen=True, kw_only=True)
class SchemaMigrationsArgs(AppPlacement):
    """Inputs of `SchemaMigrations`: its placement and these."""

    code_path: str
    """Zip built by `components.packaging` (the API package carries `services/migrate`)."""
    code_sha256: str
    """Base64 SHA-256 of that zip (required)."""
    migrations_sha256: str
    """Fingerprint of the migration files; a change runs the function again (required)."""
    cluster_resource_id: pulumi.Input[str]
    """The cluster's immutable id: a replaced or restored cluster is migrated again
    (required)."""
    db_host: pulumi.Input[str]
    """Aurora writer endpoint (required)."""
    db_port: pulumi.Input[int]
    """PostgreSQL port (required)."""
    db_name: pulumi.Input[str]
    """Database name (required)."""
    db_secret_arn: pulumi.Input[str]
    """RDS-managed master secret the function logs in with (required)."""
    logs_key_arn: pulumi.Input[str]
    """CMK of the function's log group (required)."""
    secrets_key_arn: pulumi.Input[str]
    """Secrets Manager CMK, also encrypting the function's environment (required)."""
    access_grants: Mapping[str, GrantFn] = field(default_factory=dict)
    """Label -> grant helper, e.g. `database.grant_secret_read` (the master secret)."""
    run_after: Sequence[pulumi.Resource] = ()
    """Resources the invocation waits for: the writer instance. Default none."""
    db_ssl: str = "verify-full"
    """`DB_SSL` for the function: `verify-full` (default: the server's certificate checked
    against the RDS CA bundle shipped in the archive, so no interceptor in the VPC can take
    the master credentials) or `require` (encrypted, unchecked)."""
    timeout_seconds: int = 300
    """Function timeout, 300..900 s; default 300."""
    log_retention_days: int = 30
    """Retention of the function's log group; default 30."""

    @classmethod
    def for_database(
        cls, database: Any, *, network_grants: Sequence[NetworkGrant] = (), **rest: Any
    ) -> Self:
        """Args migrating `database` (an `EncryptedAurora`): its endpoint and master secret,
        the grant to read that secret and the rule to reach it; the run waits for its writer."""
        return cls(
            cluster_resource_id=database.cluster.cluster_resource_id,
            db_host=database.endpoint,
            db_port=database.port,
            db_name=database.database_name,
            db_secret_arn=database.secret_arn,
            access_grants={"db-secret": database.grant_secret_read},
            network_grants=(database.allow_from, *network_grants),
            run_after=[database.writer],
            **rest,
        )

    def validate(self) -> None:
        problems = []
        if len(self.subnet_ids) < 2:
            problems.append(
                f"subnet_ids: {len(self.subnet_ids)} given, allowed at least 2 (one per AZ, G7)"
            )
        if not self.code_path or not self.code_sha256 or not self.migrations_sha256:
            problems.append(
                "code_path/code_sha256/migrations_sha256: allowed a built package "
                "(components.packaging.build_api_package)"
            )
        problems += db_ssl_problems("db_ssl", self.db_ssl)
        if not MIN_TIMEOUT_SECONDS <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            problems.append(
                f"timeout_seconds={self.timeout_seconds}: allowed "
                f"{MIN_TIMEOUT_SECONDS}..{MAX_TIMEOUT_SECONDS}"
            )
        problems += retention_problems("log_retention_days", self.log_retention_days)
        if problems:
            raise ValueError("SchemaMigrationsArgs: " + "; ".join(problems))


class SchemaMigrations(pulumi.ComponentResource):
    """The migration function and its invocation during the deployment."""

    security_group: RoleSecurityGroup
    function_name: pulumi.Output[str]
    invocation: aws.lambda_.Invocation

    def __init__(
        self, name: str, args: SchemaMigrationsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:database:SchemaMigrations", name, None, opts)
        self.security_group = RoleSecurityGroup(
            f"{name}-sg",
            role="migrate",
            description="Schema migration function",
            vpc_id=args.vpc_id,
            namer=args.namer,
            parent=self,
        )
        function = vpc_function(
            name,
            app_function_args(
                args,
                self.security_group,
                stem="migrate",
                description="Applies the database schema and service roles (pulumi up)",
                handler=HANDLER,
                environment={
                    EnvVar.DB_HOST: args.db_host,
                    EnvVar.DB_PORT: as_text(args.db_port),
                    EnvVar.DB_NAME: args.db_name,
                    EnvVar.DB_SSL: args.db_ssl,
                    EnvVar.DB_SECRET_ARN: args.db_secret_arn,
                    EnvVar.LOG_LEVEL: DEFAULT_LOG_LEVEL,
                },
                timeout_seconds=args.timeout_seconds,
                # Migrations never run twice at once: the advisory lock already serialises
                # them, and one reserved instance keeps a second invocation from even starting.
                reserved_concurrency=1,
                access_grants=args.access_grants,
            ),
            parent=self,
        )
        self.function_name = function.function.name
        self.invocation = aws.lambda_.Invocation(
            f"{name}-run",
            function_name=function.function.name,
            input=json.dumps({"source": "pulumi"}),
            # CREATE_ONLY never re-invokes on its own: run again for new migrations, new
            # migration code, or a new (replaced, restored) cluster. Applied migrations are
            # skipped, so a run with nothing to do is harmless.
            triggers={
                "migrations": args.migrations_sha256,
                "code": args.code_sha256,
                "cluster": args.cluster_resource_id,
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*args.run_after, *self.security_group.access_rules],
            ),
        )
        self.register_outputs(
            {
                "security_group_id": self.security_group.id,
                "function_name": self.function_name,
            }
        )
