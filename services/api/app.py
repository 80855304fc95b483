"""The API's routes (R2): create a video, fetch one (cache-aside), list by status."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from services.api.http import ApiError, Request, json_response, parse_request
from services.api.validation import (
    encode_cursor,
    parse_create,
    parse_list_query,
    parse_video_id,
)
from services.common.aws import EventStream, StreamUnavailable
from services.common.cache import CacheUnavailable, VideoCache
from services.common.db import Database, DatabaseUnavailable
from services.common.events import JOB_REQUESTED, new_event
from services.common.migrations import MigrationError, require_current_schema
from services.common.secrets import CredentialsError
from services.common.videos import Video, fetch_video, insert_video_with_job, list_videos

log = logging.getLogger(__name__)

VIDEOS = "/videos"
VIDEO = "/videos/{videoId}"
_VIDEO_PATH = re.compile(r"^/videos/(?P<videoId>[^/]+)/?$")
_STREAM_FAILED_REASON = "job.requested event could not be put on the stream"


@dataclass(frozen=True)
class Dependencies:
    database: Database
    stream: EventStream
    cache: Callable[[], VideoCache]
    """Builds the cache on first use (it may need a secret); may raise."""
    media_root: PurePosixPath


class ApiApp:
    def __init__(self, dependencies: Dependencies) -> None:
        self._deps = dependencies
        self._schema_ready = False
        self._cache: VideoCache | None = None
        self._routes: dict[str, dict[str, Callable[[Request], dict[str, Any]]]] = {
            VIDEOS: {"GET": self.list_videos, "POST": self.create_video},
            VIDEO: {"GET": self.get_video},
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
                headers={"Retry-After": "1"},
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
        match = _VIDEO_PATH.match(path)
        if match:
            return VIDEO, match.groupdict()
        raise ApiError(404, "route_not_found", f"no route for {request.path}")

    def create_video(self, request: Request) -> dict[str, Any]:
        command = parse_create(request.json_body(), self._deps.media_root)
        video_id, job_id = uuid.uuid4(), uuid.uuid4()
        self._database().run(
            lambda cursor: insert_video_with_job(
                cursor,
                video_id=video_id,
                job_id=job_id,
                title=command.title,
                creator=command.creator,
                source_uri=command.source_path,
            )
        )
        event = new_event(
            JOB_REQUESTED,
            video_id=str(video_id),
            job_id=str(job_id),
            source_uri=command.source_path,
        )
        try:
            self._deps.stream.put(event)
        except StreamUnavailable as error:
            self._abandon(video_id, job_id, error)
            raise ApiError(
                503,
                "stream_unavailable",
                "the processing request could not be queued and was recorded as failed;"
                " retry the request",
                headers={"Retry-After": "1"},
            ) from error
        log.info("video created", extra={"video_id": str(video_id), "job_id": str(job_id)})
        return json_response(
            202,
            {"video_id": str(video_id), "job_id": str(job_id), "status": "QUEUED"},
            {"Location": f"{VIDEOS}/{video_id}"},
        )

    def _abandon(self, video_id: uuid.UUID, job_id: uuid.UUID, error: Exception) -> None:
        """Mark a request whose event never reached the stream FAILED, so no row waits forever.

        The rows were committed before the put (an event must never name a row that may
        not exist). The guards leave the rows alone if a worker did get the event after all.
        """
        log.error(
            "stream put failed after commit; marking the job failed",
            extra={"video_id": str(video_id), "job_id": str(job_id), "error": str(error)},
        )

        def mark_failed(cursor: Any) -> None:
            cursor.execute(
                "UPDATE jobs SET state = 'FAILED', last_error = %s, finished_at = now(),"
                " notified_at = now(), updated_at = now() WHERE id = %s AND state = 'QUEUED'",
                (_STREAM_FAILED_REASON, job_id),
            )
            cursor.execute(
                "UPDATE videos SET status = 'FAILED', updated_at = now()"
                " WHERE id = %s AND status = 'QUEUED'",
                (video_id,),
            )

        try:
            self._database().run(mark_failed)
        except Exception:
            log.exception(
                "could not mark the abandoned job failed; it stays QUEUED without an event",
                extra={"video_id": str(video_id), "job_id": str(job_id)},
            )

    def get_video(self, request: Request) -> dict[str, Any]:
        video_id = parse_video_id(request.path_parameters.get("videoId"))
        cache = self._cache_or_none()
        cached = self._cached(cache, video_id)
        if cached is not None:
            return json_response(200, cached, {"X-Cache": "HIT"})
        video = self._database().run(lambda cursor: fetch_video(cursor, video_id))
        if video is None:
            raise ApiError(404, "video_not_found", f"no video {video_id}", field="videoId")
        representation = video.to_api()
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
