"""A local stand-in for the media distribution (M7, M10): a threaded HTTP server that enforces
CloudFront's signed-access rules with the distribution's public keys and routes like the
distribution's cache behaviours.

* Every request needs a grant, as on every behaviour with a trusted key group: the signed
  query parameters if the URL has any, else the three CloudFront-* cookies. The Key-Pair-Id
  must be one of the key group's, the signature must verify, the policy must not have
  expired, and its Resource must match `https://{playback domain}{path}` (the double is
  told which domain it impersonates; it is reached over plain HTTP on 127.0.0.1). Checked by
  services/common/signed_access.py, the same code key delivery runs behind the edge; a
  refusal is 403, as CloudFront answers it.
* `media/*/keys/*` and `media/*/session` go to key delivery as a function URL event that
  carries only what the origin request policy forwards (the three signed cookies and the
  three signed query parameters); its status, headers, body and cookies come back, the
  cookies as Set-Cookie.
* Everything else is read from the media bucket (moto's S3), as origin access control
  does: a missing object is 403, since the distribution may only GetObject, not list.
* Only GET and HEAD are allowed (the distribution's allowed methods); others are 403.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.exceptions import ClientError

from services.common.signed_access import (
    GrantRefused,
    authorize,
    cookie_pairs,
    grant_values,
    wildcard_match,
)
from services.contract import (
    KEY_PATH_PATTERN,
    MEDIA_PATH_PATTERN,
    PLAYLIST_PATH_PATTERN,
    SESSION_PATH_PATTERN,
    SIGNED_COOKIES,
    SIGNED_QUERY_PARAMETERS,
)

KEYS = "keys"
BUCKET = "bucket"
# The distribution's ordered cache behaviours, then its default (`*`): the bucket.
BEHAVIOURS = (
    (KEY_PATH_PATTERN, KEYS),
    (SESSION_PATH_PATTERN, KEYS),
    (PLAYLIST_PATH_PATTERN, BUCKET),
    (MEDIA_PATH_PATTERN, BUCKET),
    ("*", BUCKET),
)
FUNCTION_URL_HOST = "keys0000000000000000000000000000.lambda-url.eu-central-1.on.aws"


@dataclass(frozen=True)
class EdgeRequest:
    """One viewer request as the edge saw and answered it."""

    method: str
    path: str
    behaviour: str
    status: int
    refusal: str | None


def behaviour_for(path: str) -> str:
    """The first behaviour whose path pattern matches (CloudFront's patterns have no leading
    slash and use the same wildcards as policies)."""
    relative = path.lstrip("/")
    return next(target for pattern, target in BEHAVIOURS if wildcard_match(pattern, relative))


class EdgeDouble:
    def __init__(
        self,
        *,
        domain: str,
        public_keys: Mapping[str, Any],
        key_delivery: Callable[[dict[str, Any]], dict[str, Any]],
        s3: Any,
        bucket: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.domain = domain
        self.public_keys = public_keys
        self.key_delivery = key_delivery
        self.s3 = s3
        self.bucket = bucket
        self.clock = clock
        self.check_grants = True
        """False stands for a behaviour someone left without its trusted key group: then
        key delivery's own check is all that is left (defence in depth)."""
        self.requests: list[EdgeRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def local(self, url: str) -> str:
        """A URL on the playback domain, as the double serves it."""
        return url.replace(f"https://{self.domain}", self.url, 1)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def record(self, request: EdgeRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # -- one request -------------------------------------------------------------------------

    def answer(
        self, method: str, target: str, cookie_header: str
    ) -> tuple[int, list[tuple[str, str]], bytes, str, str | None]:
        """(status, headers, body, behaviour, refusal) for one viewer request."""
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        cookies = cookie_pairs(cookie_header)
        behaviour = behaviour_for(path)
        if method not in ("GET", "HEAD"):
            return 403, [], b"method not allowed", behaviour, "method"
        if self.check_grants:
            try:
                values = grant_values(cookies, query)
                authorize(
                    values, self.public_keys, url=f"https://{self.domain}{path}", now=self.clock()
                )
            except GrantRefused as refusal:
                return 403, [], b"<Error><Code>AccessDenied</Code></Error>", behaviour, str(refusal)
        if behaviour == KEYS:
            return (*self._key_delivery(method, path, parts.query, cookies), behaviour, None)
        return (*self._bucket(method, path), behaviour, None)

    def _key_delivery(
        self, method: str, path: str, raw_query: str, cookies: list[str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        forwarded_cookies = [c for c in cookies if c.partition("=")[0].strip() in SIGNED_COOKIES]
        forwarded_query = [
            (name, value)
            for name, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
            if name in SIGNED_QUERY_PARAMETERS
        ]
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": urllib.parse.urlencode(forwarded_query),
            "headers": {"host": FUNCTION_URL_HOST},
            "requestContext": {
                "domainName": FUNCTION_URL_HOST,
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1"},
            },
            "isBase64Encoded": False,
        }
        if forwarded_cookies:
            event["cookies"] = forwarded_cookies
        response = self.key_delivery(event)
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        headers = list((response.get("headers") or {}).items())
        headers += [("Set-Cookie", cookie) for cookie in response.get("cookies") or []]
        return response["statusCode"], headers, data

    def _bucket(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=path.lstrip("/"))
        except ClientError:
            return 403, [], b"<Error><Code>AccessDenied</Code></Error>"
        data = found["Body"].read()
        headers = [("Content-Type", found.get("ContentType", "binary/octet-stream"))]
        if found.get("CacheControl"):
            headers.append(("Cache-Control", found["CacheControl"]))
        return 200, headers, b"" if method == "HEAD" else data


def _handler_class(edge: EdgeDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as players use it

        def _serve(self) -> None:
            status, headers, body, behaviour, refusal = edge.answer(
                self.command, self.path, self.headers.get("Cookie", "")
            )
            edge.record(EdgeRequest(self.command, self.path, behaviour, status, refusal))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command not in ("GET", "HEAD"):
                self.close_connection = True  # its body was never read
            elif self.command == "GET":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the requests are recorded, not printed

    return Handler
