"""Input rules of the API: video fields, source paths under MEDIA_ROOT, list parameters."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from services.api.http import validation_error
from services.common import safejson
from services.common.sources import SourceError, normalise_source
from services.common.text import text_problem
from services.common.videos import STATUSES
from services.contract import (
    CREATE_VIDEO_FIELDS,
    CREATOR_MAX,
    LIMIT_DEFAULT,
    LIMIT_MAX,
    SOURCE_PATH_MAX,
    TITLE_MAX,
)


@dataclass(frozen=True)
class CreateVideo:
    title: str
    creator: str
    source_path: str
    """Relative to MEDIA_ROOT, normalised, never escaping it."""


@dataclass(frozen=True)
class ListQuery:
    status: str | None
    limit: int
    after: tuple[datetime, uuid.UUID] | None


def parse_create(document: Any, media_root: PurePosixPath) -> CreateVideo:
    if not isinstance(document, dict):
        raise validation_error("body", "the body must be a JSON object")
    unknown = sorted(set(document) - CREATE_VIDEO_FIELDS)
    if unknown:
        raise validation_error(unknown[0], f"unknown field {unknown[0]!r}")
    return CreateVideo(
        title=_text(document, "title", TITLE_MAX),
        creator=_text(document, "creator", CREATOR_MAX),
        source_path=source_path_inside(document.get("source_path"), media_root),
    )


def _text(document: dict[str, Any], name: str, maximum: int) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise validation_error(name, f"{name} is required and must be a string")
    value = value.strip()
    if not 1 <= len(value) <= maximum:
        raise validation_error(name, f"{name} must be 1 to {maximum} characters")
    problem = text_problem(value)
    if problem is not None:
        raise validation_error(name, f"{name} {problem}")
    return value


def source_path_inside(value: Any, media_root: PurePosixPath) -> str:
    """`value` as a normalised path relative to `media_root`, or a validation error.

    The grammar is `services.common.sources`: a path inside the root, never a URI.
    Checked lexically here: the API does not mount the file system. The worker checks
    again after resolving symbolic links.
    """
    try:
        return normalise_source(value, media_root, max_chars=SOURCE_PATH_MAX)
    except SourceError as error:
        raise validation_error("source_path", f"source_path {error}") from None


def parse_video_id(value: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise validation_error("videoId", "videoId must be a UUID") from None


def parse_list_query(query: dict[str, str]) -> ListQuery:
    status = _status(query.get("status"))
    return ListQuery(
        status=status,
        limit=_limit(query.get("limit")),
        after=decode_cursor(query["cursor"], status) if query.get("cursor") else None,
    )


def _status(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    status = value.upper()
    if status not in STATUSES:
        raise validation_error("status", f"status must be one of {', '.join(STATUSES)}")
    return status


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return LIMIT_DEFAULT
    try:
        limit = int(value)
    except ValueError:
        raise validation_error("limit", "limit must be an integer") from None
    if not 1 <= limit <= LIMIT_MAX:
        raise validation_error("limit", f"limit must be between 1 and {LIMIT_MAX}")
    return limit


def encode_cursor(uploaded_at: datetime, video_id: uuid.UUID, status: str | None) -> str:
    document = {"u": uploaded_at.isoformat(), "i": str(video_id), "s": status}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# An issued cursor is about 130 characters; its JSON is one flat object.
_CURSOR_MAX_CHARS = 512
_CURSOR_KEYS = frozenset({"u", "i", "s"})


def decode_cursor(cursor: str, status: str | None) -> tuple[datetime, uuid.UUID]:
    """The position in a cursor `encode_cursor` made, or a 400 for anything else.

    A cursor comes back from the client, so it is decoded like any other input: bounded
    (length, JSON depth), exactly the three keys with the right types, and a timestamp
    that exists in UTC (`0001-01-01T00:00:00+14:00` does not).
    """
    not_ours = validation_error("cursor", "cursor is not one this API issued")
    if len(cursor) > _CURSOR_MAX_CHARS:
        raise not_ours
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        document = safejson.loads(raw, max_bytes=_CURSOR_MAX_CHARS, max_depth=1)
    except (binascii.Error, ValueError, UnicodeError):  # JsonError is a ValueError
        raise not_ours from None
    if not isinstance(document, dict) or set(document) != _CURSOR_KEYS:
        raise not_ours
    moment, video_id, cursor_status = document["u"], document["i"], document["s"]
    if not (isinstance(moment, str) and isinstance(video_id, str)):
        raise not_ours
    try:
        uploaded_at = datetime.fromisoformat(moment)
        position = (uploaded_at.astimezone(UTC), uuid.UUID(video_id))
    except (ValueError, OverflowError):
        raise not_ours from None
    if uploaded_at.tzinfo is None:
        raise not_ours
    if cursor_status != status:
        raise validation_error("cursor", "cursor belongs to a listing with another status")
    return position
