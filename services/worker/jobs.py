"""Job state transitions (R3), each a guarded UPDATE so a redelivered message, a second
worker or a worker whose lease lapsed can never move a job twice.

QUEUED -> PROCESSING (claim, with a lease token and expiry, and a fresh media version)
PROCESSING -> PROCESSING (the holder extends its lease and records progress)
PROCESSING -> COMPLETED | FAILED (only by the holder of the lease; COMPLETED publishes the
version the claim handed out, in the same UPDATE that ends the job)
PROCESSING -> QUEUED (release by the holder, after a transient error)
A PROCESSING job whose lease expired (its worker died) may be claimed again.
COMPLETED | FAILED -> published (`notified_at`): the outcome left the database (processed
event or dead-letter copy). Until then the worker publishing it holds a publication lease,
so a redelivery meanwhile waits instead of publishing the outcome a second time.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from services.common.videos import COLUMNS, Video, fetch_video, video_from_row
from services.worker.probe import MediaFacts

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED"})
_RELEASE_GUARD = "id = %s AND state = 'PROCESSING' AND lease_token = %s"
_PUBLISH_LEASE_END = "now() + %s * interval '1 second'"


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    video_id: uuid.UUID
    token: uuid.UUID
    attempts: int
    media_version: int
    """The version this attempt writes: media/{video_id}/v{media_version}/ (M6)."""


@dataclass(frozen=True)
class PublishedVersion:
    """A version whose every object is in the media bucket, as the video row records it."""

    version: int
    playlist_path: str
    poster_path: str
    key_version: str
    renditions: list[dict[str, Any]]


@dataclass(frozen=True)
class Publication:
    """The attempt that will publish a job's outcome, and for how long it may take."""

    token: uuid.UUID
    lease_seconds: int


@dataclass(frozen=True)
class EndedJob:
    """A COMPLETED or FAILED job whose outcome has not been published."""

    job_id: uuid.UUID
    video_id: uuid.UUID
    state: str
    last_error: str | None


@dataclass(frozen=True)
class JobStatus:
    state: str
    notified: bool
    lease_seconds_left: float
    last_error: str | None


def claim_job(
    cursor: Any, *, job_id: uuid.UUID, video_id: uuid.UUID, token: uuid.UUID, lease_seconds: int
) -> Claim | None:
    # `lease_token = token` makes the claim idempotent if its COMMIT was cut off and the
    # transaction is run again with the same token.
    cursor.execute(
        "UPDATE jobs SET state = 'PROCESSING', attempts = attempts + 1, lease_token = %s,"
        " lease_expires_at = now() + %s * interval '1 second', started_at = now(),"
        " updated_at = now()"
        " WHERE id = %s AND video_id = %s AND (state = 'QUEUED' OR (state = 'PROCESSING'"
        " AND (lease_expires_at < now() OR lease_token = %s)))"
        " RETURNING attempts",
        (token, lease_seconds, job_id, video_id, token),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    # Every attempt writes a version of its own, so a retry or a redelivery never writes
    # into a prefix an earlier attempt (perhaps still running, its lease lapsed) uses.
    cursor.execute(
        "UPDATE videos SET status = 'PROCESSING', media_versions = media_versions + 1,"
        " progress = 0, updated_at = now() WHERE id = %s RETURNING media_versions",
        (video_id,),
    )
    (version,) = cursor.fetchone()
    cursor.execute("UPDATE jobs SET media_version = %s WHERE id = %s", (version, job_id))
    return Claim(job_id, video_id, token, row[0], version)


def extend_lease(cursor: Any, claim: Claim, lease_seconds: int) -> bool:
    """Push the holder's lease out again; False if the lease is no longer this attempt's."""
    cursor.execute(
        "UPDATE jobs SET lease_expires_at = now() + %s * interval '1 second', updated_at = now()"
        f" WHERE {_RELEASE_GUARD} RETURNING id",
        (lease_seconds, claim.job_id, claim.token),
    )
    return cursor.fetchone() is not None


def record_progress(cursor: Any, claim: Claim, fraction: float) -> Video | None:
    """The running transcode's progress on the video, while this attempt holds the lease."""
    cursor.execute(
        "UPDATE videos SET progress = %s, updated_at = now() WHERE id = %s"
        " AND EXISTS (SELECT 1 FROM jobs WHERE id = %s AND state = 'PROCESSING'"
        f" AND lease_token = %s) RETURNING {COLUMNS}",
        (fraction, claim.video_id, claim.job_id, claim.token),
    )
    row = cursor.fetchone()
    return None if row is None else video_from_row(row)


def job_status(cursor: Any, *, job_id: uuid.UUID, video_id: uuid.UUID) -> JobStatus | None:
    """Where the job is; `lease_seconds_left` covers the processing or the publication lease."""
    cursor.execute(
        "SELECT state, notified_at IS NOT NULL, GREATEST(0, EXTRACT(EPOCH FROM"
        " COALESCE(lease_expires_at, publish_lease_expires_at) - now()))::float8, last_error"
        " FROM jobs WHERE id = %s AND video_id = %s",
        (job_id, video_id),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return JobStatus(row[0], row[1], row[2] or 0.0, row[3])


def complete_job(
    cursor: Any,
    claim: Claim,
    facts: MediaFacts,
    published: PublishedVersion,
    publication: Publication,
) -> Video | None:
    """COMPLETED with the media facts, the published version (M6) and the publication
    lease; None if the lease was lost, and then the version stays unreferenced.

    Running it again in the same attempt (its COMMIT was cut off) finds the job already
    completed under this attempt's publication token and returns the video again.
    """
    cursor.execute(
        "UPDATE jobs SET state = 'COMPLETED', finished_at = COALESCE(finished_at, now()),"
        " lease_token = NULL, lease_expires_at = NULL, publish_token = %s,"
        f" publish_lease_expires_at = {_PUBLISH_LEASE_END}, updated_at = now()"
        " WHERE id = %s AND media_version = %s AND ((state = 'PROCESSING' AND lease_token = %s)"
        " OR (state = 'COMPLETED' AND publish_token = %s)) RETURNING id",
        (publication.token, publication.lease_seconds, claim.job_id, published.version,
         claim.token, publication.token),
    )  # fmt: skip
    if cursor.fetchone() is None:
        return None
    cursor.execute(
        "UPDATE videos SET status = 'COMPLETED', duration_s = %s, size_bytes = %s,"
        " container = %s, video_codec = %s, audio_codec = %s, width = %s, height = %s,"
        " bitrate = %s, published_version = %s, playlist_path = %s, poster_path = %s,"
        " key_version = %s, renditions = %s::jsonb, progress = NULL, updated_at = now()"
        f" WHERE id = %s RETURNING {COLUMNS}",
        (
            facts.duration_s,
            facts.size_bytes,
            facts.container,
            facts.video_codec,
            facts.audio_codec,
            facts.width,
            facts.height,
            facts.bitrate,
            published.version,
            published.playlist_path,
            published.poster_path,
            published.key_version,
            json.dumps(published.renditions),
            claim.video_id,
        ),
    )
    return video_from_row(cursor.fetchone())


def published_version(cursor: Any, video_id: uuid.UUID) -> int | None:
    cursor.execute("SELECT published_version FROM videos WHERE id = %s", (video_id,))
    row = cursor.fetchone()
    return None if row is None else row[0]


def fail_job(
    cursor: Any,
    *,
    job_id: uuid.UUID,
    video_id: uuid.UUID,
    token: uuid.UUID | None,
    reason: str,
    publication: Publication | None,
) -> Video | None:
    """FAILED with the reason; None if another worker holds the job or it already ended.

    Without a token (the job was never claimed in this attempt) only a QUEUED job or one
    whose lease expired may be failed. Without a publication the outcome is already out
    (SQS dead-letters the message itself), so the job is recorded as published at once.
    """
    publish_token = publication.token if publication else None
    cursor.execute(
        "UPDATE jobs SET state = 'FAILED', last_error = %s,"
        " finished_at = COALESCE(finished_at, now()), lease_token = NULL,"
        " lease_expires_at = NULL, publish_token = %s,"
        f" publish_lease_expires_at = {_PUBLISH_LEASE_END},"
        " notified_at = CASE WHEN %s THEN now() END, updated_at = now()"
        " WHERE id = %s AND video_id = %s AND (state = 'QUEUED' OR (state = 'PROCESSING'"
        " AND (lease_token = %s OR lease_expires_at < now()))"
        " OR (state = 'FAILED' AND publish_token = %s))"
        " RETURNING id",
        (reason[:2000], publish_token, publication.lease_seconds if publication else None,
         publication is None, job_id, video_id, token, publish_token),
    )  # fmt: skip
    if cursor.fetchone() is None:
        return None
    cursor.execute(
        "UPDATE videos SET status = 'FAILED', progress = NULL, updated_at = now()"
        f" WHERE id = %s RETURNING {COLUMNS}",
        (video_id,),
    )
    return video_from_row(cursor.fetchone())


def release_job(cursor: Any, claim: Claim, reason: str) -> bool:
    """Give the job back (QUEUED) after a transient error so a retry need not wait for the lease."""
    cursor.execute(
        "UPDATE jobs SET state = 'QUEUED', lease_token = NULL, lease_expires_at = NULL,"
        f" last_error = %s, updated_at = now() WHERE {_RELEASE_GUARD} RETURNING id",
        (reason[:2000], claim.job_id, claim.token),
    )
    return cursor.fetchone() is not None


def claim_publication(
    cursor: Any, *, job_id: uuid.UUID, video_id: uuid.UUID, publication: Publication
) -> Video | None:
    """Take over publishing an ended job's outcome; None while another attempt holds it
    (or it was published meanwhile)."""
    cursor.execute(
        f"UPDATE jobs SET publish_token = %s, publish_lease_expires_at = {_PUBLISH_LEASE_END},"
        " updated_at = now() WHERE id = %s AND video_id = %s"
        " AND state IN ('COMPLETED', 'FAILED') AND notified_at IS NULL"
        " AND (publish_token IS NULL OR publish_lease_expires_at < now() OR publish_token = %s)"
        " RETURNING id",
        (publication.token, publication.lease_seconds, job_id, video_id, publication.token),
    )
    if cursor.fetchone() is None:
        return None
    return fetch_video(cursor, video_id)


def unpublished_jobs(cursor: Any, *, ended_before_seconds: int, limit: int) -> list[EndedJob]:
    """Ended jobs whose outcome never left the database and that nobody is publishing:
    what a worker leaves behind when it dies, or gives up, after ending a job."""
    cursor.execute(
        "SELECT id, video_id, state, last_error FROM jobs"
        " WHERE finished_at < now() - %s * interval '1 second' AND notified_at IS NULL"
        " AND (publish_token IS NULL OR publish_lease_expires_at < now())"
        " ORDER BY finished_at LIMIT %s",
        (ended_before_seconds, limit),
    )
    return [EndedJob(*row) for row in cursor.fetchall()]


def release_publication(cursor: Any, *, job_id: uuid.UUID, token: uuid.UUID) -> None:
    """Give the publication lease back after a failed publication, so the next delivery
    need not wait for it to lapse."""
    cursor.execute(
        "UPDATE jobs SET publish_token = NULL, publish_lease_expires_at = NULL,"
        " updated_at = now() WHERE id = %s AND publish_token = %s",
        (job_id, token),
    )


def mark_notified(cursor: Any, job_id: uuid.UUID) -> None:
    cursor.execute(
        "UPDATE jobs SET notified_at = now(), publish_token = NULL,"
        " publish_lease_expires_at = NULL, updated_at = now()"
        " WHERE id = %s AND notified_at IS NULL",
        (job_id,),
    )
