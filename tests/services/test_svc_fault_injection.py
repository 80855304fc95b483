"""W6 / R3 under fire: 1,000 jobs through the API, the stream, the queue and three worker
processes, with 10 % bad media and transient faults injected from outside the code:

* AWS: an HTTP proxy in front of the moto server fails a share of SQS and Kinesis calls
  (answered 500 without being forwarded, so the call certainly did not happen);
* PostgreSQL: worker backends are killed with pg_terminate_backend at random;
* Redis: worker connections are killed with CLIENT KILL at random.

Every job must end COMPLETED with exactly one video.processed event, or FAILED with exactly
one dead-letter message; nothing may stay queued, in flight, lost or duplicated. (Only a
worker dying between publishing and recording an outcome may publish it twice, with the
same event_id; these workers are faulted, never killed.)
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import PurePosixPath

import pytest
import redis
from conftest import STREAM, create_aws_resources, reset_moto_server, worker_environment
from svc_support import FaultyAwsProxy, drain_queue, queue_depth, read_stream, start_worker

from services.api.app import ApiApp, Dependencies
from services.common.aws import EventStream
from services.common.cache import VideoCache
from services.common.redis_client import create_redis
from services.common.settings import RedisSettings

pytestmark = [pytest.mark.services, pytest.mark.slow]

JOBS = int(os.environ.get("FAULT_JOBS", "1000"))  # smaller for a quick local run
WORKERS = 3
MAX_RECEIVES = 8
BAD_SOURCES = ["clips/corrupt.mp4", "clips/empty.mp4", "clips/audio_only.m4a", "clips/missing.mp4"]
GOOD_SOURCES = ["clips/ok.mp4", "clips/silent.mp4"]
FAULTED_OPERATIONS = {
    "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "SendMessage", "PutRecord",
}  # fmt: skip
AWS_FAULT_RATE = 0.05
DEADLINE_SECONDS = 900  # the workers phase takes about 240 s on an idle 2-core machine


class OutsideFaults:
    """Background threads that kill database and Redis connections of the workers."""

    def __init__(self, admin_db, redis_port: int, seed: int = 3) -> None:
        self._admin = admin_db
        self._redis = redis.Redis(port=redis_port, decode_responses=True)
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self.killed = Counter()
        self._threads = [
            threading.Thread(target=self._loop, args=(self._kill_db, 0.4), daemon=True),
            threading.Thread(target=self._loop, args=(self._kill_redis, 1.0), daemon=True),
        ]

    def __enter__(self) -> OutsideFaults:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._redis.close()

    def _loop(self, action, period: float) -> None:
        while not self._stop.wait(self._random.uniform(0, 2 * period)):
            action()

    def _kill_db(self) -> None:
        cursor = self._admin.cursor()
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'media-worker' ORDER BY random() LIMIT 1"
        )
        self.killed["postgres"] += len(cursor.fetchall())

    def _kill_redis(self) -> None:
        clients = [c for c in self._redis.client_list() if c.get("name") == "media-worker"]
        if clients:
            self._redis.client_kill_filter(_id=self._random.choice(clients)["id"])
            self.killed["redis"] += 1


def request_jobs(database, kinesis, redis_port: int) -> dict[str, str]:
    """POST /videos JOBS times through the real API code; returns job id -> source."""
    cache = VideoCache(
        create_redis(
            RedisSettings(host="127.0.0.1", port=redis_port, tls=False), None, client_name="api"
        ),
        60,
    )
    app = ApiApp(
        Dependencies(database, EventStream(kinesis, STREAM), lambda: cache, PurePosixPath("/media"))
    )
    rng = random.Random(11)
    sources = [BAD_SOURCES[i % len(BAD_SOURCES)] for i in range(JOBS // 10)]
    sources += [rng.choice(GOOD_SOURCES) for _ in range(JOBS - len(sources))]
    rng.shuffle(sources)
    jobs = {}
    for index, source in enumerate(sources):
        response = app.handle(
            {
                "resource": "/videos",
                "path": "/videos",
                "httpMethod": "POST",
                "headers": {"content-type": "application/json"},
                "body": json.dumps(
                    {"title": f"video {index}", "creator": "load", "source_path": source}
                ),
            }
        )
        assert response["statusCode"] == 202, response
        jobs[json.loads(response["body"])["job_id"]] = source
    return jobs


def pipe_stream_to_queue(kinesis, sqs, queue_url: str) -> int:
    """What the EventBridge Pipe does: job.requested events from the stream to the queue.
    Every fifth goes as a raw Kinesis envelope, which the worker must accept too."""
    requested = [e for e in read_stream(kinesis, STREAM) if e["type"] == "job.requested"]
    bodies = []
    for index, event in enumerate(requested):
        body = json.dumps(event)
        if index % 5 == 0:
            body = json.dumps({"data": base64.b64encode(body.encode()).decode()})
        bodies.append(body)
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
    return len(bodies)


def job_counts(admin_db) -> dict[str, int]:
    cursor = admin_db.cursor()
    cursor.execute("SELECT state, notified_at IS NOT NULL, count(*) FROM jobs GROUP BY 1, 2")
    return {
        f"{state}{'' if notified else ':unnotified'}": n for state, notified, n in cursor.fetchall()
    }


def test_w6_1000_jobs_with_bad_media_and_injected_faults_end_exactly_once(
    moto_server,
    pg_server,
    redis_proc,
    redis_client,
    database,
    admin_db,
    media_root,
    tmp_path,
    capsys,
):
    reset_moto_server(moto_server)
    aws = create_aws_resources(moto_server, visibility=10, max_receive_count=MAX_RECEIVES)
    started = time.monotonic()
    jobs = request_jobs(database, aws.kinesis, redis_proc.port)
    requested_at = time.monotonic()
    assert pipe_stream_to_queue(aws.kinesis, aws.sqs, aws.jobs_queue_url) == JOBS
    piped_at = time.monotonic()

    proxy = FaultyAwsProxy(moto_server, fault_rate=AWS_FAULT_RATE, operations=FAULTED_OPERATIONS)
    env = worker_environment(
        pg_server, redis_proc.port, aws, media_root, tmp_path,
        AWS_ENDPOINT_URL=proxy.url,
        AWS_MAX_ATTEMPTS="1",  # no SDK retries: every injected fault reaches the worker
        MAX_RECEIVE_COUNT=str(MAX_RECEIVES),
        JOB_TIMEOUT_SECONDS="5",
        VISIBILITY_TIMEOUT_SECONDS="10",
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    for i in range(WORKERS):
        (tmp_path / f"w{i}").mkdir()
    workers = [
        start_worker({**env, "SCRATCH_DIR": str(tmp_path / f"w{i}")}, tmp_path / f"worker{i}.log")
        for i in range(WORKERS)
    ]
    try:
        with OutsideFaults(admin_db, redis_proc.port) as faults:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                counts = job_counts(admin_db)
                settled = counts.get("COMPLETED", 0) + counts.get("FAILED", 0) == JOBS
                if settled and queue_depth(aws.sqs, aws.jobs_queue_url) == (0, 0):
                    break
                assert all(w.poll() is None for w in workers), "a worker died"
                assert time.monotonic() < deadline, f"not settled in time: {counts}"
                time.sleep(1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exit_codes = [worker.wait(60) for worker in workers]
        proxy.close()
    elapsed = time.monotonic() - started
    phases = (
        f"api {requested_at - started:.0f}s, pipe {piped_at - requested_at:.0f}s,"
        f" workers {time.monotonic() - piped_at:.0f}s"
    )

    processed_events = [
        e for e in read_stream(aws.kinesis, STREAM) if e["type"] == "video.processed"
    ]
    processed = Counter(e["job_id"] for e in processed_events)
    dead = Counter(
        m["MessageAttributes"]["job_id"]["StringValue"]
        for m in drain_queue(aws.sqs, aws.dlq_url)
        if "job_id" in m.get("MessageAttributes", {})
    )
    cursor = admin_db.cursor()
    cursor.execute("SELECT id::text, state, attempts FROM jobs")
    rows = {job_id: (state, attempts) for job_id, state, attempts in cursor.fetchall()}

    with capsys.disabled():
        print(
            f"\n[fault injection] {JOBS} jobs, {WORKERS} worker processes, {elapsed:.0f}s ({phases}):"
            f" states={job_counts(admin_db)}"
            f" processed_events={sum(processed.values())} dlq_messages={sum(dead.values())}"
            f" aws_faults={dict(proxy.faults)} killed={dict(faults.killed)}"
            f" max_attempts={max(a for _, a in rows.values())}"
            f" retried_jobs={sum(1 for _, a in rows.values() if a > 1)}"
        )

    assert exit_codes == [0] * WORKERS
    assert len(rows) == JOBS
    bad = {job for job, source in jobs.items() if source in BAD_SOURCES}
    assert {job for job, (state, _) in rows.items() if state == "FAILED"} == bad
    assert {job for job, (state, _) in rows.items() if state == "COMPLETED"} == set(jobs) - bad
    assert processed == Counter({job: 1 for job in set(jobs) - bad})  # exactly once each
    assert len({e["event_id"] for e in processed_events}) == len(processed_events)
    assert dead == Counter({job: 1 for job in bad})  # exactly once each
    assert job_counts(admin_db) == {"COMPLETED": JOBS - len(bad), "FAILED": len(bad)}
    assert sum(proxy.faults.values()) > 0
    assert faults.killed["postgres"] > 0
