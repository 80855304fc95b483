"""Input rules of the API: video fields, source paths under MEDIA_ROOT, list parameters."""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from services.api.http import validation_error
from services.common.videos import STATUSES

TITLE_MAX = 200
CREATOR_MAX = 100
SOURCE_PATH_MAX = 1024
LIMIT_DEFAULT = 20
LIMIT_MAX = 100
_CREATE_FIELDS = frozenset({"title", "creator", "source_path"})


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
    unknown = sorted(set(document) - _CREATE_FIELDS)
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
    if any(ord(character) < 32 for character in value):
        raise validation_error(name, f"{name} must not contain control characters")
    return value


def source_path_inside(value: Any, media_root: PurePosixPath) -> str:
    """`value` as a normalised path relative to `media_root`, or a validation error.

    A relative path is taken relative to the root; an absolute one must lie under it.
    Checked lexically here: the API does not mount the file system. The worker checks
    again after resolving symbolic links.
    """
    if not isinstance(value, str) or not value:
        raise validation_error("source_path", "source_path is required and must be a string")
    if len(value) > SOURCE_PATH_MAX or any(ord(character) < 32 for character in value):
        raise validation_error("source_path", "source_path is too long or has control characters")
    path = PurePosixPath(posixpath.normpath(value))
    if path.is_absolute():
        root = PurePosixPath(posixpath.normpath(str(media_root)))
        if not path.is_relative_to(root):
            raise validation_error("source_path", f"source_path must be inside {media_root}")
        path = path.relative_to(root)
    relative = posixpath.normpath(str(path))
    if relative in {".", ".."} or relative.startswith("../"):
        raise validation_error("source_path", "source_path must name a file inside the media root")
    return relative


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


def decode_cursor(cursor: str, status: str | None) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        document = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = (datetime.fromisoformat(document["u"]), uuid.UUID(document["i"]))
        cursor_status = document["s"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise validation_error("cursor", "cursor is not one this API issued") from None
    if position[0].tzinfo is None:
        raise validation_error("cursor", "cursor is not one this API issued")
    if cursor_status != status:
        raise validation_error("cursor", "cursor belongs to a listing with another status")
    return position
