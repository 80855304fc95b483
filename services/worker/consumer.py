"""The job loop (R3, W5, W6, M3-M6): receive from SQS, claim (with a fresh media version),
fetch the source to scratch, validate, transcode, upload the version, record it, announce
it, delete the message.

Every step is safe to repeat: a message may arrive twice, a worker may die anywhere, and
a transient failure just puts the message back (with backoff) for the next attempt,
which picks up where the job's row says it is. An attempt writes only its own version's
prefix, and the version becomes visible in the one guarded UPDATE that ends the job, so a
retried or redelivered job never exposes a half-written version (M6).

This module decides what happens to each message; `job_queue` does the SQS calls,
`storage` the S3 transfers, `lease` keeps a long job's leases, and `publication`
announces ended jobs' outcomes.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from services.common.aws import AWS_ERRORS, EventStream
from services.common.cache import CacheUnavailable, VideoCache
from services.common.db import Database, DatabaseAuthError
from services.common.events import JOB_REQUESTED, EventError, parse_message_body
from services.common.settings import WorkerSettings
from services.common.videos import Video
from services.contract import media_prefix
from services.worker.backoff import full_jitter_delay
from services.worker.errors import PermanentJobError
from services.worker.heartbeat import heartbeat_path, write_heartbeat
from services.worker.job_queue import JobQueue, Message, ReceiveFailed
from services.worker.jobs import (
    TERMINAL_STATES,
    Claim,
    Publication,
    PublishedVersion,
    claim_job,
    complete_job,
    extend_lease,
    fail_job,
    job_status,
    published_version,
    record_progress,
    release_job,
)
from services.worker.lease import LeaseKeeper, SerialDatabase
from services.worker.probe import MediaFacts
from services.worker.publication import EndedOutcome, OutcomePublisher
from services.worker.stop import StopSignal
from services.worker.storage import MediaStorage
from services.worker.transcode import TranscodeResult

__all__ = ["Message", "Outcome", "ReceiveFailed", "StopSignal", "Worker", "WorkerDeps"]

log = logging.getLogger(__name__)

Deadline = Callable[[], tuple[float, bool]]
Validate = Callable[..., MediaFacts]
"""`validate(source, deadline=...)`: transcode.validate_source with the limits bound."""
Transcode = Callable[..., TranscodeResult]
"""transcode.transcode's signature."""
SCRATCH_JOBS = "jobs"
"""Under SCRATCH_DIR: one directory per job attempt, removed whatever the outcome."""


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # the job had already ended; the message was only cleaned up
    DEFERRED = "deferred"  # another worker holds the job's lease
    RETRY = "retry"  # transient error; the message comes back after a backoff
    RELEASED = "released"  # shutting down; the message is visible again at once
    POISON = "poison"  # unreadable message, sent to the dead-letter queue
    LEASE_LOST = "lease_lost"  # the lease expired and another worker took the job over
    HANDED_OVER = "handed_over"  # ended job, last receive: its outcome is left to the sweep


@dataclass
class _Attempt:
    message: Message
    job_id: uuid.UUID
    video_id: uuid.UUID
    token: uuid.UUID = field(default_factory=uuid.uuid4)
    claim: Claim | None = None
    uploading: bool = False  # objects of the claim's version may exist in the media bucket
    ended: bool = False  # the job reached COMPLETED/FAILED; only its outcome is left to do

    @property
    def log_fields(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "video_id": str(self.video_id),
            "receive_count": self.message.receive_count,
        }


@dataclass(frozen=True)
class WorkerDeps:
    database: Database
    sqs: Any
    stream: EventStream
    cache: VideoCache
    storage: MediaStorage
    keyring: Any
    """`.get()` returns the content Keyring (keyring.KeyringSource)."""
    validate: Validate
    transcode: Transcode
    rng: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class Worker:
    def __init__(self, settings: WorkerSettings, deps: WorkerDeps, stop: StopSignal) -> None:
        self._settings = settings
        self._deps = deps
        # The lease keeper's thread writes while a job runs: one transaction at a time.
        self._db = SerialDatabase(deps.database)
        self._storage = deps.storage
        self._stop = stop
        self._heartbeat = heartbeat_path(settings.scratch_dir)
        self._queue = JobQueue(deps.sqs, settings, deps.clock)
        self._publisher = OutcomePublisher(
            settings,
            database=self._db,
            stream=deps.stream,
            cache=deps.cache,
            queue=self._queue,
            stop=stop,
            clock=deps.clock,
            sleep=deps.sleep,
        )

    def run(self) -> int:
        """Poll until SIGTERM; 0 on a clean stop. DatabaseAuthError propagates to main."""
        failures = 0
        while not self._stop.requested:
            self.beat()
            try:
                self.poll_once()
                failures = 0
            except ReceiveFailed as error:
                failures += 1
                delay = self._deps.rng() * min(30.0, 2.0**failures)
                log.warning(
                    "receive failed; backing off", extra={"error": str(error), "delay_s": delay}
                )
                self._stop.wait(delay)
            self.sweep_if_due()
        log.info("stop requested; exiting")
        return 0

    def beat(self) -> None:
        write_heartbeat(self._heartbeat)

    def poll_once(self) -> list[Outcome]:
        messages = self._queue.receive()
        outcomes: list[Outcome] = []
        for index, message in enumerate(messages):
            if self._stop.requested:
                self._queue.release(messages[index:])
                break
            try:
                outcomes.append(self.handle(message))
            except BaseException:
                self._queue.release(messages[index + 1 :])
                raise
            self.beat()
        return outcomes

    def sweep_if_due(self) -> None:
        self._publisher.sweep_if_due()

    def sweep_unpublished(self) -> int:
        """Publish the outcomes of ended jobs nobody is publishing any more (W6); returns
        how many it published."""
        return self._publisher.sweep_unpublished()

    def handle(self, message: Message) -> Outcome:
        try:
            event = parse_message_body(message.body)
            if event.type != JOB_REQUESTED:
                raise EventError(f"unexpected event type {event.type!r} on the jobs queue")
        except EventError as error:
            return self._dead_letter_unreadable(message, str(error))
        attempt = _Attempt(message, uuid.UUID(event.job_id), uuid.UUID(event.video_id))
        try:
            try:
                outcome = self._process(attempt)
            except PermanentJobError as error:
                outcome = self._fail_permanently(attempt, str(error))
        except DatabaseAuthError:
            self._release(attempt, "database rejected the credentials", visibility=0)
            raise
        except Exception as error:
            outcome = self._retry_later(attempt, error)
        log.info("message handled", extra={**attempt.log_fields, "outcome": str(outcome)})
        return outcome

    def _process(self, attempt: _Attempt) -> Outcome:
        self._queue.keep_invisible(attempt.message)
        claim = self._db.run(
            lambda cursor: claim_job(
                cursor,
                job_id=attempt.job_id,
                video_id=attempt.video_id,
                token=attempt.token,
                lease_seconds=self._settings.visibility_timeout_seconds,
            )
        )
        if claim is None:
            return self._not_claimed(attempt)
        attempt.claim = claim
        completing = False
        try:
            with self._job_directory(claim) as workdir:
                produced = self._produce(attempt, claim, workdir)
            if produced is None:
                self._discard_version(attempt, certain=True)
                return Outcome.LEASE_LOST
            facts, published = produced
            publication = self._publisher.lease(attempt.token)
            completing = True  # from here the version may be referenced by the row
            video = self._db.run(
                lambda cursor: complete_job(cursor, claim, facts, published, publication)
            )
        except BaseException:
            self._discard_version(attempt, certain=not completing)
            raise
        if video is None:
            log.warning("lease lost before completion", extra=attempt.log_fields)
            self._discard_version(attempt, certain=True)
            return Outcome.LEASE_LOST
        self._after_publication(claim)
        self._publish_outcome(attempt, video, "COMPLETED", None)
        return Outcome.COMPLETED

    def _produce(
        self, attempt: _Attempt, claim: Claim, workdir: Path
    ) -> tuple[MediaFacts, PublishedVersion] | None:
        """Fetch, validate, transcode and upload under the claim's version, keeping the
        leases meanwhile; None if the lease was lost (another worker has the job)."""
        video_id, media = str(claim.video_id), self._settings.media
        deadline = self._job_deadline()
        keeper = LeaseKeeper(
            extend=partial(self._extend_lease, attempt, claim),
            record_progress=partial(self._record_progress, claim),
            lease_interval=self._settings.visibility_timeout_seconds / 3,
            log_fields=attempt.log_fields,
            clock=self._deps.clock,
        )
        with keeper:

            def stop_requested() -> bool:
                return self._stop.requested or keeper.lost

            try:
                source = workdir / "source"
                self._storage.fetch_source(
                    video_id, source, deadline=deadline, stop_requested=stop_requested
                )
                facts = self._deps.validate(source, deadline=deadline)
                key = self._deps.keyring.get().title_key(video_id)
                output = workdir / "output"
                output.mkdir()
                result = self._deps.transcode(
                    source, facts, output, video_id=video_id, key=key, settings=media,
                    deadline=deadline, on_progress=keeper.on_progress,
                    stop_requested=stop_requested,
                )  # fmt: skip
                if keeper.lost:
                    return None
                attempt.uploading = True
                self._storage.publish(
                    result, output, video_id=video_id, version=claim.media_version,
                    deadline=deadline, stop_requested=lambda: keeper.lost,
                )  # fmt: skip
            except Exception:
                if keeper.lost:
                    return None  # whatever went wrong, the job is no longer this attempt's
                raise
            if keeper.lost:
                return None
        return result.facts, _published_version(claim, result, key.version)

    def _extend_lease(self, attempt: _Attempt, claim: Claim) -> bool:
        seconds = self._settings.visibility_timeout_seconds
        held = self._db.run(lambda cursor: extend_lease(cursor, claim, seconds))
        if held:
            self._queue.change_visibility(attempt.message, seconds)
        return held

    def _record_progress(self, claim: Claim, fraction: float) -> None:
        video = self._db.run(lambda cursor: record_progress(cursor, claim, fraction))
        if video is not None:
            self._publisher.refresh_cache_quietly(video)  # GET /videos/{id} shows it

    def _after_publication(self, claim: Claim) -> None:
        """Best effort once the version is recorded: the source if configured (M2), and
        what earlier attempts of this video left unreferenced."""
        if self._settings.media.delete_source_after_processing:
            self._storage.delete_source(str(claim.video_id))
        if claim.media_version > 1:
            self._storage.discard_other_versions(str(claim.video_id), keep=claim.media_version)

    def _discard_version(self, attempt: _Attempt, *, certain: bool) -> None:
        """Delete what this attempt uploaded of its version, once it is sure no row refers
        to it; `certain` when the completing UPDATE never ran or was refused."""
        claim = attempt.claim
        if claim is None or not attempt.uploading:
            return
        if not certain:
            try:
                current = self._db.run(lambda cursor: published_version(cursor, claim.video_id))
            except Exception as error:
                log.warning(
                    "version left in place: cannot tell whether it was published",
                    extra={**attempt.log_fields, "error": str(error)},
                )
                return
            if current == claim.media_version:
                return
        prefix = media_prefix(str(claim.video_id), claim.media_version)
        deleted = self._storage.discard(prefix)
        log.info(
            "unpublished version discarded",
            extra={**attempt.log_fields, "prefix": prefix, "objects": deleted},
        )

    @contextlib.contextmanager
    def _job_directory(self, claim: Claim) -> Iterator[Path]:
        root = Path(self._settings.scratch_dir) / SCRATCH_JOBS
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{claim.job_id}-", dir=root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _not_claimed(self, attempt: _Attempt) -> Outcome:
        status = self._db.run(
            lambda cursor: job_status(cursor, job_id=attempt.job_id, video_id=attempt.video_id)
        )
        if status is None:
            return self._dead_letter_unreadable(attempt.message, "no such job for this video")
        if status.state in TERMINAL_STATES and status.notified:
            self._queue.delete(attempt.message)
            return Outcome.DUPLICATE
        if status.state in TERMINAL_STATES:
            video = self._publisher.claim(attempt.job_id, attempt.video_id, attempt.token)
            if video is not None:
                self._publish_outcome(attempt, video, status.state, status.last_error)
                return Outcome.DUPLICATE
            if self._last_receive(attempt.message):
                # Deferring now would let SQS dead-letter a request whose job has ended; its
                # outcome is published by the worker holding the lease, or else by the sweep.
                self._queue.delete(attempt.message)
                return Outcome.DUPLICATE
        # Another worker holds a live lease (on the job, or on publishing its outcome):
        # look again once it would have lapsed.
        self._queue.change_visibility(attempt.message, math.ceil(status.lease_seconds_left) + 1)
        return Outcome.DEFERRED

    def _last_receive(self, message: Message) -> bool:
        return message.receive_count >= self._settings.max_receive_count

    def _job_deadline(self) -> Deadline:
        job_deadline = self._deps.clock() + self._settings.job_timeout_seconds

        def deadline() -> tuple[float, bool]:
            stop_deadline = self._stop.deadline
            if stop_deadline is not None and stop_deadline < job_deadline:
                return stop_deadline, True
            return job_deadline, False

        return deadline

    def _record_failure(
        self, attempt: _Attempt, reason: str, publication: Publication | None
    ) -> Video | None:
        """Mark the attempt's job FAILED under its claim (`fail_job`); None if another worker
        holds the job or it already ended."""
        return self._db.run(
            lambda cursor: fail_job(
                cursor,
                job_id=attempt.job_id,
                video_id=attempt.video_id,
                token=attempt.claim.token if attempt.claim else None,
                reason=reason,
                publication=publication,
            )
        )

    def _fail_permanently(self, attempt: _Attempt, reason: str) -> Outcome:
        log.warning("job failed permanently", extra={**attempt.log_fields, "reason": reason})
        video = self._record_failure(attempt, reason, self._publisher.lease(attempt.token))
        if video is None:
            return Outcome.LEASE_LOST
        self._publish_outcome(attempt, video, "FAILED", reason)
        return Outcome.FAILED

    def _publish_outcome(
        self, attempt: _Attempt, video: Video, state: str, reason: str | None
    ) -> None:
        """Publish the ended job's outcome, then delete the message."""
        attempt.ended = True
        self._publisher.announce(
            EndedOutcome(attempt.job_id, attempt.token, video, state, reason),
            request_body=attempt.message.body,
            source_message_id=attempt.message.message_id,
            log_fields=attempt.log_fields,
        )
        self._queue.delete(attempt.message)

    def _retry_later(self, attempt: _Attempt, error: Exception) -> Outcome:
        reason = f"{type(error).__name__}: {error}"
        expected = isinstance(error, (*AWS_ERRORS, CacheUnavailable))
        expected = expected or type(error).__module__.startswith("services.")
        log.warning(
            "transient failure",
            extra={**attempt.log_fields, "error": reason},
            exc_info=not expected,  # a stack trace only for what nobody anticipated
        )
        # On the last allowed receive SQS dead-letters the message whatever happens next,
        # so record FAILED even when shutting down.
        if self._last_receive(attempt.message):
            if attempt.ended:
                # The job has ended; only its outcome is missing. Dead-lettering the request
                # would report a failure that did not happen: the sweep publishes it instead.
                log.warning("outcome left to the sweep", extra=attempt.log_fields)
                self._queue.delete(attempt.message)
                return Outcome.HANDED_OVER
            return self._give_up(attempt, reason)
        if self._stop.requested or getattr(error, "shutting_down", False):
            self._release(attempt, reason, visibility=0)
            return Outcome.RELEASED
        self._release(attempt, reason, visibility=self._backoff(attempt.message))
        return Outcome.RETRY

    def _backoff(self, message: Message) -> int:
        return full_jitter_delay(
            message.receive_count,
            base=self._settings.retry_base_seconds,
            cap=self._settings.retry_max_seconds,
            seconds_since_first_receive=message.seconds_since_first_receive,
            rng=self._deps.rng,
        )

    def _give_up(self, attempt: _Attempt, reason: str) -> Outcome:
        """Last allowed receive: record FAILED now, because SQS dead-letters the message next."""
        message = attempt.message
        final_reason = f"gave up after {message.receive_count} attempts: {reason}"
        try:
            # No publication lease: SQS dead-letters the message itself.
            video = self._record_failure(attempt, final_reason, None)
        except Exception:
            log.exception(
                "could not record the failure; SQS dead-letters the message anyway",
                extra=attempt.log_fields,
            )
            video = None
        if video is not None:
            self._publisher.refresh_cache_quietly(video)
        # Visible at once, so the next receive moves it to the dead-letter queue.
        self._queue.change_visibility(message, 0)
        return Outcome.FAILED

    def _release(self, attempt: _Attempt, reason: str, *, visibility: int) -> None:
        claim = attempt.claim
        if claim is not None:
            try:
                self._db.run(lambda cursor: release_job(cursor, claim, reason))
            except Exception as error:
                # The lease still expires on its own; the job can be claimed after that.
                log.warning(
                    "could not release the job", extra={**attempt.log_fields, "error": str(error)}
                )
        self._queue.change_visibility(attempt.message, visibility)

    def _dead_letter_unreadable(self, message: Message, reason: str) -> Outcome:
        log.error("unreadable message", extra={"message_id": message.message_id, "reason": reason})
        try:
            self._queue.send_to_dead_letter_queue(message.body, message.message_id, reason, None)
        except AWS_ERRORS as error:
            log.warning("dead-letter send failed", extra={"error": str(error)})
            self._queue.change_visibility(message, self._backoff(message))
            return Outcome.RETRY
        self._queue.delete(message)
        return Outcome.POISON


def _published_version(claim: Claim, result: TranscodeResult, key_version: str) -> PublishedVersion:
    prefix = media_prefix(str(claim.video_id), claim.media_version)
    return PublishedVersion(
        version=claim.media_version,
        playlist_path=prefix + result.master_playlist,
        poster_path=prefix + result.poster,
        key_version=key_version,
        renditions=[
            {
                "name": rendition.name,
                "width": rendition.width,
                "height": rendition.height,
                "bitrate": rendition.bitrate,
                "bandwidth": rendition.bandwidth,
                "codecs": rendition.codecs,
                "playlist": prefix + rendition.playlist,
            }
            for rendition in result.renditions
        ],
    )
