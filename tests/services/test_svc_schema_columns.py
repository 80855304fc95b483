"""D8 / R1: the migrations declare every column the requirements name (read as text, so this
runs without starting PostgreSQL; test_svc_migrations applies them to a real server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrations"

# D8: per video title, creator, upload time, status, duration, size and the media facts
# extracted (R3: codecs, resolution, bitrate); per job state, attempts, last error, timestamps.
VIDEO_COLUMNS = {
    "title": "text",
    "creator": "text",
    "uploaded_at": "timestamptz",
    "status": "text",
    "duration_s": "double precision",
    "size_bytes": "bigint",
    "video_codec": "text",
    "audio_codec": "text",
    "width": "integer",
    "height": "integer",
    "bitrate": "bigint",
}
JOB_COLUMNS = {
    "state": "text",
    "attempts": "integer",
    "last_error": "text",
    "created_at": "timestamptz",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "updated_at": "timestamptz",
}
NOT_COLUMNS = {"CHECK", "CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN", "EXCLUDE"}


def declared_columns() -> dict[str, dict[str, str]]:
    """`{table: {column: type}}` from every migration's CREATE TABLE and ADD COLUMN."""
    tables: dict[str, dict[str, str]] = {}
    for path in sorted(MIGRATIONS.glob("*.sql")):
        sql = re.sub(r"--[^\n]*", "", path.read_text())
        for table, body in re.findall(
            r"CREATE TABLE (?:IF NOT EXISTS )?(\w+) \((.*?)\n\);", sql, re.DOTALL
        ):
            for line in body.splitlines():
                words = line.strip().rstrip(",").split()
                if words and words[0].upper() not in NOT_COLUMNS and words[0].islower():
                    tables.setdefault(table, {})[words[0]] = _type(words[1:])
        for table, column, rest in re.findall(
            r"ALTER TABLE (\w+) ADD COLUMN (?:IF NOT EXISTS )?(\w+) ([^;,]+)", sql
        ):
            tables.setdefault(table, {})[column] = _type(rest.split())
    return tables


def _type(words: list[str]) -> str:
    kept = []
    for word in words:
        if word.upper() in {"NOT", "NULL", "DEFAULT", "CHECK", "REFERENCES", "PRIMARY"}:
            break
        kept.append(word)
    return " ".join(kept)


def test_d8_migrations_exist():
    assert sorted(p.name for p in MIGRATIONS.glob("*.sql"))[0] == "001_videos_and_jobs.sql"


@pytest.mark.parametrize(("table", "expected"), [("videos", VIDEO_COLUMNS), ("jobs", JOB_COLUMNS)])
def test_d8_schema_declares_each_required_column_with_its_type(table, expected):
    columns = declared_columns()[table]
    assert {name: columns.get(name) for name in expected} == expected


def test_d8_status_and_state_allow_exactly_the_processing_states():
    sql = (MIGRATIONS / "001_videos_and_jobs.sql").read_text()
    states = "('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED')"
    assert f"CHECK (status IN {states})" in sql
    assert f"CHECK (state IN {states})" in sql
