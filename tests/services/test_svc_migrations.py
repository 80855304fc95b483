"""R1 / D8: the schema, applied idempotently under an advisory lock."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from pg8000.exceptions import DatabaseError

from services.common.db import Database
from services.common.migrations import (
    MIGRATIONS_DIR,
    MigrationError,
    apply_migrations,
    load_migrations,
    require_current_schema,
)
from services.common.secrets import StaticDbCredentials

pytestmark = pytest.mark.services


@pytest.fixture
def fresh_database(pg_server):
    """An empty database owned by the application role."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = pg_server.admin("postgres")
    admin.cursor().execute(f"CREATE DATABASE {name} OWNER media_app")
    databases = []

    def connect() -> Database:
        db = Database(
            pg_server.settings(name=name),
            StaticDbCredentials("media_app", "app-password-1"),
            application_name="migration-test",
        )
        databases.append(db)
        return db

    yield connect
    for db in databases:
        db.close()
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_r1_first_run_applies_every_migration_and_second_run_none(fresh_database):
    db = fresh_database()
    versions = [migration.version for migration in load_migrations()]
    assert apply_migrations(db) == versions
    assert apply_migrations(db) == []
    recorded = db.run(lambda c: (c.execute("SELECT version FROM schema_migrations"), c.fetchall()))
    assert [row[0] for row in recorded[1]] == versions


def test_r1_concurrent_runners_apply_each_migration_exactly_once(fresh_database):
    """Several processes starting at once: the advisory lock serialises them."""
    databases = [fresh_database() for _ in range(4)]
    results: list[list[str]] = []
    barrier = threading.Barrier(len(databases))

    def run(db: Database) -> None:
        barrier.wait()
        results.append(apply_migrations(db))

    threads = [threading.Thread(target=run, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(len(r) for r in results) == [0, 0, 0, len(load_migrations())]


def test_r1_a_changed_applied_migration_is_refused(fresh_database, tmp_path: Path):
    db = fresh_database()
    for source in MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / source.name).write_text(source.read_text())
    apply_migrations(db, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(db, tmp_path)


def test_r1_a_failing_migration_leaves_nothing_behind(fresh_database, tmp_path: Path):
    db = fresh_database()
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE t1 (id int);")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE t2 (id int); SELECT no_such_function();")
    with pytest.raises(DatabaseError):
        apply_migrations(db, tmp_path)
    tables = db.run(
        lambda c: (
            c.execute("SELECT to_regclass('t1'), to_regclass('schema_migrations')"),
            c.fetchone(),
        )[1]
    )
    assert tables == [None, None]


@pytest.mark.parametrize(
    ("names", "message"),
    [(["1_bad.sql"], "is not NNN_snake_case"), (["001_a.sql", "001_b.sql"], "share version 001")],
)
def test_r1_badly_named_migration_files_are_refused(tmp_path: Path, names, message):
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def _insert_video(cursor, **overrides):
    values = {"id": uuid.uuid4(), "title": "t", "creator": "c", "source_uri": "a.mp4"} | overrides
    cursor.execute(
        "INSERT INTO videos (id, title, creator, source_uri, status) VALUES (%s, %s, %s, %s, %s)",
        (
            values["id"],
            values["title"],
            values["creator"],
            values["source_uri"],
            values.get("status", "QUEUED"),
        ),
    )
    return values["id"]


@pytest.mark.parametrize(
    "overrides",
    [{"status": "DONE"}, {"title": ""}, {"title": "x" * 201}, {"creator": "y" * 101}],
)
def test_d8_check_constraints_reject_bad_videos(admin_db, overrides):
    with pytest.raises(DatabaseError) as caught:
        _insert_video(admin_db.cursor(), **overrides)
    assert caught.value.args[0]["C"] == "23514"  # check_violation


def test_d8_jobs_reference_videos_and_validate_state(admin_db):
    cursor = admin_db.cursor()
    with pytest.raises(DatabaseError) as missing_video:
        cursor.execute(
            "INSERT INTO jobs (id, video_id) VALUES (%s, %s)", (uuid.uuid4(), uuid.uuid4())
        )
    assert missing_video.value.args[0]["C"] == "23503"  # foreign_key_violation
    video_id = _insert_video(cursor)
    with pytest.raises(DatabaseError) as bad_state:
        cursor.execute(
            "INSERT INTO jobs (id, video_id, state) VALUES (%s, %s, 'DONE')",
            (uuid.uuid4(), video_id),
        )
    assert bad_state.value.args[0]["C"] == "23514"


def test_d8_listing_query_uses_the_keyset_index(admin_db):
    cursor = admin_db.cursor()
    cursor.execute("SET enable_seqscan = off")
    cursor.execute(
        "EXPLAIN SELECT id FROM videos WHERE status = 'QUEUED' ORDER BY uploaded_at DESC, id DESC"
        " LIMIT 21"
    )
    plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "videos_status_uploaded_at_idx" in plan


# --- the start-up check of the API and the worker (R1) ------------------------------------


def _copy_migrations(directory: Path, versions: set[str]) -> Path:
    for source in MIGRATIONS_DIR.glob("*.sql"):
        if source.name[:3] in versions:
            (directory / source.name).write_text(source.read_text())
    return directory


def test_r1_current_schema_check_passes_and_returns_the_newest_version(fresh_database):
    db = fresh_database()
    apply_migrations(db)
    assert require_current_schema(db) == load_migrations()[-1].version == "005"


def test_r1_current_schema_check_names_every_migration_of_an_empty_database(fresh_database):
    with pytest.raises(MigrationError) as caught:
        require_current_schema(fresh_database())
    assert str(caught.value) == (
        "database schema is missing migration(s) 001_videos_and_jobs, 002_publication_lease,"
        " 003_service_roles, 004_service_role_hardening, 005_media_path; the migration"
        " function (run by `pulumi up`) must apply them"
        " before this service starts"
    )


def test_r1_current_schema_check_names_only_the_missing_version(fresh_database, tmp_path: Path):
    db = fresh_database()
    apply_migrations(db, _copy_migrations(tmp_path, {"001", "002"}))
    with pytest.raises(
        MigrationError,
        match=r"missing migration\(s\) 003_service_roles, 004_service_role_hardening,"
        r" 005_media_path;",
    ):
        require_current_schema(db)


def test_r1_current_schema_check_refuses_a_migration_changed_after_it_was_applied(
    fresh_database, tmp_path: Path
):
    db = fresh_database()
    directory = _copy_migrations(tmp_path, {"001", "002", "003"})
    apply_migrations(db, directory)
    (directory / "002_publication_lease.sql").write_text("-- edited\n")
    with pytest.raises(MigrationError, match="migration 002_publication_lease changed after"):
        require_current_schema(db, directory)


def test_r1_a_package_without_migration_files_is_refused(tmp_path: Path):
    """A Lambda package built without services/migrations must not pass the check."""
    with pytest.raises(MigrationError, match="no migration files in"):
        load_migrations(tmp_path)
