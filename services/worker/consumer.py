"""The job loop (R3, W5, W6): receive from SQS, claim, probe, record, publish, delete.

Every step is safe to repeat: a message may arrive twice, a worker may die anywhere, and
a transient failure just puts the message back (with backoff) for the next attempt,
which picks up where the job's row says it is.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.common.aws import AWS_ERRORS, EventStream
from services.common.cache import CacheUnavailable, VideoCache
from services.common.db import Database, DatabaseAuthError, DatabaseUnavailable
from services.common.events import (
    JOB_REQUESTED,
    VIDEO_PROCESSED,
    EventError,
    new_event,
    parse_message_body,
)
from services.common.settings import WorkerSettings
from services.common.videos import Video
from services.worker.backoff import full_jitter_delay
from services.worker.errors import PermanentJobError, ProbeTimeout
from services.worker.heartbeat import heartbeat_path, write_heartbeat
from services.worker.jobs import (
    TERMINAL_STATES,
    Claim,
    EndedJob,
    Publication,
    claim_job,
    claim_publication,
    complete_job,
    fail_job,
    job_status,
    mark_notified,
    release_job,
    release_publication,
    unpublished_jobs,
)
from services.worker.probe import MediaFacts

log = logging.getLogger(__name__)

Deadline = Callable[[], tuple[float, bool]]
Probe = Callable[[str, Deadline], MediaFacts]
_SWEEP_BATCH = 10
_SWEEP_SOURCE = "outcome-sweep"  # `source_message_id` of dead-letter copies the sweep sends
_RECORD_RETRY_FIRST_DELAY = 0.1
_RECORD_RETRY_MAX_DELAY = 2.0
_RECEIVE_ATTRIBUTES = ["ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"]
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


class StopSignal:
    """Set by SIGTERM; fixes the moment by which the worker must have let go of its work."""

    def __init__(self, stop_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = stop_timeout
        self._clock = clock
        self._event = threading.Event()
        self.deadline: float | None = None

    def request(self) -> None:
        if self.deadline is None:
            self.deadline = self._clock() + self._timeout
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


@dataclass(frozen=True)
class Message:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int
    seconds_since_first_receive: float
    received_at: float

    @classmethod
    def from_sqs(cls, raw: dict[str, Any], received_at: float) -> Message:
        attributes = raw.get("Attributes") or {}
        first_ms = int(attributes.get("ApproximateFirstReceiveTimestamp") or time.time() * 1000)
        return cls(
            message_id=raw["MessageId"],
            body=raw.get("Body") or "",
            receipt_handle=raw["ReceiptHandle"],
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
            seconds_since_first_receive=max(0.0, time.time() - first_ms / 1000),
            received_at=received_at,
        )


@dataclass
class _Attempt:
    message: Message
    job_id: uuid.UUID
    video_id: uuid.UUID
    token: uuid.UUID = field(default_factory=uuid.uuid4)
    claim: Claim | None = None
    ended: bool = False  # the job reached COMPLETED/FAILED; only its outcome is left to do

    @property
    def log_fields(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "video_id": str(self.video_id),
            "receive_count": self.message.receive_count,
        }


@dataclass(frozen=True)
class _Outcome:
    """An ended job's outcome and the publication lease it is published under."""

    job_id: uuid.UUID
    token: uuid.UUID
    video: Video
    state: str
    reason: str | None


@dataclass(frozen=True)
class WorkerDeps:
    database: Database
    sqs: Any
    stream: EventStream
    cache: VideoCache
    probe: Probe
    rng: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class ReceiveFailed(RuntimeError):
    """SQS could not be polled."""


class Worker:
    def __init__(self, settings: WorkerSettings, deps: WorkerDeps, stop: StopSignal) -> None:
        self._settings = settings
        self._deps = deps
        self._db = deps.database
        self._stop = stop
        self._heartbeat = heartbeat_path(settings.scratch_dir)
        self._next_sweep = deps.clock()

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
        messages = self._receive()
        outcomes: list[Outcome] = []
        for index, message in enumerate(messages):
            if self._stop.requested:
                self._release_messages(messages[index:])
                break
            try:
                outcomes.append(self.handle(message))
            except BaseException:
                self._release_messages(messages[index + 1 :])
                raise
            self.beat()
        return outcomes

    def _receive(self) -> list[Message]:
        try:
            response = self._deps.sqs.receive_message(
                QueueUrl=self._settings.jobs_queue_url,
                MaxNumberOfMessages=self._settings.batch_size,
                WaitTimeSeconds=self._settings.receive_wait_seconds,
                VisibilityTimeout=self._settings.visibility_timeout_seconds,
                AttributeNames=_RECEIVE_ATTRIBUTES,
            )
        except AWS_ERRORS as error:
            raise ReceiveFailed(str(error)) from error
        now = self._deps.clock()
        return [Message.from_sqs(raw, now) for raw in response.get("Messages", [])]

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
        self._keep_invisible(attempt.message)
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
        facts = self._deps.probe(claim.source_uri, self._probe_deadline())
        video = self._db.run(
            lambda cursor: complete_job(cursor, claim, facts, self._publication(attempt.token))
        )
        if video is None:
            log.warning("lease lost before completion", extra=attempt.log_fields)
            return Outcome.LEASE_LOST
        self._publish_outcome(attempt, video, "COMPLETED", None)
        return Outcome.COMPLETED

    def _not_claimed(self, attempt: _Attempt) -> Outcome:
        status = self._db.run(
            lambda cursor: job_status(cursor, job_id=attempt.job_id, video_id=attempt.video_id)
        )
        if status is None:
            return self._dead_letter_unreadable(attempt.message, "no such job for this video")
        if status.state in TERMINAL_STATES and status.notified:
            self._delete(attempt.message)
            return Outcome.DUPLICATE
        if status.state in TERMINAL_STATES:
            video = self._claim_publication(attempt.job_id, attempt.video_id, attempt.token)
            if video is not None:
                self._publish_outcome(attempt, video, status.state, status.last_error)
                return Outcome.DUPLICATE
            if self._last_receive(attempt.message):
                # Deferring now would let SQS dead-letter a request whose job has ended; its
                # outcome is published by the worker holding the lease, or else by the sweep.
                self._delete(attempt.message)
                return Outcome.DUPLICATE
        # Another worker holds a live lease (on the job, or on publishing its outcome):
        # look again once it would have lapsed.
        self._change_visibility(attempt.message, math.ceil(status.lease_seconds_left) + 1)
        return Outcome.DEFERRED

    def _claim_publication(
        self, job_id: uuid.UUID, video_id: uuid.UUID, token: uuid.UUID
    ) -> Video | None:
        publication = self._publication(token)
        return self._db.run(
            lambda cursor: claim_publication(
                cursor, job_id=job_id, video_id=video_id, publication=publication
            )
        )

    def _last_receive(self, message: Message) -> bool:
        return message.receive_count >= self._settings.max_receive_count

    def _publication(self, token: uuid.UUID) -> Publication:
        """A publication lease as long as the message's: the time a worker has to publish."""
        return Publication(token, self._settings.visibility_timeout_seconds)

    def _probe_deadline(self) -> Deadline:
        job_deadline = self._deps.clock() + self._settings.job_timeout_seconds

        def deadline() -> tuple[float, bool]:
            stop_deadline = self._stop.deadline
            if stop_deadline is not None and stop_deadline < job_deadline:
                return stop_deadline, True
            return job_deadline, False

        return deadline

    def _fail_permanently(self, attempt: _Attempt, reason: str) -> Outcome:
        log.warning("job failed permanently", extra={**attempt.log_fields, "reason": reason})
        video = self._db.run(
            lambda cursor: fail_job(
                cursor,
                job_id=attempt.job_id,
                video_id=attempt.video_id,
                token=attempt.claim.token if attempt.claim else None,
                reason=reason,
                publication=self._publication(attempt.token),
            )
        )
        if video is None:
            return Outcome.LEASE_LOST
        self._publish_outcome(attempt, video, "FAILED", reason)
        return Outcome.FAILED

    def _publish_outcome(
        self, attempt: _Attempt, video: Video, state: str, reason: str | None
    ) -> None:
        """Publish the ended job's outcome (see `_announce`), then delete the message."""
        attempt.ended = True
        self._announce(
            _Outcome(attempt.job_id, attempt.token, video, state, reason),
            request_body=attempt.message.body,
            source_message_id=attempt.message.message_id,
            log_fields=attempt.log_fields,
        )
        self._delete(attempt.message)

    def _announce(
        self, outcome: _Outcome, *, request_body: str, source_message_id: str, log_fields: dict
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
                self._deps.stream.put(self._processed_event(outcome.job_id, outcome.video))
            else:
                self._send_to_dead_letter_queue(
                    request_body, source_message_id, outcome.reason or "failed", outcome.job_id
                )
        except Exception:
            self._release_publication(outcome, log_fields)
            raise
        self._record_published(outcome.job_id, log_fields)

    def _release_publication(self, outcome: _Outcome, log_fields: dict) -> None:
        try:
            self._db.run(
                lambda cursor: release_publication(
                    cursor, job_id=outcome.job_id, token=outcome.token
                )
            )
        except Exception as error:
            # The lease lapses on its own; the next delivery (or the sweep) publishes then.
            log.warning(
                "could not release the publication lease",
                extra={**log_fields, "error": str(error)},
            )

    def _record_published(self, job_id: uuid.UUID, log_fields: dict) -> None:
        give_up_at = self._deps.clock() + self._settings.visibility_timeout_seconds / 2
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
                if self._deps.clock() + delay > give_up_at:
                    log.error(
                        "outcome published but not recorded; it will be published again",
                        extra={**log_fields, "error": str(error)},
                    )
                    raise
                log.warning(
                    "recording the publication failed; retrying",
                    extra={**log_fields, "error": str(error)},
                )
                self._deps.sleep(delay)
                delay = min(delay * 2, _RECORD_RETRY_MAX_DELAY)

    # -- the outcome sweep -------------------------------------------------------------------

    def sweep_if_due(self) -> None:
        now = self._deps.clock()
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
            video = self._claim_publication(job.job_id, job.video_id, token)
            if video is None:
                return 0  # published or taken over meanwhile
            request = new_event(
                JOB_REQUESTED,
                video_id=str(job.video_id),
                job_id=str(job.job_id),
                source_uri=video.source_uri,
            )
            self._announce(
                _Outcome(job.job_id, token, video, job.state, job.last_error),
                request_body=request.to_json(),
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

    @staticmethod
    def _processed_event(job_id: uuid.UUID, video: Video) -> Any:
        representation = video.to_api()
        return new_event(
            VIDEO_PROCESSED,
            video_id=str(video.id),
            job_id=str(job_id),
            source_uri=video.source_uri,
            status=video.status,
            media={name: representation[name] for name in _MEDIA_FIELDS},
        )

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
                self._delete(attempt.message)
                return Outcome.HANDED_OVER
            return self._give_up(attempt, reason)
        if self._stop.requested or (isinstance(error, ProbeTimeout) and error.shutting_down):
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
            video = self._db.run(
                lambda cursor: fail_job(
                    cursor,
                    job_id=attempt.job_id,
                    video_id=attempt.video_id,
                    token=attempt.claim.token if attempt.claim else None,
                    reason=final_reason,
                    publication=None,  # SQS dead-letters the message itself
                )
            )
        except Exception:
            log.exception(
                "could not record the failure; SQS dead-letters the message anyway",
                extra=attempt.log_fields,
            )
            video = None
        if video is not None:
            self._refresh_cache_quietly(video)
        # Visible at once, so the next receive moves it to the dead-letter queue.
        self._change_visibility(message, 0)
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
        self._change_visibility(attempt.message, visibility)

    def _release_messages(self, messages: list[Message]) -> None:
        for message in messages:
            self._change_visibility(message, 0)

    def _dead_letter_unreadable(self, message: Message, reason: str) -> Outcome:
        log.error("unreadable message", extra={"message_id": message.message_id, "reason": reason})
        try:
            self._send_to_dead_letter_queue(message.body, message.message_id, reason, None)
        except AWS_ERRORS as error:
            log.warning("dead-letter send failed", extra={"error": str(error)})
            self._change_visibility(message, self._backoff(message))
            return Outcome.RETRY
        self._delete(message)
        return Outcome.POISON

    def _send_to_dead_letter_queue(
        self, body: str, source_message_id: str, reason: str, job_id: uuid.UUID | None
    ) -> None:
        attributes = {
            "failure_reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
            "source_message_id": {"DataType": "String", "StringValue": source_message_id},
        }
        if job_id is not None:
            attributes["job_id"] = {"DataType": "String", "StringValue": str(job_id)}
        self._deps.sqs.send_message(
            QueueUrl=self._settings.dead_letter_queue_url,
            MessageBody=body or "{}",
            MessageAttributes=attributes,
        )

    def _refresh_cache(self, video: Video) -> None:
        self._deps.cache.put(str(video.id), video.to_api(), video.version)

    def _refresh_cache_quietly(self, video: Video) -> None:
        try:
            self._refresh_cache(video)
        except CacheUnavailable as error:
            log.warning(
                "cache refresh failed", extra={"video_id": str(video.id), "error": str(error)}
            )

    def _keep_invisible(self, message: Message) -> None:
        # A batch is worked through in order; renew the visibility of a message that waited.
        waited = self._deps.clock() - message.received_at
        if waited > self._settings.visibility_timeout_seconds / 2:
            self._change_visibility(message, self._settings.visibility_timeout_seconds)

    def _change_visibility(self, message: Message, seconds: int) -> None:
        try:
            self._deps.sqs.change_message_visibility(
                QueueUrl=self._settings.jobs_queue_url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=max(0, int(seconds)),
            )
        except AWS_ERRORS as error:
            # The message reappears when its current visibility runs out instead.
            log.warning(
                "change visibility failed",
                extra={"message_id": message.message_id, "error": str(error)},
            )

    def _delete(self, message: Message) -> None:
        try:
            self._deps.sqs.delete_message(
                QueueUrl=self._settings.jobs_queue_url, ReceiptHandle=message.receipt_handle
            )
        except AWS_ERRORS as error:
            # A redelivery finds the job ended and notified, and deletes it then.
            log.warning(
                "delete failed", extra={"message_id": message.message_id, "error": str(error)}
            )
