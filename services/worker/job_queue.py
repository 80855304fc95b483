"""The jobs queue as the worker uses it (R3, W5): receive, keep a message invisible, let it
go again, delete it, and copy a request to the dead-letter queue.

Only receiving and dead-letter copies raise. A failed visibility change or delete is logged
and left to SQS: the message simply reappears when its visibility runs out.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.aws import AWS_ERRORS
from services.common.settings import WorkerSettings

log = logging.getLogger(__name__)

_RECEIVE_ATTRIBUTES = ["ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"]
_MAX_REASON_CHARS = 1000


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


class ReceiveFailed(RuntimeError):
    """SQS could not be polled."""


class JobQueue:
    """The jobs queue and its dead-letter queue, through one SQS client."""

    def __init__(self, sqs: Any, settings: WorkerSettings, clock: Callable[[], float]) -> None:
        self._sqs = sqs
        self._settings = settings
        self._clock = clock

    def receive(self) -> list[Message]:
        """One long poll; each message invisible for a visibility timeout."""
        try:
            response = self._sqs.receive_message(
                QueueUrl=self._settings.jobs_queue_url,
                MaxNumberOfMessages=self._settings.batch_size,
                WaitTimeSeconds=self._settings.receive_wait_seconds,
                VisibilityTimeout=self._settings.visibility_timeout_seconds,
                AttributeNames=_RECEIVE_ATTRIBUTES,
            )
        except AWS_ERRORS as error:
            raise ReceiveFailed(str(error)) from error
        now = self._clock()
        return [Message.from_sqs(raw, now) for raw in response.get("Messages", [])]

    def keep_invisible(self, message: Message) -> None:
        # A batch is worked through in order; renew the visibility of a message that waited.
        waited = self._clock() - message.received_at
        if waited > self._settings.visibility_timeout_seconds / 2:
            self.change_visibility(message, self._settings.visibility_timeout_seconds)

    def release(self, messages: list[Message]) -> None:
        """Make messages visible again at once, for another worker to take."""
        for message in messages:
            self.change_visibility(message, 0)

    def change_visibility(self, message: Message, seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(
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

    def delete(self, message: Message) -> None:
        try:
            self._sqs.delete_message(
                QueueUrl=self._settings.jobs_queue_url, ReceiptHandle=message.receipt_handle
            )
        except AWS_ERRORS as error:
            # A redelivery finds the job ended and notified, and deletes it then.
            log.warning(
                "delete failed", extra={"message_id": message.message_id, "error": str(error)}
            )

    def send_to_dead_letter_queue(
        self, body: str, source_message_id: str, reason: str, job_id: uuid.UUID | None
    ) -> None:
        attributes = {
            "failure_reason": {
                "DataType": "String",
                "StringValue": reason[:_MAX_REASON_CHARS] or "unknown",
            },
            "source_message_id": {"DataType": "String", "StringValue": source_message_id},
        }
        if job_id is not None:
            attributes["job_id"] = {"DataType": "String", "StringValue": str(job_id)}
        self._sqs.send_message(
            QueueUrl=self._settings.dead_letter_queue_url,
            MessageBody=body or "{}",
            MessageAttributes=attributes,
        )
