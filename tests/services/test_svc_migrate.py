"""R1 / D5: the deploy-time migration function (`services.migrate.handler`), run by
`pulumi up` with the master secret, against a real PostgreSQL and moto's Secrets Manager."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import APP_USER, connect_as
from pg8000.exceptions import DatabaseError

from services.common.db import DatabaseUnavailable, sqlstate
from services.common.migrations import load_migrations
from services.common.roles import API_DB_USER, WORKER_DB_USER
from services.common.settings import SettingsError
from services.migrate import handler as migrate_handler

pytestmark = pytest.mark.services

ALL_VERSIONS = [migration.version for migration in load_migrations()]


@pytest.fixture
def migrate_env(monkeypatch, aws, pg_server, empty_database):
    """The function's environment; the secret holds the database owner's login, which has
    CREATEROLE as the RDS master user does."""
    env = {
        "DB_HOST": pg_server.host,
        "DB_PORT": str(pg_server.port),
        "DB_NAME": empty_database,
        "DB_SSL": "false",
        "DB_SECRET_ARN": aws.db_secret_arn,
        "LOG_LEVEL": "INFO",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield env
    root.handlers[:] = handlers
    root.setLevel(level)


def _log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_r1_migrate_applies_every_migration_once_and_reports_the_version(
    migrate_env, pg_server, capsys
):
    assert migrate_handler.handler({"trigger": "abc"}, None) == {
        "applied": ALL_VERSIONS,
        "version": ALL_VERSIONS[-1],
    }
    [line] = [line for line in _log_lines(capsys) if line["message"] == "schema is current"]
    assert (line["applied"], line["version"], line["level"]) == (ALL_VERSIONS, "005", "INFO")
    assert migrate_handler.handler({}, None) == {"applied": [], "version": ALL_VERSIONS[-1]}
    # The new database's grants let the API's role in: it can read and create videos there.
    api = connect_as(pg_server, API_DB_USER, application_name="t", name=migrate_env["DB_NAME"])
    try:
        assert api.run(lambda c: (c.execute("SELECT count(*) FROM videos"), c.fetchone())[1]) == [0]
    finally:
        api.close()


def test_r1_migrations_get_minutes_per_statement_not_the_services_seconds(migrate_env, monkeypatch):
    """DDL on a large table (or waiting for the advisory lock) must not hit the 8 s limit
    the services run under; the function's own timeout is 300 s."""
    seen = []
    apply = migrate_handler.apply_migrations

    def recording(database):
        seen.append(database.run(lambda c: (c.execute("SHOW statement_timeout"), c.fetchone())[1]))
        return apply(database)

    monkeypatch.setattr(migrate_handler, "apply_migrations", recording)
    assert migrate_handler.handler({}, None)["applied"] == ALL_VERSIONS
    assert seen == [["4min"]]


def test_d5_migrate_with_an_unreadable_secret_raises_naming_the_arn(
    migrate_env, monkeypatch, capsys
):
    arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:media-master-gone"
    monkeypatch.setenv("DB_SECRET_ARN", arn)
    with pytest.raises(DatabaseUnavailable, match=f"cannot read secret {arn}"):
        migrate_handler.handler({}, None)
    [line] = [line for line in _log_lines(capsys) if line["message"] == "schema migration failed"]
    assert arn in line["error"]


def test_d5_migrate_without_the_master_secret_arn_raises(migrate_env, monkeypatch):
    monkeypatch.delenv("DB_SECRET_ARN")
    with pytest.raises(SettingsError, match="DB_SECRET_ARN: is required but not set"):
        migrate_handler.handler({}, None)


def test_d5_migrate_with_rejected_master_credentials_raises(migrate_env, aws):
    aws.secrets.put_secret_value(
        SecretId=aws.db_secret_arn,
        SecretString=json.dumps({"username": APP_USER, "password": "not-the-password"}),
    )
    with pytest.raises(DatabaseUnavailable, match="rejected"):
        migrate_handler.handler({}, None)


def _members_of(admin, role: str) -> set[str]:
    cursor = admin.cursor()
    cursor.execute(
        "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
        " JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = %s",
        (role,),
    )
    return {row[0] for row in cursor.fetchall()}


def test_g5_on_rds_the_service_roles_join_rds_iam(migrate_env, pg_server):
    """RDS has an `rds_iam` role (only IAM auth tokens for its members), which the master
    user may grant; made here for the length of the test."""
    admin = pg_server.admin("postgres")
    admin.cursor().execute("CREATE ROLE rds_iam")
    try:
        admin.cursor().execute(f"GRANT rds_iam TO {APP_USER} WITH ADMIN OPTION")
        migrate_handler.handler({}, None)
        assert _members_of(admin, "rds_iam") == {APP_USER, API_DB_USER, WORKER_DB_USER}
    finally:
        admin.cursor().execute("DROP ROLE rds_iam")
        admin.close()


def test_g5_services_cannot_create_objects_even_where_public_may(migrate_env, pg_server):
    """PostgreSQL before 15 (Aurora 13 and 14) lets PUBLIC create in the public schema;
    migration 003 takes that away."""
    owner = pg_server.admin(migrate_env["DB_NAME"])
    owner.cursor().execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    owner.close()
    migrate_handler.handler({}, None)
    for role in (API_DB_USER, WORKER_DB_USER):
        database = connect_as(pg_server, role, application_name="t", name=migrate_env["DB_NAME"])
        try:
            with pytest.raises(DatabaseError) as caught:
                database.run(lambda cursor: cursor.execute("CREATE TABLE extra (id int)"))
            assert sqlstate(caught.value) == "42501"
        finally:
            database.close()
