"""Events on the Kinesis stream and how they arrive in SQS.

An event is a flat JSON object: `type`, `version`, `event_id`, `video_id`, `job_id`,
`source_uri`, `occurred_at`, plus type-specific keys. `event_id` is derived from the type
and the job, so an outcome published again after a failure carries the same id and
consumers can drop the copy (Kinesis, like SQS, delivers at least once).

`source_uri` names where the upload went (its key in the ingest bucket, as the API records
it) for people reading the stream; the worker never reads a source by it, only by the key
the contract derives from `video_id` (M3). `video.processed` adds `status`, `media` (the facts
ffprobe found) and `published` (M6): `published_version`, `playlist_path`, `poster_path`,
`key_version` (never a key) and `renditions` (name, width, height, bitrate, bandwidth,
codecs, playlist), exactly as the video row records them.

The EventBridge Pipe forwards `job.requested` events with the input template `<$.data>`,
so an SQS body is normally the event itself; a raw Kinesis record envelope
(`{"data": "<base64>"}` or `{"data": {...}}`) is accepted too.

A message comes from outside the worker's control (H3): `parse_message_body` is total, so
whatever a body holds (nesting a thousand levels deep, a 5,000-digit number, invalid
Unicode, fields of the wrong type) it returns an event or raises `EventError` with the
reason, which the worker dead-letters once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.common import safejson
from services.common.text import text_problem

log = logging.getLogger(__name__)

JOB_REQUESTED = "job.requested"
VIDEO_PROCESSED = "video.processed"
EVENT_TYPES = frozenset({JOB_REQUESTED, VIDEO_PROCESSED})
EVENT_VERSION = 1
_REQUIRED_TEXT = ("video_id", "job_id", "source_uri", "occurred_at")
_CORE_KEYS = frozenset({"type", "version", "event_id", *_REQUIRED_TEXT})
_EVENT_ID_NAMESPACE = uuid.UUID("e8709175-5c37-43b5-ac98-9bd0f746da1f")
MAX_MESSAGE_BYTES = 1024 * 1024
"""SQS's largest message body (1 MiB); a base64 Kinesis envelope decodes to less."""
MAX_FIELD_CHARS = 4096
"""Longest core text field (a source reference is at most Linux PATH_MAX)."""


class EventError(ValueError):
    """A message that can never be understood, however often it is retried."""


@dataclass(frozen=True, kw_only=True)
class Event:
    type: str
    video_id: str
    job_id: str
    source_uri: str
    occurred_at: str
    version: int = EVENT_VERSION
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.detail,
            "type": self.type,
            "version": self.version,
            "event_id": self.event_id,
            "video_id": self.video_id,
            "job_id": self.job_id,
            "source_uri": self.source_uri,
            "occurred_at": self.occurred_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, default=str)

    @property
    def event_id(self) -> str:
        return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{self.type}/{self.job_id}"))

    @property
    def partition_key(self) -> str:
        return self.video_id


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event(
    event_type: str, *, video_id: str, job_id: str, source_uri: str, **detail: Any
) -> Event:
    return Event(
        type=event_type,
        video_id=video_id,
        job_id=job_id,
        source_uri=source_uri,
        occurred_at=utc_now_iso(),
        detail=detail,
    )


def parse_event(document: Any) -> Event:
    if not isinstance(document, dict):
        raise EventError("event is not a JSON object")
    event_type, version = document.get("type"), document.get("version")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise EventError(f"unknown event type {_shown(event_type)}")
    if type(version) is not int or version != EVENT_VERSION:  # True == 1 in Python
        raise EventError(f"unsupported event version {_shown(version)}")
    for key in _REQUIRED_TEXT:
        value = document.get(key)
        if not isinstance(value, str) or not value:
            raise EventError(f"event field {key!r} is missing or not a string")
        if len(value) > MAX_FIELD_CHARS:
            raise EventError(f"event field {key!r} is longer than {MAX_FIELD_CHARS} characters")
        problem = text_problem(value)
        if problem is not None:
            raise EventError(f"event field {key!r} {problem}")
    for key in ("video_id", "job_id"):
        _require_uuid(key, document[key])
    return Event(
        type=document["type"],
        video_id=document["video_id"],
        job_id=document["job_id"],
        source_uri=document["source_uri"],
        occurred_at=document["occurred_at"],
        detail={k: v for k, v in document.items() if k not in _CORE_KEYS},
    )


def parse_message_body(body: str | bytes) -> Event:
    """The event in an SQS message body, unwrapping a Kinesis record envelope if present;
    EventError for anything else, whatever the body holds."""
    try:
        document = _json(body)
        if isinstance(document, dict) and "type" not in document and "data" in document:
            document = _unwrap_kinesis_data(document["data"])
        return parse_event(document)
    except EventError:
        raise
    except Exception as error:
        # Parsing is pure: an error here is a property of the message, never transient.
        # Catching it is what keeps one hostile message from ending the worker process.
        log.warning("unexpected error parsing a message", exc_info=True)
        raise EventError(f"message could not be parsed ({type(error).__name__})") from None


def _shown(value: Any) -> str:
    """A field's value for a reason text: short, and only if it is a plain scalar."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:37]}..."
    return f"of type {type(value).__name__}"


def _unwrap_kinesis_data(data: Any) -> Any:
    if isinstance(data, dict):
        return data
    if not isinstance(data, str):
        raise EventError("Kinesis envelope 'data' is neither base64 text nor an object")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("Kinesis envelope 'data' is not valid base64") from None
    return _json(decoded)


def _json(text: str | bytes) -> Any:
    try:
        return safejson.loads(text, max_bytes=MAX_MESSAGE_BYTES)
    except safejson.JsonError as error:
        raise EventError(f"message body is not JSON: {error}") from None


def _require_uuid(key: str, value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise EventError(f"event field {key!r} is not a UUID") from None
