"""H5: what PostgreSQL gives every role by default is taken from the services' roles by
migration 004; what PostgreSQL lets no one take away is made harmless (services/README.md,
"Database roles")."""

from __future__ import annotations

import pytest
from conftest import APP_PASSWORD, APP_USER, connect_as
from pg8000.exceptions import DatabaseError

from services.common.db import Database, sqlstate
from services.common.migrations import ADVISORY_LOCK_KEY, apply_migrations
from services.common.roles import API_DB_USER, WORKER_DB_USER
from services.common.secrets import StaticDbCredentials

pytestmark = pytest.mark.services

INSUFFICIENT_PRIVILEGE = "42501"
ROLES = [API_DB_USER, WORKER_DB_USER]


@pytest.fixture
def as_role(pg_server, admin_db):
    opened = []

    def connect(role: str, name: str = "media") -> Database:
        database = connect_as(pg_server, role, application_name=f"h5-{role}", name=name)
        opened.append(database)
        return database

    yield connect
    for database in opened:
        database.close()


def _refused(database: Database, statement: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        database.run(lambda cursor: cursor.execute(statement))
    assert sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE, caught.value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TEMP TABLE scratch (id int)",
        "CREATE TEMPORARY TABLE scratch AS SELECT 1 AS one",
        "CREATE FUNCTION pg_temp.shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TEMP VIEW scratch AS SELECT 1",
    ],
)
def test_h5_service_roles_cannot_create_temporary_objects(as_role, role, statement):
    _refused(as_role(role), statement)


def _migrated_as_superuser(pg_server, name: str) -> None:
    superuser = Database(
        pg_server.settings(name=name),
        StaticDbCredentials(pg_server.superuser, pg_server.superuser_password),
        application_name="h5-migrator",
    )
    try:
        apply_migrations(superuser)
    finally:
        superuser.close()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "statement",
    [
        f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})",
        f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})",
        f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})",
        f"SELECT pg_try_advisory_xact_lock_shared({ADVISORY_LOCK_KEY})",
        "SELECT pg_advisory_lock(1, 2)",
    ],
)
def test_h5_migrations_run_as_a_superuser_keep_the_advisory_lock_to_the_migrator(
    pg_server, empty_database, as_role, role, statement
):
    """Where the migrator may change pg_catalog's privileges (a superuser; not RDS, see
    the README), the services cannot take the migrations' lock and hold up a deploy."""
    _migrated_as_superuser(pg_server, empty_database)
    _refused(as_role(role, empty_database), statement)
    _migrated_as_superuser(pg_server, empty_database)  # the migrator keeps its lock
    # So does the database owner, should it run the next migrations.
    owner = Database(
        pg_server.settings(name=empty_database),
        StaticDbCredentials(APP_USER, APP_PASSWORD),
        application_name="h5-owner",
    )
    try:
        owner.run(lambda cursor: cursor.execute(statement))
    finally:
        owner.close()


def test_h5_temporary_objects_stay_available_to_the_owner(database):
    database.run(lambda cursor: cursor.execute("CREATE TEMP TABLE owner_scratch (id int)"))


@pytest.mark.parametrize("role", ROLES)
def test_h5_a_role_default_cannot_loosen_the_services_statement_timeout(as_role, admin_db, role):
    """PostgreSQL lets any role ALTER ROLE itself; the services' sessions set their
    statement_timeout in the startup packet, which outranks a role default."""
    as_role(role).run(
        lambda cursor: cursor.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
    )
    try:
        fresh = as_role(role)
        value = fresh.run(lambda c: (c.execute("SHOW statement_timeout"), c.fetchone()[0])[1])
        assert value == "8s"
    finally:
        admin_db.cursor().execute(f"ALTER ROLE {role} RESET ALL")


def test_h5_migration_clears_role_defaults_set_before_it(pg_server, empty_database, admin_db):
    for role in ROLES:
        admin_db.cursor().execute(f"ALTER ROLE {role} SET statement_timeout = 0")
    try:
        owner = Database(
            pg_server.settings(name=empty_database),
            StaticDbCredentials(APP_USER, APP_PASSWORD),
            application_name="h5-owner",
        )
        apply_migrations(owner)
        owner.close()
        cursor = admin_db.cursor()
        cursor.execute(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname IN (%s, %s)",
            tuple(ROLES),
        )
        assert cursor.fetchone()[0] == 0
    finally:
        for role in ROLES:
            admin_db.cursor().execute(f"ALTER ROLE {role} RESET ALL")
