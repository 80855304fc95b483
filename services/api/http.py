"""API Gateway proxy events in, proxy responses out, and the one error shape."""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any

from services.common import safejson

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """An error the client can act on; rendered as {"error": {"code", "message", "field"}}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def to_response(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return json_response(self.status, {"error": error}, self.headers)


def validation_error(field_name: str, message: str) -> ApiError:
    return ApiError(400, "validation_failed", message, field=field_name)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
        "body": json.dumps(body, separators=(",", ":"), default=str),
        "isBase64Encoded": False,
    }


@dataclass(frozen=True)
class Request:
    method: str
    resource: str | None
    path: str
    path_parameters: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    received_at: float = field(default_factory=time.monotonic)
    """`time.monotonic()` when the request arrived: its deadlines count from here."""

    def json_body(self) -> Any:
        content_type = self.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type", "the body must be application/json")
        if self.body is None or not self.body.strip():
            raise ApiError(400, "invalid_json", "a JSON object body is required")
        if len(self.body) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        try:
            return safejson.loads(self.body, max_bytes=MAX_BODY_BYTES)
        except safejson.JsonError as error:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}") from None


def parse_request(event: dict[str, Any]) -> Request:
    return Request(
        method=str(event.get("httpMethod") or "").upper(),
        resource=event.get("resource"),
        path=event.get("path") or "/",
        path_parameters=dict(event.get("pathParameters") or {}),
        query=dict(event.get("queryStringParameters") or {}),
        headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
        body=_body(event),
    )


def _body(event: dict[str, Any]) -> bytes | None:
    body = event.get("body")
    if body is None:
        return None
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_body", "the body is not valid base64") from None
    try:
        return str(body).encode()
    except UnicodeEncodeError:  # a lone surrogate the runtime decoded from "\udXXX"
        raise ApiError(400, "invalid_body", "the body is not valid Unicode") from None
