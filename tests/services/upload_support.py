"""Helpers for the API's upload tests (M1): the app wired like the handler wires it, API
Gateway events for the upload routes, part PUTs over real HTTP, and a SigV4 query-string
verifier that shows which request a presigned URL admits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import STREAM, AwsResources

from services.api.app import ApiApp, Dependencies, Uploads
from services.common.aws import EventStream
from services.common.cache import VideoCache
from services.common.db import Database
from services.common.redis_client import create_redis
from services.common.settings import RedisSettings
from services.common.uploads import IngestStore
from services.contract import DEFAULT_UPLOAD_CONTENT_TYPES, GIB

VALID = {
    "title": "Pilot",
    "creator": "Studio A",
    "size_bytes": 20_000_000,
    "content_type": "video/mp4",
}
MAX_BYTES = 10 * GIB
TTL = 900


def make_cache(port: int, ttl: int = 300) -> VideoCache:
    settings = RedisSettings(host="127.0.0.1", port=port, tls=False)
    return VideoCache(create_redis(settings, None, client_name="media-api"), ttl)


def make_uploads(
    aws: AwsResources,
    *,
    s3: Any = None,
    max_bytes: int = MAX_BYTES,
    content_types: tuple[str, ...] = DEFAULT_UPLOAD_CONTENT_TYPES,
    ttl: int = TTL,
    storage_seconds: float = 10.0,
) -> Uploads:
    return Uploads(
        store=IngestStore(s3 if s3 is not None else aws.s3, aws.ingest_bucket),
        max_bytes=max_bytes,
        content_types=content_types,
        url_ttl_seconds=ttl,
        storage_seconds=storage_seconds,
    )


def make_app(
    database: Database,
    aws: AwsResources,
    redis_port: int,
    *,
    stream_name: str = STREAM,
    kinesis: Any = None,
    playback: Any = None,
    **upload_options: Any,
) -> ApiApp:
    return ApiApp(
        Dependencies(
            database=database,
            stream=EventStream(kinesis if kinesis is not None else aws.kinesis, stream_name),
            cache=lambda: make_cache(redis_port),
            uploads=make_uploads(aws, **upload_options),
            playback=playback,
        )
    )


_RESOURCES = {
    ("videos",): "/videos",
    ("videos", None): "/videos/{videoId}",
    ("videos", None, "upload"): "/videos/{videoId}/upload",
    ("videos", None, "upload", "parts"): "/videos/{videoId}/upload/parts",
    ("videos", None, "upload", "complete"): "/videos/{videoId}/upload/complete",
    ("videos", None, "playback"): "/videos/{videoId}/playback",
}


def event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST proxy event for any route of the API, as the integration delivers it."""
    parts = path.strip("/").split("/")
    shape = tuple(None if index == 1 else part for index, part in enumerate(parts))
    resource = _RESOURCES.get(shape, path)
    path_parameters = {"videoId": parts[1]} if len(parts) > 1 and resource != path else None
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers
        if headers is not None
        else ({"Content-Type": "application/json"} if text is not None else {}),
        "queryStringParameters": None,
        "pathParameters": path_parameters,
        "body": text,
        "isBase64Encoded": False,
        "requestContext": {"stage": "test", "requestId": "req-1"},
    }


def call(app: ApiApp, method: str, path: str, **kwargs: Any) -> tuple[int, dict, dict]:
    response = app.handle(event(method, path, **kwargs))
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def create(app: ApiApp, **overrides: Any) -> dict:
    status, body, _ = call(app, "POST", "/videos", body={**VALID, **overrides})
    assert status == 201, body
    return body


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def part_urls(app: ApiApp, video_id: str, chunks: dict[int, bytes]) -> dict[int, dict]:
    status, body, _ = call(
        app,
        "POST",
        f"/videos/{video_id}/upload/parts",
        body={
            "parts": [
                {"part_number": number, "checksum_sha256": sha256_b64(data)}
                for number, data in chunks.items()
            ]
        },
    )
    assert status == 200, body
    return {part["part_number"]: part for part in body["parts"]}


def put_part(part: dict, data: bytes, *, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """PUT one part as a browser would: the URL, the method and the headers the API gave.

    Content-Type is set because urllib would otherwise send a form type, which moto's
    server tries to parse as a form; it is not a signed header."""
    sent = {
        "Content-Type": "application/octet-stream",
        **(part["headers"] if headers is None else headers),
    }
    request = urllib.request.Request(part["url"], data=data, method=part["method"], headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("ETag", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def split(data: bytes, part_size: int) -> dict[int, bytes]:
    return {
        index + 1: data[offset : offset + part_size]
        for index, offset in enumerate(range(0, len(data), part_size))
    }


# -- SigV4 query-string verification ------------------------------------------------------


def presigned_request_problem(
    url: str,
    method: str,
    headers: dict[str, str],
    *,
    secret_key: str,
    now: datetime | None = None,
) -> str | None:
    """Why S3 would refuse `method url` sent with `headers`, judged from the signature the
    way S3 judges it (SigV4 query authentication), or None if it would accept it.

    moto's server checks neither presigned signatures nor their expiry, so the tests check
    the URLs with this: a header missing, a header value changed, a signed parameter
    altered or the URL expired each changes the verdict."""
    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    params = dict(query)
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if (now or datetime.now(UTC)) > signed_at + timedelta(seconds=int(params["X-Amz-Expires"])):
        return "Request has expired"
    sent = {name.lower(): value.strip() for name, value in headers.items()}
    sent["host"] = parsed.netloc
    signed_headers = params["X-Amz-SignedHeaders"].split(";")
    missing = [name for name in signed_headers if name not in sent]
    if missing:
        return f"signed header(s) {', '.join(missing)} not sent"

    def quote(text: str) -> str:
        return urllib.parse.quote(text, safe="-_.~")

    canonical_query = "&".join(
        f"{quote(k)}={quote(v)}" for k, v in sorted(query) if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        [
            method,
            urllib.parse.quote(urllib.parse.unquote(parsed.path), safe="/-_.~"),
            canonical_query,
            "".join(f"{name}:{sent[name]}\n" for name in signed_headers),
            ";".join(signed_headers),
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return "SignatureDoesNotMatch"
    return None


def upload_video(app: ApiApp, data: bytes, **overrides: Any) -> tuple[str, str]:
    """Create a video for `data`, upload it part by part through the presigned URLs and
    complete it: (video_id, job_id). For tests that need an uploaded source (M1) the way a
    client makes one; the URLs must reach the S3 the app signs for (moto's server)."""
    created = create(app, size_bytes=len(data), **overrides)
    video_id = created["video_id"]
    chunks = split(data, created["upload"]["part_size"])
    urls = part_urls(app, video_id, chunks)
    for number, chunk in chunks.items():
        status, answer = put_part(urls[number], chunk)
        assert status == 200, answer
    status, body, _ = call(app, "POST", f"/videos/{video_id}/upload/complete")
    assert status == 202, body
    return video_id, body["job_id"]
