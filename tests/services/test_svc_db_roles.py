"""D5 / D6 / G5: the services' login roles from migration 003 have exactly the privileges
their code needs. The API and worker suites run their real flows logged in as these roles
(test_svc_api, test_svc_worker, test_svc_worker_process); this file checks the grants
themselves and that everything else is refused with insufficient_privilege (42501)."""

from __future__ import annotations

import uuid

import pytest
from conftest import APP_USER, connect_as
from pg8000.exceptions import DatabaseError

from services.common.db import sqlstate
from services.common.roles import API_DB_USER, WORKER_DB_USER

pytestmark = pytest.mark.services

INSUFFICIENT_PRIVILEGE = "42501"
ANY_ID = uuid.UUID(int=1)


@pytest.fixture
def as_role(pg_server, admin_db):
    opened = []

    def connect(role: str):
        database = connect_as(pg_server, role, application_name=f"privileges-{role}")
        opened.append(database)
        return database

    yield connect
    for database in opened:
        database.close()


def _rows(admin_db, sql: str, *params) -> set[tuple]:
    cursor = admin_db.cursor()
    cursor.execute(sql, params)
    return {tuple(row) for row in cursor.fetchall()}


def test_g5_service_roles_log_in_without_any_administrative_attribute(admin_db):
    attributes = _rows(
        admin_db,
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,"
        " rolinherit FROM pg_roles WHERE rolname IN (%s, %s)",
        API_DB_USER,
        WORKER_DB_USER,
    )
    assert attributes == {
        (API_DB_USER, True, False, False, False, False, True),
        (WORKER_DB_USER, True, False, False, False, False, True),
    }
    owned = _rows(
        admin_db,
        "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
        " WHERE r.rolname IN (%s, %s)",
        API_DB_USER,
        WORKER_DB_USER,
    )
    assert owned == set()


def _table_grants(admin_db, role: str) -> set[tuple]:
    return _rows(
        admin_db,
        "SELECT table_name, privilege_type FROM information_schema.table_privileges"
        " WHERE grantee = %s AND table_schema = 'public'",
        role,
    )


def _column_grants(admin_db, role: str) -> dict[tuple[str, str], set[str]]:
    """Column-level INSERT and UPDATE grants, `{(table, privilege): {columns}}`."""
    grants: dict[tuple[str, str], set[str]] = {}
    for table, privilege, column in _rows(
        admin_db,
        "SELECT table_name, privilege_type, column_name FROM information_schema.column_privileges"
        " WHERE grantee = %s AND table_schema = 'public' AND privilege_type IN ('INSERT', 'UPDATE')",
        role,
    ):
        grants.setdefault((table, privilege), set()).add(column)
    return grants


def test_g5_m1_api_role_reads_everything_and_writes_only_what_uploads_and_completion_need(admin_db):
    assert _table_grants(admin_db, API_DB_USER) == {
        ("videos", "SELECT"),
        ("jobs", "SELECT"),
        ("schema_migrations", "SELECT"),
    }
    assert _column_grants(admin_db, API_DB_USER) == {
        ("videos", "INSERT"): {
            "id", "title", "creator", "source_uri", "content_type", "upload_size_bytes",
            "upload_part_size", "upload_id",
        },
        ("jobs", "INSERT"): {"id", "video_id"},
        ("videos", "UPDATE"): {"status", "updated_at", "upload_id"},
        ("jobs", "UPDATE"): {
            "state", "last_error", "finished_at", "notified_at", "updated_at", "requested_at",
        },
    }  # fmt: skip


def test_g5_m6_worker_role_reads_everything_and_updates_only_state_leases_facts_and_versions(
    admin_db,
):
    assert _table_grants(admin_db, WORKER_DB_USER) == {
        ("videos", "SELECT"),
        ("jobs", "SELECT"),
        ("schema_migrations", "SELECT"),
    }
    assert _column_grants(admin_db, WORKER_DB_USER) == {
        ("videos", "UPDATE"): {
            "status", "duration_s", "size_bytes", "container", "video_codec", "audio_codec",
            "width", "height", "bitrate", "updated_at", "progress", "media_versions",
            "published_version", "playlist_path", "poster_path", "key_version", "renditions",
        },
        ("jobs", "UPDATE"): {
            "state", "attempts", "last_error", "lease_token", "lease_expires_at", "notified_at",
            "publish_token", "publish_lease_expires_at", "started_at", "finished_at",
            "updated_at", "media_version",
        },
    }  # fmt: skip


FORBIDDEN_FOR_BOTH = [
    "DELETE FROM videos",
    "DELETE FROM jobs",
    "TRUNCATE videos, jobs",
    "DROP TABLE jobs",
    "ALTER TABLE videos ADD COLUMN extra text",
    "CREATE TABLE extra (id int)",
    "CREATE INDEX extra_idx ON videos (title)",
    "UPDATE schema_migrations SET checksum = 'x'",
    "INSERT INTO schema_migrations (version, name, checksum) VALUES ('999', 'x', 'x')",
    "DELETE FROM schema_migrations",
    f"UPDATE videos SET title = 'x', source_uri = 'y' WHERE id = '{ANY_ID}'",
    f"UPDATE jobs SET video_id = id WHERE id = '{ANY_ID}'",
    "ALTER TABLE videos OWNER TO CURRENT_USER",
    "CREATE ROLE extra LOGIN",
    f"SET ROLE {APP_USER}",
]
FORBIDDEN = {
    API_DB_USER: [
        *FORBIDDEN_FOR_BOTH,
        # Only the columns POST /videos supplies: status and facts start from the defaults.
        "INSERT INTO videos (id, title, creator, source_uri, status)"
        f" VALUES ('{ANY_ID}', 't', 'c', 'a.mp4', 'COMPLETED')",
        f"INSERT INTO jobs (id, video_id, state) VALUES ('{ANY_ID}', '{ANY_ID}', 'COMPLETED')",
        f"UPDATE videos SET duration_s = 1 WHERE id = '{ANY_ID}'",
        f"UPDATE jobs SET attempts = 0, lease_token = NULL WHERE id = '{ANY_ID}'",
    ],
    WORKER_DB_USER: [
        *FORBIDDEN_FOR_BOTH,
        f"INSERT INTO videos (id, title, creator, source_uri) VALUES ('{ANY_ID}', 't', 'c', 'a')",
        f"INSERT INTO jobs (id, video_id) VALUES ('{ANY_ID}', '{ANY_ID}')",
        f"UPDATE videos SET creator = 'x' WHERE id = '{ANY_ID}'",
        f"UPDATE jobs SET created_at = now() WHERE id = '{ANY_ID}'",
    ],
}


@pytest.mark.parametrize(
    ("role", "statement"),
    [(role, statement) for role, statements in FORBIDDEN.items() for statement in statements],
)
def test_g5_statements_outside_a_roles_grants_are_insufficient_privilege(as_role, role, statement):
    database = as_role(role)
    with pytest.raises(DatabaseError) as caught:
        database.run(lambda cursor: cursor.execute(statement))
    assert sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE, caught.value
