"""Schema migrations (R1): numbered SQL files applied once each, in order, idempotently.

The migration function (`services.migrate.handler`, invoked by `pulumi up`) calls
`apply_migrations` with the master credentials; a transaction-level advisory lock makes
concurrent callers wait for the first one, and the whole run is one transaction
(PostgreSQL DDL is transactional), so a failed migration leaves nothing behind. The API and
the worker log in as roles that cannot change the schema; they only check with
`require_current_schema` that every migration they ship has been applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from services.common.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same for every process using this schema.
ADVISORY_LOCK_KEY = 0x6D65_6469_6100
_FILE_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migration files or the recorded history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name {path.name!r} is not NNN_snake_case.sql")
        version = match["version"]
        if version in migrations:
            raise MigrationError(f"two migrations share version {version}")
        migrations[version] = Migration(version, match["name"], path.read_text())
    if not migrations:
        # A package built without services/migrations would otherwise pass every check.
        raise MigrationError(f"no migration files in {directory}")
    return list(migrations.values())


def apply_migrations(database: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    migrations = load_migrations(directory)
    return database.run_script(lambda connection: _apply(connection, migrations))


def require_current_schema(database: Database, directory: Path = MIGRATIONS_DIR) -> str:
    """Raise MigrationError unless every migration shipped here was applied unchanged;
    return the newest version."""
    migrations = load_migrations(directory)
    recorded = database.run(_recorded_checksums)
    missing = [f"{m.version}_{m.name}" for m in migrations if m.version not in recorded]
    if missing:
        raise MigrationError(
            f"database schema is missing migration(s) {', '.join(missing)}; the migration"
            " function (run by `pulumi up`) must apply them before this service starts"
        )
    for migration in migrations:
        if recorded[migration.version] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version}_{migration.name} changed after it was applied"
            )
    return migrations[-1].version


def _recorded_checksums(cursor) -> dict[str, str]:
    cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return {}
    cursor.execute("SELECT version, checksum FROM schema_migrations")
    return dict(cursor.fetchall())


def _apply(connection, migrations: list[Migration]) -> list[str]:
    cursor = connection.cursor()
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cursor.execute("SELECT version, checksum FROM schema_migrations")
    recorded = dict(cursor.fetchall())
    applied = []
    for migration in migrations:
        if migration.version in recorded:
            if recorded[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version}_{migration.name} changed after it was applied"
                )
            continue
        connection.execute_simple(migration.sql)
        cursor.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
        applied.append(migration.version)
    return applied
