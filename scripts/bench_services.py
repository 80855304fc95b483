#!/usr/bin/env python3
"""Benchmark of the services against local servers (not a test).

Starts a throw-away PostgreSQL and Redis on free local ports, uses moto in-process for
Kinesis/SQS, and measures:
  * API  GET /videos/{id} latency, p50/p99, cache hit and cache miss (handler code end to
    end: routing, Redis, PostgreSQL, JSON);
  * worker jobs per second in one process, with ffprobe and ffmpeg stubbed out (claim,
    fetch the source from S3, publish a four-object version, complete, cache refresh,
    processed event, delete: everything but the media tools, which
    scripts/bench_transcode.py measures).

    python scripts/bench_services.py [--videos 200] [--requests 2000] [--jobs 500]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
for name, value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-central-1",
}.items():
    os.environ.setdefault(name, value)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from services.api.app import ApiApp, Dependencies  # noqa: E402
from services.common.aws import EventStream  # noqa: E402
from services.common.cache import VideoCache  # noqa: E402
from services.common.content_keys import load_keyring  # noqa: E402
from services.common.db import Database  # noqa: E402
from services.common.events import JOB_REQUESTED, new_event  # noqa: E402
from services.common.migrations import apply_migrations  # noqa: E402
from services.common.redis_client import create_redis  # noqa: E402
from services.common.secrets import StaticDbCredentials  # noqa: E402
from services.common.settings import (  # noqa: E402
    CommonSettings,
    DatabaseSettings,
    MediaSettings,
    RedisSettings,
    SslMode,
    WorkerSettings,
)
from services.contract import parse_ladder, source_key  # noqa: E402
from services.worker.consumer import StopSignal, Worker, WorkerDeps  # noqa: E402
from services.worker.probe import MediaFacts  # noqa: E402
from services.worker.storage import MediaStorage as WorkerStorage  # noqa: E402
from services.worker.transcode import RenditionOutput, TranscodeResult  # noqa: E402

STREAM = "bench-events"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pg_bin(tool: str) -> str:
    def major(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/", path)
        return int(found.group(1)) if found else 0

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=major, reverse=True)
    return found[0] if found else (shutil.which(tool) or tool)


@contextlib.contextmanager
def postgres() -> Iterator[int]:
    """A trust-auth PostgreSQL in a temporary directory (as `postgres` when run as root)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chmod(workdir, 0o755)
        os.chown(workdir, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", free_port()
    subprocess.run(
        [*prefix, pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, pg_bin("pg_ctl"), "start", "-w", "-D", str(data), "-o", options,
         "-l", str(workdir / "log")],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield port
    finally:
        subprocess.run([*prefix, pg_bin("pg_ctl"), "stop", "-D", str(data), "-m", "fast"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
         "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarise(samples_s: list[float]) -> str:
    ms = [s * 1000 for s in samples_s]
    return (
        f"p50 {percentile(ms, 0.50):6.2f} ms   p99 {percentile(ms, 0.99):6.2f} ms"
        f"   mean {statistics.fmean(ms):6.2f} ms   n={len(ms)}"
    )


def seed_videos(database: Database, count: int) -> list[str]:
    ids = [uuid.uuid4() for _ in range(count)]

    def insert(cursor) -> None:
        for video_id in ids:
            cursor.execute(
                "INSERT INTO videos (id, title, creator, source_uri, status, duration_s,"
                " size_bytes, container, video_codec, width, height, bitrate)"
                " VALUES (%s, 'bench', 'bench', 'a.mp4', 'COMPLETED', 1.0, 1000, 'mp4',"
                " 'h264', 1920, 1080, 5000000)",
                (video_id,),
            )

    database.run(insert)
    return [str(i) for i in ids]


def get_event(video_id: str) -> dict:
    return {
        "resource": "/videos/{videoId}",
        "path": f"/videos/{video_id}",
        "httpMethod": "GET",
        "pathParameters": {"videoId": video_id},
        "headers": {},
    }


def bench_api(
    database: Database, redis_port: int, videos: int, requests: int
) -> dict[str, list[float]]:
    redis_settings = RedisSettings(host="127.0.0.1", port=redis_port, tls=False)
    client = create_redis(redis_settings, None, client_name="bench-api")
    cache = VideoCache(client, 300)
    kinesis = boto3.client("kinesis", region_name="eu-central-1")
    app = ApiApp(Dependencies(database, EventStream(kinesis, STREAM), lambda: cache, uploads=None))
    ids = seed_videos(database, videos)  # COMPLETED: only settled videos are cached
    for video_id in ids[:20]:  # warm-up: connections, prepared statements, script SHA
        app.handle(get_event(video_id))
    results: dict[str, list[float]] = {"miss": [], "hit": []}
    for index in range(requests):
        video_id = ids[index % len(ids)]
        client.delete(VideoCache.key(video_id))
        started = time.perf_counter()
        response = app.handle(get_event(video_id))
        results["miss"].append(time.perf_counter() - started)
        assert response["headers"]["X-Cache"] == "MISS", response
    for index in range(requests):
        video_id = ids[index % len(ids)]
        started = time.perf_counter()
        response = app.handle(get_event(video_id))
        results["hit"].append(time.perf_counter() - started)
        assert response["headers"]["X-Cache"] == "HIT", response
    return results


class Timed:
    """Wraps a boto3 client and adds up the time spent in its calls (moto's emulation)."""

    def __init__(self, client) -> None:
        self._client = client
        self.seconds = 0.0

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


MEDIA = MediaSettings(
    ingest_bucket="bench-ingest", media_bucket="bench-media", ladder=parse_ladder("144:100"),
    segment_seconds=4, max_source_bytes=1 << 30, max_duration_seconds=3600,
    delete_source_after_processing=False, transfer_concurrency=4, ffmpeg_path="unused",
)  # fmt: skip
FACTS = MediaFacts(1.0, 1000, "mp4", "h264", "aac", 256, 144, 300_000, frame_rate=25.0)


def fake_transcode(source, facts, output, **_kwargs) -> TranscodeResult:
    """Writes what a one-rung ladder leaves (master, playlist, segment, poster)."""
    (output / "144p").mkdir()
    files = {"master.m3u8": b"#EXTM3U", "144p/index.m3u8": b"#EXTM3U", "poster.jpg": b"j"}
    files["144p/seg_00000.ts"] = b"\x47" * 188
    for name, data in files.items():
        (output / name).write_bytes(data)
    rendition = RenditionOutput(
        "144p", 256, 144, 100_000, 240_000, "avc1.64000c,mp4a.40.2", "144p/index.m3u8"
    )
    return TranscodeResult(facts, (rendition,), "master.m3u8", "poster.jpg", tuple(files))


class FixedKeyring:
    def get(self):
        return load_keyring('{"current": "k1", "keys": {"k1": "%s"}}' % ("A" * 43 + "="))


def bench_worker(database: Database, redis_port: int, jobs: int) -> tuple[float, float, int]:
    sqs = Timed(boto3.client("sqs", region_name="eu-central-1"))
    kinesis = Timed(boto3.client("kinesis", region_name="eu-central-1"))
    s3 = Timed(boto3.client("s3", region_name="us-east-1"))
    for bucket in (MEDIA.ingest_bucket, MEDIA.media_bucket):
        s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="bench-dlq")["QueueUrl"]
    bodies = []
    for _ in range(jobs):
        video_id, job_id = uuid.uuid4(), uuid.uuid4()
        database.run(
            lambda c, v=video_id, j=job_id: (
                c.execute(
                    "INSERT INTO videos (id, title, creator, source_uri, status)"
                    " VALUES (%s, 'b', 'b', %s, 'UPLOADED')",
                    (v, source_key(str(v))),
                ),
                c.execute("INSERT INTO jobs (id, video_id) VALUES (%s, %s)", (j, v)),
            )
        )
        s3.put_object(Bucket=MEDIA.ingest_bucket, Key=source_key(str(video_id)), Body=b"s" * 1024)
        bodies.append(
            new_event(
                JOB_REQUESTED,
                video_id=str(video_id),
                job_id=str(job_id),
                source_uri=source_key(str(video_id)),
            ).to_json()
        )
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    settings = WorkerSettings(
        common=CommonSettings(
            database=DatabaseSettings(
                host="127.0.0.1", port=1, name="bench", ssl_mode=SslMode.DISABLE
            ),
            redis=RedisSettings(host="127.0.0.1", port=redis_port, tls=False),
            stream_name=STREAM, cache_ttl_seconds=300,
            log_level="WARNING", aws_region="eu-central-1",
        ),
        jobs_queue_url=queue, dead_letter_queue_url=dlq, max_receive_count=5,
        job_timeout_seconds=60, visibility_timeout_seconds=300, content_key_secret_arn="unused",
        scratch_dir=PurePosixPath(tempfile.mkdtemp(prefix="bench-scratch-")), media_root=None,
        media=MEDIA, batch_size=10, receive_wait_seconds=0, retry_base_seconds=1,
        retry_max_seconds=10, stop_timeout_seconds=10, ffprobe_path="unused",
    )  # fmt: skip
    cache = VideoCache(create_redis(settings.common.redis, None, client_name="bench-worker"), 300)
    deps = WorkerDeps(
        database, sqs, EventStream(kinesis, STREAM), cache,
        storage=WorkerStorage(s3, MEDIA), keyring=FixedKeyring(),
        validate=lambda _source, **_kwargs: FACTS, transcode=fake_transcode,
    )  # fmt: skip
    worker = Worker(settings, deps, StopSignal(10))
    done = 0
    sqs.seconds = kinesis.seconds = s3.seconds = 0.0
    started = time.perf_counter()
    while done < jobs:
        done += sum(1 for outcome in worker.poll_once() if outcome == "completed")
    elapsed = time.perf_counter() - started
    return elapsed, elapsed - sqs.seconds - kinesis.seconds - s3.seconds, done


def main() -> int:  # pragma: no cover - a benchmark, run by hand
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    with postgres() as pg_port, redis_server() as redis_port, mock_aws():
        boto3.client("kinesis", region_name="eu-central-1").create_stream(
            StreamName=STREAM, ShardCount=1
        )
        database = Database(
            DatabaseSettings(
                host="127.0.0.1", port=pg_port, name="postgres", ssl_mode=SslMode.DISABLE
            ),
            StaticDbCredentials("postgres", "unused"),
            application_name="bench",
        )
        apply_migrations(database)
        latencies = bench_api(database, redis_port, args.videos, args.requests)
        elapsed, own, done = bench_worker(database, redis_port, args.jobs)
        database.close()
    print(f"API GET /videos/{{id}} cache hit : {summarise(latencies['hit'])}")
    print(f"API GET /videos/{{id}} cache miss: {summarise(latencies['miss'])}")
    print(
        f"worker, ffprobe and ffmpeg stubbed: {done} jobs in {elapsed:.1f} s"
        f" = {done / elapsed:.0f} jobs/s per process with moto's in-process SQS/Kinesis/S3;"
        f" {done / own:.0f} jobs/s counting only the worker's own time (PostgreSQL, Redis, code)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
