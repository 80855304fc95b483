"""Video rows: SQL shared by the API and the worker, and their JSON representation."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

STATUSES = ("UPLOADING", "UPLOADED", "QUEUED", "PROCESSING", "COMPLETED", "FAILED", "ABORTED")
"""QUEUED: rows of the first release (registered EFS files); new videos go UPLOADING ->
UPLOADED -> PROCESSING -> COMPLETED | FAILED, or UPLOADING -> ABORTED."""
COLUMNS = (
    "id, title, creator, uploaded_at, status, duration_s, size_bytes, container,"
    " video_codec, audio_codec, width, height, bitrate, source_uri, updated_at,"
    " content_type, upload_size_bytes, progress, published_version, playlist_path,"
    " poster_path, key_version, renditions"
)


@dataclass(frozen=True)
class Video:
    id: uuid.UUID
    title: str
    creator: str
    uploaded_at: datetime
    status: str
    duration_s: float | None
    size_bytes: int | None
    container: str | None
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    bitrate: int | None
    source_uri: str
    updated_at: datetime
    content_type: str | None = None
    upload_size_bytes: int | None = None
    progress: float | None = None
    """0 to 1 while a job transcodes it (M4)."""
    published_version: int | None = None
    playlist_path: str | None = None
    """Key of the published version's master playlist in the media bucket (M6)."""
    poster_path: str | None = None
    key_version: str | None = None
    """Content-key version its per-title key was derived from (M5)."""
    renditions: list[dict[str, Any]] | None = None
    """Per rendition: name, width, height, bitrate, bandwidth, codecs, playlist (M6)."""

    @property
    def version(self) -> int:
        """Monotonic per row (every update sets updated_at = now()); orders cache writes."""
        return _epoch_micros(self.updated_at)

    def to_api(self) -> dict[str, Any]:
        document = asdict(self)
        document["id"] = str(self.id)
        document["uploaded_at"] = iso_utc(self.uploaded_at)
        document["updated_at"] = iso_utc(self.updated_at)
        return document


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch_micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def video_from_row(row: Any) -> Video:
    return Video(*row)


def fetch_video(cursor: Any, video_id: uuid.UUID) -> Video | None:
    cursor.execute(f"SELECT {COLUMNS} FROM videos WHERE id = %s", (video_id,))
    row = cursor.fetchone()
    return None if row is None else video_from_row(row)


def list_videos(
    cursor: Any,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Video]:
    """Newest first, keyset-paginated on (uploaded_at, id)."""
    conditions, parameters = [], []
    if status is not None:
        conditions.append("status = %s")
        parameters.append(status)
    if after is not None:
        conditions.append("(uploaded_at, id) < (%s, %s)")
        parameters.extend(after)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    cursor.execute(
        f"SELECT {COLUMNS} FROM videos{where} ORDER BY uploaded_at DESC, id DESC LIMIT %s",
        (*parameters, limit),
    )
    return [video_from_row(row) for row in cursor.fetchall()]


# -- Uploads (M1): what the API writes while a video's source is uploaded ----------------

SETTLED_STATUSES = frozenset({"COMPLETED", "FAILED", "ABORTED"})
"""Statuses no running job changes: the only ones the API caches, so status and progress
are never served stale."""


@dataclass(frozen=True)
class UploadRecord:
    """A video's upload state and the job its completion wrote (if any)."""

    video_id: uuid.UUID
    status: str
    source_uri: str
    upload_id: str | None
    upload_size_bytes: int | None
    upload_part_size: int | None
    job_id: uuid.UUID | None
    job_state: str | None
    job_requested_at: datetime | None


def insert_uploading_video(
    cursor: Any,
    *,
    video_id: uuid.UUID,
    title: str,
    creator: str,
    source_uri: str,
    content_type: str,
    size_bytes: int,
    part_size: int,
    upload_id: str,
) -> None:
    # ON CONFLICT: the id is fresh per request, so a conflict can only be this same
    # transaction retried after its connection died around COMMIT.
    cursor.execute(
        "INSERT INTO videos (id, title, creator, source_uri, content_type, upload_size_bytes,"
        " upload_part_size, upload_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (video_id, title, creator, source_uri, content_type, size_bytes, part_size, upload_id),
    )


def fetch_upload(cursor: Any, video_id: uuid.UUID) -> UploadRecord | None:
    """The video's upload state with its newest job."""
    cursor.execute(
        "SELECT v.id, v.status, v.source_uri, v.upload_id, v.upload_size_bytes,"
        " v.upload_part_size, j.id, j.state, j.requested_at"
        " FROM videos v LEFT JOIN LATERAL ("
        "   SELECT id, state, requested_at FROM jobs WHERE video_id = v.id"
        "   ORDER BY created_at DESC, id DESC LIMIT 1"
        " ) j ON true WHERE v.id = %s",
        (video_id,),
    )
    row = cursor.fetchone()
    return None if row is None else UploadRecord(*row)


def mark_uploaded_with_job(cursor: Any, *, video_id: uuid.UUID, job_id: uuid.UUID) -> bool:
    """UPLOADING -> UPLOADED and the job, in the caller's transaction; False (and nothing
    written) if the video is no longer UPLOADING (another completion or an abort won)."""
    cursor.execute(
        "UPDATE videos SET status = 'UPLOADED', upload_id = NULL, updated_at = now()"
        " WHERE id = %s AND status = 'UPLOADING'",
        (video_id,),
    )
    if cursor.rowcount != 1:
        return False
    cursor.execute(
        "INSERT INTO jobs (id, video_id) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
        (job_id, video_id),
    )
    return True


def mark_job_requested(cursor: Any, job_id: uuid.UUID) -> None:
    """Record that the job's job.requested event reached the stream (first time only)."""
    cursor.execute(
        "UPDATE jobs SET requested_at = now() WHERE id = %s AND requested_at IS NULL", (job_id,)
    )


def end_upload(cursor: Any, video_id: uuid.UUID, status: str) -> bool:
    """UPLOADING -> `status` (ABORTED, or FAILED when the assembled object is wrong) with
    the upload id cleared; False if the video was no longer UPLOADING."""
    if status not in {"ABORTED", "FAILED"}:
        raise ValueError(f"an upload ends ABORTED or FAILED, not {status}")
    cursor.execute(
        "UPDATE videos SET status = %s, upload_id = NULL, updated_at = now()"
        " WHERE id = %s AND status = 'UPLOADING'",
        (status, video_id),
    )
    return cursor.rowcount == 1
