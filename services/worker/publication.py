"""Publishing an ended job's outcome (W6), under the job's publication lease: the cache,
then the processed event or the dead-letter copy, then recording that it went out; and the
sweep that publishes the outcomes their worker left behind.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from services.common.aws import EventStream
from services.common.cache import CacheUnavailable, VideoCache
from services.common.db import Database, DatabaseAuthError, DatabaseUnavailable
from services.common.events import JOB_REQUESTED, VIDEO_PROCESSED, Event, new_event
from services.common.settings import WorkerSettings
from services.common.videos import Video
from services.worker.job_queue import JobQueue
from services.worker.jobs import (
    EndedJob,
    Publication,
    claim_publication,
    mark_notified,
    release_publication,
    unpublished_jobs,
)
from services.worker.stop import StopSignal

log = logging.getLogger(__name__)

_SWEEP_BATCH = 10
_SWEEP_SOURCE = "outcome-sweep"  # `source_message_id` of dead-letter copies the sweep sends
_RECORD_RETRY_FIRST_DELAY = 0.1
_RECORD_RETRY_MAX_DELAY = 2.0
_MEDIA_FIELDS = (
    "duration_s",
    "size_bytes",
    "container",
    "video_codec",
    "audio_codec",
    "width",
    "height",
    "bitrate",
)
_PUBLISHED_FIELDS = (
    "published_version",
    "playlist_path",
    "poster_path",
    "key_version",
    "renditions",
)


@dataclass(frozen=True)
class EndedOutcome:
    """An ended job's outcome and the publication lease it is published under."""

    job_id: uuid.UUID
    token: uuid.UUID
    video: Video
    state: str
    reason: str | None


class OutcomePublisher:
    """Announces ended jobs' outcomes, each exactly once as far as the lease allows."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        database: Database,
        stream: EventStream,
        cache: VideoCache,
        queue: JobQueue,
        stop: StopSignal,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._settings = settings
        self._db = database
        self._stream = stream
        self._cache = cache
        self._queue = queue
        self._stop = stop
        self._clock = clock
        self._sleep = sleep
        self._next_sweep = clock()

    def lease(self, token: uuid.UUID) -> Publication:
        """A publication lease as long as the message's: the time a worker has to publish."""
        return Publication(token, self._settings.visibility_timeout_seconds)

    def claim(self, job_id: uuid.UUID, video_id: uuid.UUID, token: uuid.UUID) -> Video | None:
        """Take the publication lease of an ended, unpublished job; None if it is not free."""
        publication = self.lease(token)
        return self._db.run(
            lambda cursor: claim_publication(
                cursor, job_id=job_id, video_id=video_id, publication=publication
            )
        )

    def announce(
        self, outcome: EndedOutcome, *, request_body: str, source_message_id: str, log_fields: dict
    ) -> None:
        """Cache, then the processed event or the dead-letter copy, then record it.

        The caller holds the job's publication lease, so a redelivery meanwhile waits
        instead of publishing too. A failed publication hands the lease back. Once the
        outcome is out, recording that is retried for as long as the lease lasts: giving up
        there is the one way an outcome goes out twice (and why every event carries a stable
        `event_id` for consumers to deduplicate on).
        """
        try:
            self._refresh_cache(outcome.video)
            if outcome.state == "COMPLETED":
                self._stream.put(processed_event(outcome.job_id, outcome.video))
            else:
                self._queue.send_to_dead_letter_queue(
                    request_body, source_message_id, outcome.reason or "failed", outcome.job_id
                )
        except Exception:
            self._release_lease(outcome, log_fields)
            raise
        self._record_published(outcome.job_id, log_fields)

    def refresh_cache_quietly(self, video: Video) -> None:
        try:
            self._refresh_cache(video)
        except CacheUnavailable as error:
            log.warning(
                "cache refresh failed", extra={"video_id": str(video.id), "error": str(error)}
            )

    def _refresh_cache(self, video: Video) -> None:
        self._cache.put(str(video.id), video.to_api(), video.version)

    def _release_lease(self, outcome: EndedOutcome, log_fields: dict) -> None:
        try:
            self._db.run(
                lambda cursor: release_publication(
                    cursor, job_id=outcome.job_id, token=outcome.token
                )
            )
        except Exception as error:
            # The lease lapses on its own; the next delivery (or the sweep) publishes then.
            log.warning(
                "could not release the publication lease", extra={**log_fields, "error": str(error)}
            )

    def _record_published(self, job_id: uuid.UUID, log_fields: dict) -> None:
        give_up_at = self._clock() + self._settings.visibility_timeout_seconds / 2
        if self._stop.deadline is not None:
            give_up_at = min(give_up_at, self._stop.deadline)
        delay = _RECORD_RETRY_FIRST_DELAY
        while True:
            try:
                self._db.run(lambda cursor: mark_notified(cursor, job_id))
                return
            except DatabaseAuthError:
                raise  # not an outage: the worker must restart with new credentials
            except DatabaseUnavailable as error:
                if self._clock() + delay > give_up_at:
                    log.error(
                        "outcome published but not recorded; it will be published again",
                        extra={**log_fields, "error": str(error)},
                    )
                    raise
                log.warning(
                    "recording the publication failed; retrying",
                    extra={**log_fields, "error": str(error)},
                )
                self._sleep(delay)
                delay = min(delay * 2, _RECORD_RETRY_MAX_DELAY)

    # -- the outcome sweep -------------------------------------------------------------------

    def sweep_if_due(self) -> None:
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._settings.visibility_timeout_seconds
        try:
            self.sweep_unpublished()
        except DatabaseAuthError:
            raise
        except Exception as error:
            log.warning("outcome sweep failed", extra={"error": str(error)})

    def sweep_unpublished(self) -> int:
        """Publish the outcomes of ended jobs nobody is publishing any more: a worker died,
        or its message ran out of receives, after ending the job (W6: nothing is lost).
        Only jobs that ended a full visibility timeout ago, so their own messages go first.
        Returns how many outcomes it published."""
        jobs = self._db.run(
            lambda cursor: unpublished_jobs(
                cursor,
                ended_before_seconds=self._settings.visibility_timeout_seconds,
                limit=_SWEEP_BATCH,
            )
        )
        published = 0
        for job in jobs:
            if self._stop.requested:
                break
            published += self._publish_stranded(job)
        return published

    def _publish_stranded(self, job: EndedJob) -> int:
        fields = {"job_id": str(job.job_id), "video_id": str(job.video_id)}
        token = uuid.uuid4()
        try:
            video = self.claim(job.job_id, job.video_id, token)
            if video is None:
                return 0  # published or taken over meanwhile
            self.announce(
                EndedOutcome(job.job_id, token, video, job.state, job.last_error),
                request_body=_job_request(job, video).to_json(),
                source_message_id=_SWEEP_SOURCE,
                log_fields=fields,
            )
        except DatabaseAuthError:
            raise
        except Exception as error:
            log.warning("sweep could not publish", extra={**fields, "error": str(error)})
            return 0
        log.warning("published an outcome its worker left behind", extra=fields)
        return 1


def _job_request(job: EndedJob, video: Video) -> Event:
    """The request a stranded job's dead-letter copy carries, as its own message would."""
    return new_event(
        JOB_REQUESTED,
        video_id=str(job.video_id),
        job_id=str(job.job_id),
        source_uri=video.source_uri,
    )


def processed_event(job_id: uuid.UUID, video: Video) -> Event:
    """`video.processed`: the media facts and the published version with its renditions
    (M6), so consumers need not read the row. Never a key, only the key's version."""
    representation = video.to_api()
    return new_event(
        VIDEO_PROCESSED,
        video_id=str(video.id),
        job_id=str(job_id),
        source_uri=video.source_uri,
        status=video.status,
        media={name: representation[name] for name in _MEDIA_FIELDS},
        published={name: representation[name] for name in _PUBLISHED_FIELDS},
    )
