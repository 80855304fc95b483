"""Helpers for the services tests: media clips, fault-injecting proxies, stream readers."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

CLIP_ARGS = {
    # 1 s, 64x64 test pattern with a sine tone: the smallest real video with audio.
    "ok.mp4": [
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
        "-c:v", "mpeg4", "-c:a", "aac", "-shortest",
    ],
    # 0.3 s: the fault-injection run's media, transcoded a thousand times.
    "tiny.mp4": [
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=0.3",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=0.3",
        "-c:v", "mpeg4", "-c:a", "aac", "-shortest",
    ],
    "silent.mp4": [
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-an", "-c:v", "mpeg4",
    ],
    "audio_only.m4a": [
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-vn", "-c:a", "aac",
    ],
}  # fmt: skip


def make_clips(directory: Path) -> dict[str, Path]:
    """Valid, audio-less, audio-only, corrupt and zero-byte media, made by ffmpeg."""
    directory.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name, args in CLIP_ARGS.items():
        path = directory / name
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(path)],
            check=True,
            timeout=60,
        )
        clips[name] = path
    corrupt = directory / "corrupt.mp4"
    corrupt.write_bytes(random.Random(7).randbytes(4096))
    empty = directory / "empty.mp4"
    empty.write_bytes(b"")
    clips["corrupt.mp4"], clips["empty.mp4"] = corrupt, empty
    return clips


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """Forwards a local port to a server; `cut()` drops every connection and refuses
    new ones until `restore()`, which is how a database or cache outage looks to a client."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in list(self._sockets):
                _close(sock)
            self._sockets.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.update({client, upstream})
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        peers = {client: upstream, upstream: client}
        try:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select(timeout=1):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    peers[key.fileobj].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            for sock in peers:
                _close(sock)
            with self._lock:
                self._sockets.difference_update(peers)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class AwsFaults:
    """Which AWS calls fail: a seeded share of the named operations, drawn for every proxy
    that shares this object, with calls and faults counted per operation.

    An operation that has gone `ensure_within` calls without a fault fails on the next one,
    so every kind is exercised even where the workers call it rarely (the dead-letter
    SendMessage) and chance alone could leave it untested.
    """

    def __init__(
        self,
        *,
        rate: float,
        operations: set[str],
        seed: int = 1,
        ensure_within: int | None = None,
        rates: dict[str, float] | None = None,
    ) -> None:
        self.rate = rate
        self.rates = rates or {}
        """Per-operation rates that replace `rate` for those operations; being rarer, they
        are forced only after RATED_WINDOW_FACTOR times `ensure_within` calls."""
        self.operations = operations
        self.ensure_within = ensure_within
        self.faults: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._since_fault: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    RATED_WINDOW_FACTOR = 10

    def _window(self, operation: str) -> int:
        assert self.ensure_within is not None
        factor = self.RATED_WINDOW_FACTOR if operation in self.rates else 1
        return self.ensure_within * factor

    def should_fault(self, operation: str) -> bool:
        with self._lock:
            self.calls[operation] += 1
            if operation not in self.operations:
                return False
            overdue = self.ensure_within is not None and self._since_fault[
                operation
            ] >= self._window(operation)
            if overdue or self._random.random() < self.rates.get(operation, self.rate):
                self.faults[operation] += 1
                self._since_fault[operation] = 0
                return True
            self._since_fault[operation] += 1
            return False


# moto is not safe for concurrency where it matters here: two Kinesis PutRecords at once can
# get the same sequence number, so one record silently replaces the other, and an SQS delete
# rebuilds the queue's message list without the lock its sends take, so a message sent
# meanwhile is silently lost. Every proxy in this process passes those calls on one at a time.
_ONE_AT_A_TIME = threading.Lock()
_SQS_WRITES = {"SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch"}


class FaultyAwsProxy:
    """An HTTP proxy in front of a moto server that fails a share of AWS calls.

    A faulted call is answered with HTTP 500 InternalFailure *without* being forwarded,
    so it certainly did not happen, which is what a client sees from a throttled or
    briefly unavailable AWS endpoint. `interrupt(operation, body)` sees every call first
    (the request's body); when it returns True the call is dropped unanswered and
    unforwarded (the caller has been killed meanwhile).
    """

    def __init__(
        self,
        upstream: str,
        *,
        faults: AwsFaults,
        interrupt: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self._interrupt = interrupt
        self.refuse: Callable[[str, str], bool] | None = None
        """`refuse(operation, path)`: answer 403 AccessDenied, unforwarded (an S3 policy
        that denies the call)."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_PUT(self) -> None:
                proxy._handle(self)

            def do_DELETE(self) -> None:
                proxy._handle(self)

            def do_HEAD(self) -> None:
                proxy._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = _request_body(request)
        target = request.headers.get("X-Amz-Target") or ""
        operation = target.rpartition(".")[2] or s3_operation(request.command, request.path)
        if self._interrupt is not None and self._interrupt(operation, body):
            request.close_connection = True
            return
        if self.refuse is not None and self.refuse(operation, request.path):
            payload = (
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                b"<Message>Access Denied</Message></Error>"
            )
            self._reply(request, 403, {"Content-Type": "application/xml"}, payload)
            return
        if self.faults.should_fault(operation):
            payload = json.dumps({"__type": "InternalFailure", "message": "injected"}).encode()
            self._reply(request, 500, {"Content-Type": "application/x-amz-json-1.0"}, payload)
            return
        # http.client, not urllib: urllib gives a body without a Content-Type a form
        # encoding, which the server then parses away (an S3 upload arrived empty).
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in {"host", "transfer-encoding", "expect", "content-length"}
        }
        # The body goes on whole (de-chunked), so it is framed by its length alone.
        headers["Content-Length"] = str(len(body))
        serialize = target.startswith("Kinesis") or (
            target.startswith("AmazonSQS") and operation in _SQS_WRITES
        )
        one_at_a_time = _ONE_AT_A_TIME if serialize else contextlib.nullcontext()
        upstream = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        try:
            with one_at_a_time:
                connection.request(request.command, request.path, body=body, headers=headers)
                response = connection.getresponse()
                status, headers, payload = response.status, dict(response.headers), response.read()
        finally:
            connection.close()
        self._reply(request, status, headers, payload)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes):
        request.send_response(status)
        for key, value in headers.items():
            if key.lower() not in {
                "content-length",
                "transfer-encoding",
                "connection",
                "date",
                "server",
            }:
                request.send_header(key, value)
        if request.command == "HEAD":
            # A HEAD reply carries the object's length, never a body.
            request.send_header("Content-Length", headers.get("Content-Length", "0"))
            request.end_headers()
            return
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def _request_body(request: BaseHTTPRequestHandler) -> bytes:
    """The request's body, plain or (boto3's streamed uploads) in HTTP chunks."""
    if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else b""


def s3_operation(method: str, path: str) -> str:
    """The S3 REST call a request is (only those the worker makes)."""
    resource, _, query = path.partition("?")
    has_key = resource.strip("/").count("/") >= 1
    if method == "PUT":
        return "PutObject" if has_key else "CreateBucket"
    if method == "GET":
        return "GetObject" if has_key else "ListObjectsV2"
    if method == "DELETE":
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return "other"


def read_stream(kinesis: Any, stream_name: str) -> list[dict[str, Any]]:
    """Every record on the stream, decoded as JSON, across all shards."""
    events = []
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    for shard in shards:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            events.extend(json.loads(record["Data"]) for record in response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return events


def drain_queue(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete everything visible on a queue."""
    messages = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages on a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m services.worker` as a real process, logging to a file."""
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process by the caller
    return subprocess.Popen(
        [sys.executable, "-m", "services.worker"],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def submit_job(
    database: Any,
    aws: Any,
    source: Path | bytes | None,
    *,
    envelope: bool = False,
    title: str = "t",
    message_source_uri: str | None = None,
) -> tuple[Any, Any]:
    """What the API leaves behind once a creator's upload is complete (M1): the source
    object in the ingest bucket (unless `source` is None: it never arrived), an UPLOADED
    video and its QUEUED job; then its job.requested event delivered the way the
    EventBridge Pipe does (the event as the body), or as a raw Kinesis envelope.
    `message_source_uri` puts another reference in the message than the row's."""
    import base64
    import uuid

    from services.common.events import JOB_REQUESTED, new_event
    from services.contract import source_key

    video_id, job_id = uuid.uuid4(), uuid.uuid4()
    key = source_key(str(video_id))
    data = source.read_bytes() if isinstance(source, Path) else source
    if data is not None:
        aws.s3.put_object(Bucket=aws.ingest_bucket, Key=key, Body=data)
    source_uri = key  # as the API records it

    def insert(cursor: Any) -> None:
        cursor.execute(
            "INSERT INTO videos (id, title, creator, source_uri, status, content_type,"
            " upload_size_bytes) VALUES (%s, %s, 'c', %s, 'UPLOADED', 'video/mp4', %s)",
            (video_id, title, source_uri, max(1, len(data or b""))),
        )
        cursor.execute("INSERT INTO jobs (id, video_id) VALUES (%s, %s)", (job_id, video_id))

    database.run(insert)
    event = new_event(
        JOB_REQUESTED,
        video_id=str(video_id),
        job_id=str(job_id),
        source_uri=message_source_uri or source_uri,
    )
    body = event.to_json()
    if envelope:
        body = json.dumps(
            {"data": base64.b64encode(body.encode()).decode(), "partitionKey": str(video_id)}
        )
    aws.sqs.send_message(QueueUrl=aws.jobs_queue_url, MessageBody=body)
    return video_id, job_id


def bucket_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key in a bucket under `prefix`, sorted."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def scratch_jobs(scratch: Path) -> list[str]:
    """What is left of the per-job scratch directories (nothing, between jobs)."""
    root = scratch / "jobs"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def rotation_function_arn(handler_module: str, function_name: str, region: str) -> str:
    """A function registered in moto's Lambda (with an empty package) for moto's RotateSecret
    to accept as the rotation function; the tests invoke the real handler themselves."""
    import io
    import zipfile

    import boto3

    role = boto3.client("iam", region_name=region).create_role(
        RoleName=function_name, AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(handler_module.replace(".", "/") + ".py", "")
    return boto3.client("lambda", region_name=region).create_function(
        FunctionName=function_name,
        Runtime="python3.12",
        Role=role,
        Handler=f"{handler_module}.handler",
        Code={"ZipFile": archive.getvalue()},
    )["FunctionArn"]
