"""Input rules of the API: video fields, upload declarations and part requests, list
parameters. API Gateway checks the same bodies against the models in `services.contract`
first; everything is checked again here, with the stack's own upload limits."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.api.http import ApiError, validation_error
from services.common import safejson
from services.common.text import text_problem
from services.common.uploads import checksum_problem
from services.common.videos import STATUSES
from services.contract import (
    CONTENT_TYPE_PATTERN,
    CREATE_VIDEO_FIELDS,
    CREATOR_MAX,
    LIMIT_DEFAULT,
    LIMIT_MAX,
    PART_URLS_PER_REQUEST,
    S3_MAX_PARTS,
    TITLE_MAX,
)

_CONTENT_TYPE = re.compile(CONTENT_TYPE_PATTERN)
_PARTS_FIELDS = frozenset({"parts"})
_PART_FIELDS = frozenset({"part_number", "checksum_sha256"})


@dataclass(frozen=True)
class CreateVideo:
    title: str
    creator: str
    size_bytes: int
    content_type: str


@dataclass(frozen=True)
class PartRequest:
    part_number: int
    checksum_sha256: str


@dataclass(frozen=True)
class ListQuery:
    status: str | None
    limit: int
    after: tuple[datetime, uuid.UUID] | None


def parse_create(document: Any, *, max_bytes: int, content_types: tuple[str, ...]) -> CreateVideo:
    """A new video's fields. A size over the stack's limit is 413 and a content type the
    stack does not accept is 415 (the request is well-formed, the platform declines it);
    anything malformed is 400."""
    _object(document, "body", CREATE_VIDEO_FIELDS)
    title = _text(document, "title", TITLE_MAX)
    creator = _text(document, "creator", CREATOR_MAX)
    size_bytes = _integer(document.get("size_bytes"), "size_bytes", low=1)
    content_type = document.get("content_type")
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise validation_error(
            "content_type", "content_type must be a lower-case media type such as video/mp4"
        )
    if size_bytes > max_bytes:
        raise ApiError(
            413,
            "upload_too_large",
            f"size_bytes must be at most {max_bytes}",
            field="size_bytes",
        )
    if content_type not in content_types:
        raise ApiError(
            415,
            "unsupported_content_type",
            f"content_type must be one of {', '.join(content_types)}",
            field="content_type",
        )
    return CreateVideo(
        title=title, creator=creator, size_bytes=size_bytes, content_type=content_type
    )


def parse_parts(document: Any) -> tuple[PartRequest, ...]:
    """The parts a client asks URLs for: 1 to PART_URLS_PER_REQUEST, each number once."""
    _object(document, "body", _PARTS_FIELDS)
    items = document.get("parts")
    if not isinstance(items, list) or not 1 <= len(items) <= PART_URLS_PER_REQUEST:
        raise validation_error(
            "parts", f"parts must be a list of 1 to {PART_URLS_PER_REQUEST} parts"
        )
    parts, seen = [], set()
    for index, item in enumerate(items):
        where = f"parts[{index}]"
        _object(item, where, _PART_FIELDS)
        number = _integer(item.get("part_number"), f"{where}.part_number", low=1, high=S3_MAX_PARTS)
        if number in seen:
            raise validation_error(f"{where}.part_number", f"part {number} is listed twice")
        seen.add(number)
        checksum = item.get("checksum_sha256")
        problem = checksum_problem(checksum)
        if problem is not None:
            raise validation_error(f"{where}.checksum_sha256", f"checksum_sha256 {problem}")
        parts.append(PartRequest(part_number=number, checksum_sha256=checksum))
    return tuple(parts)


def _object(document: Any, where: str, fields: frozenset[str]) -> None:
    if not isinstance(document, dict):
        raise validation_error(where, f"{where} must be a JSON object")
    unknown = sorted(set(document) - fields)
    if unknown:
        name = unknown[0] if where == "body" else f"{where}.{unknown[0]}"
        raise validation_error(name, f"unknown field {unknown[0]!r}")


def _integer(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    # bool is an int in Python; 1.0 is a float in our decoder: neither is a JSON integer.
    if type(value) is not int:
        raise validation_error(name, f"{name} is required and must be an integer")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise validation_error(name, f"{name} must be {bound}")
    return value


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
