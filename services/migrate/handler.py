"""Lambda entry point `services.migrate.handler.handler`: apply the schema migrations (R1).

`pulumi up` invokes it (`aws.lambda_.Invocation`) whenever a migration file, this code or
the database cluster changes, before the API and the workers need the schema. It logs in
with the master secret, because creating the services' login roles needs CREATEROLE, which
nothing else is given. Every failure raises, so the invocation, and with it the deployment,
fails visibly.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common.aws import aws_client
from services.common.db import Database
from services.common.logs import configure_logging
from services.common.migrations import apply_migrations, require_current_schema
from services.common.secrets import SecretCache, db_credentials
from services.common.settings import MigrateSettings, load_migrate_settings

log = logging.getLogger(__name__)
# DDL on a large table or a wait for the advisory lock may take minutes; the function's own
# timeout (300 s, components/schema.py) must stay above this.
MIGRATION_STATEMENT_TIMEOUT_SECONDS = 240.0


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply pending migrations; return `{"applied": [versions], "version": newest}`.

    The event is not read: the infrastructure may put anything in it (for example the
    migration files' hash, so that a change triggers a new invocation).
    """
    configure_logging()
    try:
        settings = load_migrate_settings()
        configure_logging(settings.log_level)
        result = migrate(settings)
    except Exception as error:
        log.error("schema migration failed", extra={"error": str(error)})
        raise
    log.info("schema is current", extra=result)
    return result


def migrate(settings: MigrateSettings) -> dict[str, Any]:
    secrets = SecretCache(aws_client("secretsmanager", region=settings.aws_region))
    database = Database(
        settings.database,
        db_credentials(settings.database, region=settings.aws_region, secrets=secrets),
        application_name="media-migrate",
        statement_timeout_seconds=MIGRATION_STATEMENT_TIMEOUT_SECONDS,
    )
    try:
        applied = apply_migrations(database)
        version = require_current_schema(database)
    finally:
        database.close()
    return {"applied": applied, "version": version}
