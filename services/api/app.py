"""The API's routes (R2, M1, M8): create a video with its multipart upload, hand out part
URLs, complete or abort the upload, fetch one video (cache-aside), list by status, and
grant signed playback of a completed one."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.api.http import ApiError, Request, json_response, parse_request
from services.api.playback import PlaybackSigner, SigningKeyError
from services.api.validation import (
    encode_cursor,
    parse_create,
    parse_list_query,
    parse_parts,
    parse_video_id,
)
from services.common.aws import EventStream, StreamUnavailable
from services.common.cache import CacheUnavailable, VideoCache
from services.common.db import Database, DatabaseUnavailable
from services.common.events import JOB_REQUESTED, new_event
from services.common.migrations import MigrationError, require_current_schema
from services.common.secrets import CredentialsError
from services.common.uploads import (
    IngestStore,
    PartPlan,
    PartsRejected,
    StorageUnavailable,
    UploadGone,
    check_parts,
    plan_parts,
)
from services.common.videos import (
    SETTLED_STATUSES,
    UploadRecord,
    Video,
    end_upload,
    fetch_upload,
    fetch_video,
    insert_uploading_video,
    list_videos,
    mark_job_requested,
    mark_uploaded_with_job,
)
from services.contract import PART_URLS_PER_REQUEST, source_key, title_path

log = logging.getLogger(__name__)

VIDEOS = "/videos"
VIDEO = "/videos/{videoId}"
VIDEO_UPLOAD = "/videos/{videoId}/upload"
UPLOAD_PARTS = "/videos/{videoId}/upload/parts"
UPLOAD_COMPLETE = "/videos/{videoId}/upload/complete"
VIDEO_PLAYBACK = "/videos/{videoId}/playback"
_PATHS = (
    (re.compile(r"^/videos/(?P<videoId>[^/]+)$"), VIDEO),
    (re.compile(r"^/videos/(?P<videoId>[^/]+)/upload$"), VIDEO_UPLOAD),
    (re.compile(r"^/videos/(?P<videoId>[^/]+)/upload/parts$"), UPLOAD_PARTS),
    (re.compile(r"^/videos/(?P<videoId>[^/]+)/upload/complete$"), UPLOAD_COMPLETE),
    (re.compile(r"^/videos/(?P<videoId>[^/]+)/playback$"), VIDEO_PLAYBACK),
)
_RETRY = {"Retry-After": "1"}
# Statuses after a completed upload: completing again answers with the job it wrote.
_AFTER_UPLOAD = frozenset({"UPLOADED", "PROCESSING", "COMPLETED", "FAILED"})


@dataclass(frozen=True)
class Uploads:
    """How the API opens and completes uploads (M1), from the stack's settings."""

    store: IngestStore
    max_bytes: int
    content_types: tuple[str, ...]
    url_ttl_seconds: int
    storage_seconds: float
    """Seconds after a request arrives after which it starts no S3 call: what is left is
    needed for the database and the stream before the function's timeout (H4)."""


@dataclass(frozen=True)
class Dependencies:
    database: Database
    stream: EventStream
    cache: Callable[[], VideoCache]
    """Builds the cache on first use (it may need a secret); may raise."""
    uploads: Uploads
    playback: PlaybackSigner | None = None
    """Signs playback grants (M8); None when the stack has no delivery."""


class ApiApp:
    def __init__(self, dependencies: Dependencies) -> None:
        self._deps = dependencies
        self._schema_ready = False
        self._cache: VideoCache | None = None
        self._routes: dict[str, dict[str, Callable[[Request], dict[str, Any]]]] = {
            VIDEOS: {"GET": self.list_videos, "POST": self.create_video},
            VIDEO: {"GET": self.get_video},
            VIDEO_UPLOAD: {"DELETE": self.abort_upload},
            UPLOAD_PARTS: {"POST": self.upload_parts},
            UPLOAD_COMPLETE: {"POST": self.complete_upload},
            VIDEO_PLAYBACK: {"GET": self.playback},
        }

    def close(self) -> None:
        self._deps.database.close()

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            request = parse_request(event)
            return self._route(request)
        except ApiError as error:
            return error.to_response()
        except MigrationError as error:
            log.error("database schema is not current", extra={"error": str(error)})
            return ApiError(
                500, "configuration_error", "the service is misconfigured"
            ).to_response()
        except DatabaseUnavailable as error:
            log.error("database unavailable", extra={"error": str(error)})
            return ApiError(
                503,
                "database_unavailable",
                "the database is unavailable; retry later",
                headers=_RETRY,
            ).to_response()
        except StorageUnavailable as error:
            log.error("storage unavailable", extra={"error": str(error)})
            return ApiError(
                503,
                "storage_unavailable",
                "the upload storage is unavailable; retry later",
                headers=_RETRY,
            ).to_response()
        except Exception:
            log.exception("unhandled error")
            return ApiError(500, "internal_error", "internal error").to_response()

    def _route(self, request: Request) -> dict[str, Any]:
        resource, path_parameters = self._resolve(request)
        methods = self._routes[resource]
        route = methods.get(request.method)
        if route is None:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{request.method or 'this method'} is not allowed on {resource}",
                headers={"Allow": ", ".join(sorted(methods))},
            )
        return route(Request(**{**vars(request), "path_parameters": path_parameters}))

    def _resolve(self, request: Request) -> tuple[str, dict[str, str]]:
        if request.resource in self._routes:
            return request.resource, request.path_parameters
        path = request.path.rstrip("/") or "/"
        if path == VIDEOS:
            return VIDEOS, {}
        for pattern, resource in _PATHS:
            match = pattern.match(path)
            if match:
                return resource, match.groupdict()
        raise ApiError(404, "route_not_found", f"no route for {request.path}")

    # -- POST /videos ------------------------------------------------------------------

    def create_video(self, request: Request) -> dict[str, Any]:
        uploads = self._deps.uploads
        command = parse_create(
            request.json_body(), max_bytes=uploads.max_bytes, content_types=uploads.content_types
        )
        plan = plan_parts(command.size_bytes)
        database = self._database()
        video_id = uuid.uuid4()
        key = source_key(str(video_id))
        deadline = self._storage_deadline(request)
        upload_id = uploads.store.open(key, command.content_type, deadline=deadline)
        try:
            database.run(
                lambda cursor: insert_uploading_video(
                    cursor,
                    video_id=video_id,
                    title=command.title,
                    creator=command.creator,
                    source_uri=key,
                    content_type=command.content_type,
                    size_bytes=command.size_bytes,
                    part_size=plan.part_size,
                    upload_id=upload_id,
                )
            )
        except BaseException:
            self._abort_orphan(key, upload_id, deadline)
            raise
        log.info("video created", extra={"video_id": str(video_id), "parts": plan.part_count})
        return json_response(
            201,
            {
                "video_id": str(video_id),
                "status": "UPLOADING",
                "upload": {
                    "part_size": plan.part_size,
                    "part_count": plan.part_count,
                    "max_parts_per_request": PART_URLS_PER_REQUEST,
                    "expires_in": uploads.url_ttl_seconds,
                },
            },
            {"Location": f"{VIDEOS}/{video_id}"},
        )

    def _abort_orphan(self, key: str, upload_id: str, deadline: float) -> None:
        """The row was not written, so nobody can ever complete this upload: free it now
        (the bucket's lifecycle rule aborts it after days if this fails too)."""
        try:
            self._deps.uploads.store.abort(key, upload_id, deadline=deadline)
        except StorageUnavailable as error:
            log.warning(
                "could not abort an upload whose video was not written; lifecycle will",
                extra={"key": key, "error": str(error)},
            )

    # -- POST /videos/{videoId}/upload/parts --------------------------------------------

    def upload_parts(self, request: Request) -> dict[str, Any]:
        video_id = parse_video_id(request.path_parameters.get("videoId"))
        parts = parse_parts(request.json_body())
        record = self._upload_record(video_id)
        if record.status != "UPLOADING" or record.upload_id is None:
            raise _not_open(record)
        plan = _plan(record)
        for index, part in enumerate(parts):
            if part.part_number > plan.part_count:
                raise ApiError(
                    400,
                    "validation_failed",
                    f"part {part.part_number} is beyond the upload's {plan.part_count} parts",
                    field=f"parts[{index}].part_number",
                )
        ttl = self._deps.uploads.url_ttl_seconds
        signed = [
            self._deps.uploads.store.presign_part(
                record.source_uri, record.upload_id, part.part_number, part.checksum_sha256, ttl
            )
            for part in parts
        ]
        return json_response(
            200,
            {
                "video_id": str(video_id),
                "expires_in": ttl,
                "parts": [
                    {
                        "part_number": part.part_number,
                        "url": part.url,
                        "method": "PUT",
                        "headers": part.headers,
                        "expires_at": part.expires_at.isoformat(timespec="seconds").replace(
                            "+00:00", "Z"
                        ),
                    }
                    for part in signed
                ],
            },
        )

    # -- POST /videos/{videoId}/upload/complete -----------------------------------------

    def complete_upload(self, request: Request) -> dict[str, Any]:
        """Assemble the parts and request processing, exactly once however often this is
        called: the row moves to UPLOADED with its job in one transaction, and a completion
        after that only puts the event again if no put has succeeded yet (requested_at)."""
        video_id = parse_video_id(request.path_parameters.get("videoId"))
        record = self._upload_record(video_id)
        if record.status == "UPLOADING":
            self._assemble(record, self._storage_deadline(request))
            job_id = uuid.uuid4()

            def mark_uploaded(cursor: Any) -> UploadRecord | None:
                mark_uploaded_with_job(cursor, video_id=video_id, job_id=job_id)
                # Read back either way: another completion (or an abort) may have won.
                return fetch_upload(cursor, video_id)

            record = self._database().run(mark_uploaded) or record
        if record.status not in _AFTER_UPLOAD or record.job_id is None:
            raise _not_open(record)
        if record.job_requested_at is None and record.job_state == "QUEUED":
            self._request_processing(record)
        return json_response(
            202,
            {"video_id": str(video_id), "job_id": str(record.job_id), "status": record.status},
            {"Location": f"{VIDEOS}/{video_id}"},
        )

    def _assemble(self, record: UploadRecord, deadline: float) -> None:
        """CompleteMultipartUpload after checking the parts, then the object's size.

        A Complete that S3 carried out although its answer was lost leaves no upload to
        complete: then the object itself tells whether the upload went through."""
        store, plan = self._deps.uploads.store, _plan(record)
        assert record.upload_id is not None and record.upload_size_bytes is not None
        key, size = record.source_uri, record.upload_size_bytes
        try:
            parts = store.list_parts(key, record.upload_id, deadline=deadline)
            issue = check_parts(parts, plan, size)
            if issue is not None:
                raise ApiError(409, issue.code, issue.message, field="parts")
            store.complete(key, record.upload_id, parts, deadline=deadline)
        except PartsRejected as error:
            raise ApiError(
                409,
                "part_size_mismatch",
                "a part changed while the upload was being completed; list, re-upload and"
                " complete again",
                field="parts",
            ) from error
        except UploadGone:
            pass  # completed by an earlier attempt, or aborted: the object says which
        actual = store.object_size(key, deadline=deadline)
        if actual is None:
            # Aborted, or expired by the bucket's lifecycle rule: nothing can complete it.
            self._database().run(lambda cursor: end_upload(cursor, record.video_id, "ABORTED"))
            raise ApiError(
                409, "upload_not_open", "the upload no longer exists; create the video again"
            )
        if actual != size:
            self._database().run(lambda cursor: end_upload(cursor, record.video_id, "FAILED"))
            log.error(
                "assembled object has the wrong size",
                extra={"video_id": str(record.video_id), "size": actual, "declared": size},
            )
            raise ApiError(
                409,
                "upload_size_mismatch",
                f"the uploaded object is {actual} bytes, not the declared {size};"
                " the video is FAILED",
            )

    def _request_processing(self, record: UploadRecord) -> None:
        assert record.job_id is not None
        job_id = record.job_id
        event = new_event(
            JOB_REQUESTED,
            video_id=str(record.video_id),
            job_id=str(job_id),
            source_uri=record.source_uri,
        )
        try:
            self._deps.stream.put(event)
        except StreamUnavailable as error:
            log.error(
                "job.requested could not be put; a retried completion puts it",
                extra={
                    "video_id": str(record.video_id),
                    "job_id": str(job_id),
                    "error": str(error),
                },
            )
            raise ApiError(
                503,
                "stream_unavailable",
                "the upload is complete but processing could not be requested yet;"
                " retry the completion",
                headers=_RETRY,
            ) from error
        self._database().run(lambda cursor: mark_job_requested(cursor, job_id))
        log.info(
            "processing requested", extra={"video_id": str(record.video_id), "job_id": str(job_id)}
        )

    # -- DELETE /videos/{videoId}/upload ------------------------------------------------

    def abort_upload(self, request: Request) -> dict[str, Any]:
        video_id = parse_video_id(request.path_parameters.get("videoId"))
        record = self._upload_record(video_id)
        if record.status == "UPLOADING" and record.upload_id is not None:
            deadline = self._storage_deadline(request)
            store = self._deps.uploads.store
            # Aborted by this call: no completion can succeed any more. Gone already: a
            # completion that reached S3 first leaves the object, an earlier abort or the
            # lifecycle rule leaves none.
            ended = store.abort(record.source_uri, record.upload_id, deadline=deadline)
            if ended or store.object_size(record.source_uri, deadline=deadline) is None:
                self._database().run(lambda cursor: end_upload(cursor, video_id, "ABORTED"))
            record = self._upload_record(video_id)
        if record.status != "ABORTED":
            raise ApiError(
                409,
                "upload_not_open",
                f"the upload cannot be aborted: the video is {record.status}",
            )
        return json_response(200, {"video_id": str(video_id), "status": "ABORTED"})

    # -- GET /videos/{videoId}/playback ---------------------------------------------------

    def playback(self, request: Request) -> dict[str, Any]:
        """A signed grant for a COMPLETED video's published version (M8). Read from the
        database, never the cache, and never cached: every answer is a fresh grant."""
        video_id = parse_video_id(request.path_parameters.get("videoId"))
        video = self._database().run(lambda cursor: fetch_video(cursor, video_id))
        if video is None:
            raise ApiError(404, "video_not_found", f"no video {video_id}", field="videoId")
        if video.status != "COMPLETED":
            raise ApiError(
                409,
                "video_not_ready",
                f"the video is {video.status}; it can be played once it is COMPLETED",
            )
        playlist = video.playlist_path
        # A first-release row can be COMPLETED without renditions; and a grant covers only
        # the title's own prefix, so a playlist anywhere else could not be played with it.
        if playlist is None or not f"/{playlist}".startswith(title_path(str(video_id))):
            raise ApiError(409, "video_not_playable", "the video has no published renditions")
        signer = self._deps.playback
        if signer is None:
            raise ApiError(503, "delivery_not_configured", "this deployment does not deliver media")
        try:
            grant = signer.grant(str(video_id), playlist)
        except CredentialsError as error:
            log.error("playback signing key unavailable", extra={"error": str(error)})
            raise ApiError(
                503,
                "signing_unavailable",
                "playback cannot be granted right now; retry later",
                headers=_RETRY,
            ) from None
        except SigningKeyError as error:
            log.error("playback signing key misconfigured", extra={"error": str(error)})
            raise ApiError(500, "configuration_error", "the service is misconfigured") from None
        log.info(
            "playback granted",
            extra={"video_id": str(video_id), "expires_at": grant.expires_at.isoformat()},
        )
        return json_response(200, grant.to_api())

    # -- shared -------------------------------------------------------------------------

    def _upload_record(self, video_id: uuid.UUID) -> UploadRecord:
        record = self._database().run(lambda cursor: fetch_upload(cursor, video_id))
        if record is None:
            raise ApiError(404, "video_not_found", f"no video {video_id}", field="videoId")
        return record

    def _storage_deadline(self, request: Request) -> float:
        return request.received_at + self._deps.uploads.storage_seconds

    def get_video(self, request: Request) -> dict[str, Any]:
        video_id = parse_video_id(request.path_parameters.get("videoId"))
        cache = self._cache_or_none()
        cached = self._cached(cache, video_id)
        # An entry of an unsettled video (another writer may refresh the cache at every
        # state) is not trusted: its progress may already be stale.
        if cached is not None and cached.get("status") in SETTLED_STATUSES:
            return json_response(200, cached, {"X-Cache": "HIT"})
        video = self._database().run(lambda cursor: fetch_video(cursor, video_id))
        if video is None:
            raise ApiError(404, "video_not_found", f"no video {video_id}", field="videoId")
        representation = video.to_api()
        if video.status not in SETTLED_STATUSES:
            # Upload and processing move status and progress on: always from the database.
            return json_response(200, representation, {"X-Cache": "BYPASS"})
        stored = cache is not None and self._store(cache, video, representation)
        return json_response(200, representation, {"X-Cache": "MISS" if stored else "BYPASS"})

    def list_videos(self, request: Request) -> dict[str, Any]:
        query = parse_list_query(request.query)
        videos = self._database().run(
            lambda cursor: list_videos(
                cursor, status=query.status, limit=query.limit + 1, after=query.after
            )
        )
        page, more = videos[: query.limit], len(videos) > query.limit
        last = page[-1] if page else None
        next_cursor = (
            encode_cursor(last.uploaded_at, last.id, query.status) if more and last else None
        )
        return json_response(
            200, {"items": [video.to_api() for video in page], "next_cursor": next_cursor}
        )

    def _database(self) -> Database:
        """The database, once per execution environment checked to have every migration
        this code needs (the migration function applies them during `pulumi up`)."""
        if not self._schema_ready:
            version = require_current_schema(self._deps.database)
            log.info("database schema is current", extra={"version": version})
            self._schema_ready = True
        return self._deps.database

    def _cache_or_none(self) -> VideoCache | None:
        if self._cache is None:
            try:
                self._cache = self._deps.cache()
            except (CacheUnavailable, CredentialsError) as error:
                log.warning(
                    "cache unavailable; serving from the database", extra={"error": str(error)}
                )
                return None
        return self._cache

    @staticmethod
    def _cached(cache: VideoCache | None, video_id: uuid.UUID) -> dict[str, Any] | None:
        if cache is None:
            return None
        try:
            return cache.get(str(video_id))
        except CacheUnavailable as error:
            log.warning("cache read failed; serving from the database", extra={"error": str(error)})
            return None

    @staticmethod
    def _store(cache: VideoCache, video: Video, representation: dict[str, Any]) -> bool:
        try:
            cache.put(str(video.id), representation, video.version)
        except CacheUnavailable as error:
            log.warning("cache write failed", extra={"error": str(error)})
            return False
        return True


def _plan(record: UploadRecord) -> PartPlan:
    assert record.upload_size_bytes is not None and record.upload_part_size is not None
    size, part_size = record.upload_size_bytes, record.upload_part_size
    return PartPlan(part_size=part_size, part_count=-(-size // part_size))


def _not_open(record: UploadRecord) -> ApiError:
    return ApiError(
        409,
        "upload_not_open",
        f"the video's upload is not open: the video is {record.status}",
    )
