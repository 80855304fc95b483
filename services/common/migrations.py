"""Schema migrations (R1): numbered SQL files applied once each, in order, idempotently.

Every API cold start and every worker start calls `apply_migrations`; a transaction-level
advisory lock makes concurrent callers wait for the first one, and the whole run is one
transaction (PostgreSQL DDL is transactional), so a failed migration leaves nothing behind.
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
    return list(migrations.values())


def apply_migrations(database: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    migrations = load_migrations(directory)
    return database.run_script(lambda connection: _apply(connection, migrations))


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
