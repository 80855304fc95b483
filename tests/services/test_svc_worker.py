"""R3 / W5 / W6 / M3-M6: the worker in-process against real PostgreSQL, Redis, ffprobe and
ffmpeg, with S3, SQS, Kinesis and Secrets Manager from moto.

Workers log in as the worker's role (media_worker, G5) with only the grants of migrations
003-005, so every transition here (claim with a media version, lease extension, progress,
complete with the published version, fail, release, publication leases) also proves those
grants are enough; rows are submitted by the tables' owner, as the API would."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
import uuid
from functools import partial
from pathlib import Path, PurePosixPath

import pytest
from conftest import MAX_RECEIVE_COUNT, STREAM, connect_as
from svc_support import (
    TcpProxy,
    bucket_keys,
    drain_queue,
    queue_depth,
    read_stream,
    scratch_jobs,
    submit_job,
)

from services.common.aws import EventStream
from services.common.cache import VideoCache
from services.common.db import Database, DatabaseAuthError
from services.common.redis_client import create_redis
from services.common.roles import WORKER_DB_USER
from services.common.secrets import StaticDbCredentials
from services.common.settings import (
    CommonSettings,
    DatabaseSettings,
    MediaSettings,
    RedisSettings,
    SslMode,
    WorkerSettings,
)
from services.contract import parse_ladder
from services.worker.consumer import Outcome, StopSignal, Worker, WorkerDeps
from services.worker.errors import ProbeTimeout, TransientJobError
from services.worker.jobs import (
    Publication,
    PublishedVersion,
    claim_job,
    complete_job,
    fail_job,
)
from services.worker.keyring import KeyringSource
from services.worker.probe import MediaFacts
from services.worker.storage import MediaStorage
from services.worker.transcode import transcode, validate_source

pytestmark = pytest.mark.services

LADDER = "144:100"
"""One rung: every job really transcodes, encrypts and publishes, cheaply."""


@dataclasses.dataclass
class Kit:
    """Everything a worker test needs, with a way to build workers against it."""

    database: Database
    """Owner of the tables: writes the rows the API would (`submit`)."""
    worker_database: Database
    """Logged in as the worker's role (R3 with least privilege): what workers use."""
    aws: object
    redis_port: int
    media_root: Path
    scratch: Path
    admin: object

    def media(self, **overrides) -> MediaSettings:
        base = MediaSettings(
            ingest_bucket=self.aws.ingest_bucket,
            media_bucket=self.aws.media_bucket,
            ladder=parse_ladder(LADDER),
            segment_seconds=2,
            max_source_bytes=10 * 1024 * 1024,
            max_duration_seconds=60,
            delete_source_after_processing=False,
            transfer_concurrency=4,
            ffmpeg_path="ffmpeg",
        )
        return dataclasses.replace(base, **overrides)

    def settings(self, media=None, **overrides) -> WorkerSettings:
        common = CommonSettings(
            database=DatabaseSettings(
                host="unused", port=1, name="media", ssl_mode=SslMode.DISABLE
            ),
            redis=RedisSettings(host="127.0.0.1", port=self.redis_port, tls=False),
            stream_name=STREAM,
            cache_ttl_seconds=300,
            log_level="INFO",
            aws_region="eu-central-1",
        )
        base = WorkerSettings(
            common=common,
            jobs_queue_url=self.aws.jobs_queue_url,
            dead_letter_queue_url=self.aws.dlq_url,
            max_receive_count=MAX_RECEIVE_COUNT,
            job_timeout_seconds=10,
            visibility_timeout_seconds=30,
            content_key_secret_arn=self.aws.content_key_arn,
            scratch_dir=PurePosixPath(str(self.scratch)),
            media_root=None,
            media=media or self.media(),
            batch_size=10,
            receive_wait_seconds=0,
            retry_base_seconds=1.0,
            retry_max_seconds=1.0,
            stop_timeout_seconds=5.0,
            ffprobe_path="ffprobe",
        )
        return dataclasses.replace(base, **overrides)

    def worker(
        self,
        *,
        validate=None,
        transcode=transcode,
        storage=None,
        database=None,
        stream_name=STREAM,
        stream=None,
        stop=None,
        sleep=None,
        s3=None,
        **overrides,
    ):
        settings = self.settings(**overrides)
        cache = VideoCache(
            create_redis(settings.common.redis, None, client_name="media-worker"), 300
        )
        deps = WorkerDeps(
            database=database or self.worker_database,
            sqs=self.aws.sqs,
            stream=stream or EventStream(self.aws.kinesis, stream_name),
            cache=cache,
            storage=storage or MediaStorage(s3 or self.aws.s3, settings.media),
            keyring=KeyringSource(self.aws.secrets, settings.content_key_secret_arn),
            validate=validate or self.validate(settings),
            transcode=transcode,
            rng=lambda: 1.0,  # the longest backoff, so waits in tests are predictable
            sleep=sleep or time.sleep,
        )
        return Worker(settings, deps, stop or StopSignal(settings.stop_timeout_seconds))

    def validate(self, settings=None, ffprobe="ffprobe"):
        settings = settings or self.settings()
        return partial(validate_source, limits=settings.media, ffprobe_path=ffprobe)

    def clip(self, name: str) -> Path:
        return self.media_root / "clips" / name

    def submit(self, clip: str | None = "ok.mp4", **kwargs):
        """A job whose source is one of the clips (None: the upload never arrived)."""
        source = None if clip is None else self.clip(clip)
        return submit_job(self.database, self.aws, source, **kwargs)

    def job(self, job_id):
        cursor = self.admin.cursor()
        cursor.execute(
            "SELECT state, attempts, last_error, notified_at IS NOT NULL, finished_at IS NOT NULL,"
            " publish_token IS NOT NULL, media_version FROM jobs WHERE id = %s",
            (job_id,),
        )
        names = ("state", "attempts", "last_error", "notified", "finished", "publishing",
                 "media_version")  # fmt: skip
        return dict(zip(names, cursor.fetchone(), strict=True))

    def video(self, video_id):
        cursor = self.admin.cursor()
        names = (
            "status", "duration_s", "size_bytes", "container", "video_codec", "audio_codec",
            "width", "height", "bitrate", "progress", "media_versions", "published_version",
            "playlist_path", "poster_path", "key_version", "renditions",
        )  # fmt: skip
        cursor.execute(f"SELECT {', '.join(names)} FROM videos WHERE id = %s", (video_id,))
        return dict(zip(names, cursor.fetchone(), strict=True))

    def media_keys(self, prefix: str = "") -> list[str]:
        return bucket_keys(self.aws.s3, self.aws.media_bucket, prefix)

    def processed_events(self):
        return [e for e in read_stream(self.aws.kinesis, STREAM) if e["type"] == "video.processed"]

    def depth(self):
        return queue_depth(self.aws.sqs, self.aws.jobs_queue_url)


@pytest.fixture
def worker_database(pg_server, admin_db):
    database = connect_as(pg_server, WORKER_DB_USER, application_name="media-worker")
    yield database
    database.close()


@pytest.fixture
def kit(
    database, worker_database, aws, redis_proc, redis_client, media_root, tmp_path, admin_db
) -> Kit:
    return Kit(database, worker_database, aws, redis_proc.port, media_root, tmp_path, admin_db)


def wait_visible(kit: Kit, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while kit.depth()[0] == 0:
        assert time.monotonic() < deadline, "message never became visible again"
        time.sleep(0.1)


# --- the happy path ---------------------------------------------------------------------


def test_r3_m6_valid_upload_is_transcoded_published_recorded_cached_and_announced(
    kit, redis_client
):
    video_id, job_id = kit.submit("ok.mp4")
    assert kit.worker().poll_once() == [Outcome.COMPLETED]
    video = kit.video(video_id)
    assert video["status"] == "COMPLETED"
    assert video["duration_s"] == pytest.approx(1.0, abs=0.2)
    assert video["size_bytes"] == kit.clip("ok.mp4").stat().st_size
    assert "mp4" in video["container"]
    assert (video["video_codec"], video["audio_codec"]) == ("mpeg4", "aac")
    assert (video["width"], video["height"]) == (64, 64)
    assert video["bitrate"] > 0
    prefix = f"media/{video_id}/v1/"
    assert (video["published_version"], video["media_versions"]) == (1, 1)
    assert (video["playlist_path"], video["poster_path"]) == (
        prefix + "master.m3u8",
        prefix + "poster.jpg",
    )
    assert (video["key_version"], video["progress"]) == ("k2", None)
    [rendition] = video["renditions"]
    assert rendition["playlist"].startswith(prefix) and rendition["codecs"].startswith("avc1")
    keys = kit.media_keys()
    assert all(key.startswith(prefix) for key in keys)
    assert {video["playlist_path"], video["poster_path"], rendition["playlist"]} <= set(keys)
    job = kit.job(job_id)
    assert (job["state"], job["attempts"], job["notified"], job["finished"]) == (
        "COMPLETED",
        1,
        True,
        True,
    )
    assert job["media_version"] == 1
    cached = VideoCache(redis_client, 300).get(str(video_id))
    assert (cached["status"], cached["published_version"]) == ("COMPLETED", 1)
    assert cached["width"] == 64
    [event] = kit.processed_events()
    assert (event["video_id"], event["job_id"], event["status"]) == (
        str(video_id),
        str(job_id),
        "COMPLETED",
    )
    assert event["media"]["video_codec"] == "mpeg4"
    assert event["published"]["published_version"] == 1
    assert event["published"]["renditions"] == video["renditions"]
    assert kit.depth() == (0, 0)
    assert scratch_jobs(kit.scratch) == []


def test_r3_clip_without_audio_completes_with_no_audio_codec(kit):
    video_id, _ = kit.submit("silent.mp4")
    assert kit.worker().poll_once() == [Outcome.COMPLETED]
    assert (kit.video(video_id)["audio_codec"], kit.video(video_id)["width"]) == (None, 64)


def test_r3_kinesis_record_envelope_in_sqs_is_accepted(kit):
    _, job_id = kit.submit("ok.mp4", envelope=True)
    assert kit.worker().poll_once() == [Outcome.COMPLETED]
    assert kit.job(job_id)["state"] == "COMPLETED"


# --- permanent failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("clip", "reason"),
    [
        # Random bytes: named `source` on scratch, ffprobe may take them for MP3.
        ("corrupt.mp4", "rejected the media|'mp3' is not accepted"),
        ("empty.mp4", "empty"),
        ("audio_only.m4a", "no video stream"),
        (None, "does not exist"),
    ],
)
def test_w6_m3_permanent_failure_fails_the_job_and_dead_letters_at_once(
    kit, redis_client, clip, reason
):
    video_id, job_id = kit.submit(clip)
    assert kit.worker().poll_once() == [Outcome.FAILED]
    job = kit.job(job_id)
    assert (job["state"], job["attempts"], job["notified"]) == ("FAILED", 1, True)
    assert re.search(reason, job["last_error"])
    video = kit.video(video_id)
    assert (video["status"], video["published_version"], video["progress"]) == (
        "FAILED",
        None,
        None,
    )
    assert VideoCache(redis_client, 300).get(str(video_id))["status"] == "FAILED"
    [dead] = drain_queue(kit.aws.sqs, kit.aws.dlq_url)
    assert dead["MessageAttributes"]["job_id"]["StringValue"] == str(job_id)
    assert re.search(reason, dead["MessageAttributes"]["failure_reason"]["StringValue"])
    assert json.loads(dead["Body"])["job_id"] == str(job_id)
    assert kit.depth() == (0, 0)
    assert kit.processed_events() == []
    assert kit.media_keys() == []  # nothing published
    assert scratch_jobs(kit.scratch) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        json.dumps({"type": "job.requested", "version": 1}),
        json.dumps(
            {
                "type": "video.processed",
                "version": 1,
                "video_id": str(uuid.uuid4()),
                "job_id": str(uuid.uuid4()),
                "source_uri": "a",
                "occurred_at": "now",
            }
        ),
        json.dumps(
            {
                "type": "job.requested",
                "version": 1,
                "video_id": str(uuid.uuid4()),
                "job_id": str(uuid.uuid4()),
                "source_uri": "a",
                "occurred_at": "now",
            }
        ),
    ],
    ids=["not-json", "missing-fields", "wrong-type", "unknown-job"],
)
def test_w6_poison_message_goes_to_the_dead_letter_queue_once(kit, body):
    kit.aws.sqs.send_message(QueueUrl=kit.aws.jobs_queue_url, MessageBody=body)
    assert kit.worker().poll_once() == [Outcome.POISON]
    [dead] = drain_queue(kit.aws.sqs, kit.aws.dlq_url)
    assert dead["Body"] == body
    assert dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert kit.depth() == (0, 0)


# --- redelivery and leases --------------------------------------------------------------


def test_r3_redelivered_job_is_processed_once(kit):
    """Two deliveries of one job (SQS at-least-once, or the pipe retrying)."""
    _video_id, job_id = kit.submit("ok.mp4")
    event_body = drain_queue(kit.aws.sqs, kit.aws.jobs_queue_url)[0]["Body"]
    for _ in range(2):
        kit.aws.sqs.send_message(QueueUrl=kit.aws.jobs_queue_url, MessageBody=event_body)
    assert sorted(kit.worker(batch_size=1).poll_once() + kit.worker(batch_size=1).poll_once()) == [
        Outcome.COMPLETED,
        Outcome.DUPLICATE,
    ]
    assert kit.job(job_id)["attempts"] == 1
    assert len(kit.processed_events()) == 1
    assert kit.depth() == (0, 0)


def test_r3_ended_job_whose_outcome_was_not_published_is_published_on_redelivery(kit):
    """The worker died between committing COMPLETED and putting the event."""
    _video_id, job_id = kit.submit("ok.mp4")
    kit.admin.cursor().execute(
        "UPDATE jobs SET state = 'COMPLETED', finished_at = now() WHERE id = %s", (job_id,)
    )
    assert kit.worker().poll_once() == [Outcome.DUPLICATE]
    assert kit.job(job_id)["notified"] is True
    assert [e["job_id"] for e in kit.processed_events()] == [str(job_id)]
    assert kit.depth() == (0, 0)


def _ended_while_another_worker_publishes(kit, job_id, lease_interval: str) -> None:
    kit.admin.cursor().execute(
        "UPDATE jobs SET state = 'COMPLETED', attempts = 1, finished_at = now(),"
        " publish_token = %s, publish_lease_expires_at = now() + %s::interval WHERE id = %s",
        (uuid.uuid4(), lease_interval, job_id),
    )


def test_r3_redelivery_while_another_worker_publishes_the_outcome_waits_instead_of_publishing(
    kit,
):
    """The race behind a duplicated event: a worker ended the job and is still publishing
    when the message comes back to a second worker."""
    _, job_id = kit.submit("ok.mp4")
    _ended_while_another_worker_publishes(kit, job_id, "60 seconds")
    assert kit.worker().poll_once() == [Outcome.DEFERRED]
    job = kit.job(job_id)
    assert (job["state"], job["notified"], job["publishing"]) == ("COMPLETED", False, True)
    assert kit.processed_events() == []
    assert kit.depth() == (0, 1)  # hidden until the publication lease would have lapsed


def test_r3_publication_lease_of_a_crashed_worker_is_taken_over_once_it_lapses(kit):
    _, job_id = kit.submit("ok.mp4")
    _ended_while_another_worker_publishes(kit, job_id, "-1 second")
    assert kit.worker().poll_once() == [Outcome.DUPLICATE]
    job = kit.job(job_id)
    assert (job["notified"], job["publishing"]) == (True, False)
    assert [e["job_id"] for e in kit.processed_events()] == [str(job_id)]
    assert kit.depth() == (0, 0)


@pytest.mark.parametrize("outcome", ["COMPLETED", "FAILED"])
def test_r3_ending_a_job_again_in_the_same_attempt_is_idempotent_as_after_a_lost_commit_reply(
    kit, outcome
):
    """A COMMIT whose reply was lost is run again on a new connection; the second run must
    return the video (so the outcome is published now) and change nothing."""
    video_id, job_id = kit.submit("ok.mp4")
    cursor = kit.admin.cursor()
    token = uuid.uuid4()
    claim = claim_job(cursor, job_id=job_id, video_id=video_id, token=token, lease_seconds=30)
    publication = Publication(token, 30)
    facts = MediaFacts(2.0, 1000, "mov,mp4", "h264", "aac", 64, 48, 4000)
    published = PublishedVersion(claim.media_version, "p/master.m3u8", "p/poster.jpg", "k2", [])

    def end_job():
        if outcome == "COMPLETED":
            return complete_job(cursor, claim, facts, published, publication)
        return fail_job(cursor, job_id=job_id, video_id=video_id, token=token,
                        reason="bad media", publication=publication)  # fmt: skip

    first, again = end_job(), end_job()
    assert (first.status, again.status) == (outcome, outcome)
    job = kit.job(job_id)
    assert (job["state"], job["attempts"], job["publishing"]) == (outcome, 1, True)
    other = Publication(uuid.uuid4(), 30)
    assert complete_job(cursor, claim, facts, published, other) is None  # another attempt


def _processing_under_another_workers_lease(kit, job_id, lease_interval: str) -> None:
    kit.admin.cursor().execute(
        "UPDATE jobs SET state = 'PROCESSING', attempts = 1, lease_token = %s,"
        " lease_expires_at = now() + %s::interval WHERE id = %s",
        (uuid.uuid4(), lease_interval, job_id),
    )


def test_r3_job_leased_by_a_live_worker_is_deferred_not_processed(kit):
    _, job_id = kit.submit("ok.mp4")
    _processing_under_another_workers_lease(kit, job_id, "60 seconds")
    assert kit.worker().poll_once() == [Outcome.DEFERRED]
    assert (kit.job(job_id)["state"], kit.job(job_id)["attempts"]) == ("PROCESSING", 1)
    assert kit.depth() == (0, 1)  # hidden until the other lease would have lapsed
    assert kit.processed_events() == []


def test_r3_job_of_a_crashed_worker_is_reclaimed_after_its_lease_expires(kit):
    _, job_id = kit.submit("ok.mp4")
    _processing_under_another_workers_lease(kit, job_id, "-1 second")
    assert kit.worker().poll_once() == [Outcome.COMPLETED]
    assert (kit.job(job_id)["state"], kit.job(job_id)["attempts"]) == ("COMPLETED", 2)
    assert len(kit.processed_events()) == 1


def test_r3_worker_whose_lease_was_taken_over_does_not_complete(kit):
    _, job_id = kit.submit("ok.mp4")

    def transcode_then_lose_lease(*args, **kwargs):
        result = transcode(*args, **kwargs)
        kit.admin.cursor().execute(
            "UPDATE jobs SET lease_token = %s WHERE id = %s", (uuid.uuid4(), job_id)
        )
        return result

    assert kit.worker(transcode=transcode_then_lose_lease).poll_once() == [Outcome.LEASE_LOST]
    assert kit.job(job_id)["state"] == "PROCESSING"
    assert kit.processed_events() == []
    assert kit.media_keys() == []  # the version it uploaded is discarded (M6)
    assert scratch_jobs(kit.scratch) == []


# --- the outcome sweep (W6: nothing is lost) ---------------------------------------------


def _strand(kit, job_id, state: str = "COMPLETED", **columns) -> None:
    """An ended job whose outcome never left the database and whose message is gone."""
    drain_queue(kit.aws.sqs, kit.aws.jobs_queue_url)
    values = {"finished_at": "now() - interval '1 hour'", "publish_token": "NULL",
              "publish_lease_expires_at": "NULL", "last_error": "NULL"} | columns  # fmt: skip
    kit.admin.cursor().execute(
        f"UPDATE jobs SET state = '{state}', attempts = 1,"
        + ", ".join(f" {name} = {value}" for name, value in values.items())
        + " WHERE id = %s",
        (job_id,),
    )


def test_w6_sweep_publishes_a_completed_job_its_worker_left_unpublished_exactly_once(kit):
    _, job_id = kit.submit("ok.mp4")
    _strand(kit, job_id)
    worker = kit.worker()
    assert worker.sweep_unpublished() == 1
    assert [e["job_id"] for e in kit.processed_events()] == [str(job_id)]
    job = kit.job(job_id)
    assert (job["notified"], job["publishing"]) == (True, False)
    assert worker.sweep_unpublished() == 0
    assert len(kit.processed_events()) == 1


def test_w6_sweep_dead_letters_a_failed_job_with_its_reason_and_id(kit):
    video_id, job_id = kit.submit("corrupt.mp4")
    _strand(kit, job_id, "FAILED", last_error="'ffprobe rejected the media'")
    assert kit.worker().sweep_unpublished() == 1
    [dead] = drain_queue(kit.aws.sqs, kit.aws.dlq_url)
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes == {"job_id": str(job_id), "failure_reason": "ffprobe rejected the media",
                          "source_message_id": "outcome-sweep"}  # fmt: skip
    body = json.loads(dead["Body"])
    assert (body["type"], body["job_id"], body["video_id"]) == (
        "job.requested",
        str(job_id),
        str(video_id),
    )
    assert kit.processed_events() == []
    assert kit.job(job_id)["notified"] is True


@pytest.mark.parametrize(
    "columns",
    [
        {"finished_at": "now()"},  # its own message still has a visibility timeout to come
        {"publish_token": "gen_random_uuid()",  # another worker is publishing it
         "publish_lease_expires_at": "now() + interval '60 seconds'"},
        {"notified_at": "now()"},  # already out
    ],
)  # fmt: skip
def test_w6_sweep_leaves_recent_leased_and_published_jobs_alone(kit, columns):
    _, job_id = kit.submit("ok.mp4")
    _strand(kit, job_id, **columns)
    assert kit.worker().sweep_unpublished() == 0
    assert kit.processed_events() == []


def test_w6_publication_failing_on_the_last_receive_hands_the_outcome_to_the_sweep(kit):
    """SQS would dead-letter the request of a job that completed; instead the message is
    deleted, the lease handed back, and the sweep publishes the outcome."""
    _, job_id = kit.submit("ok.mp4")
    worker = kit.worker(stream_name="missing-stream", max_receive_count=1)
    assert worker.poll_once() == [Outcome.HANDED_OVER]
    job = kit.job(job_id)
    assert (job["state"], job["notified"], job["publishing"]) == ("COMPLETED", False, False)
    assert kit.depth() == (0, 0)
    assert drain_queue(kit.aws.sqs, kit.aws.dlq_url) == []
    kit.admin.cursor().execute(
        "UPDATE jobs SET finished_at = now() - interval '1 hour' WHERE id = %s", (job_id,)
    )
    assert kit.worker().sweep_unpublished() == 1
    assert [e["job_id"] for e in kit.processed_events()] == [str(job_id)]


def test_w6_last_receive_while_another_worker_publishes_is_deleted_not_dead_lettered(kit):
    _, job_id = kit.submit("ok.mp4")
    _ended_while_another_worker_publishes(kit, job_id, "60 seconds")
    assert kit.worker(max_receive_count=1).poll_once() == [Outcome.DUPLICATE]
    assert kit.depth() == (0, 0)
    assert drain_queue(kit.aws.sqs, kit.aws.dlq_url) == []
    assert kit.processed_events() == []  # the lease holder publishes, or else the sweep


def test_w6_run_loop_sweeps_stranded_outcomes(kit):
    _, job_id = kit.submit("ok.mp4")
    _strand(kit, job_id)
    stop = StopSignal(5)
    threading.Timer(1.0, stop.request).start()
    assert kit.worker(stop=stop).run() == 0
    assert [e["job_id"] for e in kit.processed_events()] == [str(job_id)]


# --- transient failures -----------------------------------------------------------------


def test_w6_database_outage_mid_job_backs_off_then_completes_exactly_once(kit, pg_server):
    """The database disappears while ffprobe validates: the attempt is retried after a
    backoff, and the lease of the half-done attempt lapses so the retry can claim the job,
    which writes a new version (M6)."""
    proxy = TcpProxy(pg_server.port)
    database = connect_as(
        pg_server, WORKER_DB_USER, application_name="media-worker", port=proxy.port
    )
    video_id, job_id = kit.submit("ok.mp4")

    def validate_during_outage(source, *, deadline):
        proxy.cut()
        return kit.validate()(source, deadline=deadline)

    try:
        outcome = kit.worker(
            validate=validate_during_outage,
            database=database,
            job_timeout_seconds=3,
            visibility_timeout_seconds=4,
        ).poll_once()
        assert outcome == [Outcome.RETRY]
        assert kit.job(job_id)["state"] == "PROCESSING"  # could not even be released
        assert kit.depth() == (0, 1)
        proxy.restore()
        wait_visible(kit)  # backoff of at most RETRY_MAX_SECONDS (1 s)
        time.sleep(4.1)  # the stranded lease (VISIBILITY_TIMEOUT_SECONDS) runs out
        worker = kit.worker(database=database, job_timeout_seconds=3, visibility_timeout_seconds=4)
        assert worker.poll_once() == [Outcome.COMPLETED]
    finally:
        database.close()
        proxy.close()
    job = kit.job(job_id)
    assert (job["state"], job["attempts"], job["media_version"]) == ("COMPLETED", 2, 2)
    assert len(kit.processed_events()) == 1
    video = kit.video(video_id)
    assert (video["status"], video["published_version"]) == ("COMPLETED", 2)
    assert all(key.startswith(f"media/{video_id}/v2/") for key in kit.media_keys())


def test_w6_terminated_backend_mid_job_is_survived_by_reconnecting(kit):
    _, job_id = kit.submit("ok.mp4")

    def validate_and_kill_backend(source, *, deadline):
        kit.admin.cursor().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'media-worker'"
        )
        return kit.validate()(source, deadline=deadline)

    assert kit.worker(validate=validate_and_kill_backend).poll_once() == [Outcome.COMPLETED]
    assert (kit.job(job_id)["state"], kit.job(job_id)["attempts"]) == ("COMPLETED", 1)


def test_w6_stream_outage_after_commit_publishes_once_on_the_next_delivery(kit):
    _, job_id = kit.submit("ok.mp4")
    assert kit.worker(stream_name="missing-stream").poll_once() == [Outcome.RETRY]
    job = kit.job(job_id)
    assert (job["state"], job["notified"]) == ("COMPLETED", False)
    wait_visible(kit)
    assert kit.worker().poll_once() == [Outcome.DUPLICATE]
    assert kit.job(job_id)["notified"] is True
    assert len(kit.processed_events()) == 1
    assert kit.depth() == (0, 0)


class OutageAfterPut:
    """A stream whose put succeeds and then takes the database away, as when the database
    fails over between publishing an outcome and recording it."""

    def __init__(self, stream: EventStream, proxy: TcpProxy) -> None:
        self._stream, self._proxy = stream, proxy

    def put(self, event) -> None:
        self._stream.put(event)
        self._proxy.cut()


def _worker_behind(kit, pg_server, proxy: TcpProxy, **overrides):
    database = connect_as(
        pg_server, WORKER_DB_USER, application_name="media-worker", port=proxy.port
    )
    stream = OutageAfterPut(EventStream(kit.aws.kinesis, STREAM), proxy)
    return kit.worker(database=database, stream=stream, **overrides), database


def test_r3_recording_a_publication_outlives_a_short_database_outage_so_it_goes_out_once(
    kit, pg_server
):
    _, job_id = kit.submit("ok.mp4")
    proxy = TcpProxy(pg_server.port)
    sleeps: list[float] = []

    def sleep_then_restore(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            proxy.restore()

    worker, database = _worker_behind(kit, pg_server, proxy, sleep=sleep_then_restore)
    try:
        assert worker.poll_once() == [Outcome.COMPLETED]
    finally:
        database.close()
        proxy.close()
    assert sleeps == [0.1, 0.2]  # exponential, from 0.1 s
    job = kit.job(job_id)
    assert (job["state"], job["notified"], job["publishing"]) == ("COMPLETED", True, False)
    assert len(kit.processed_events()) == 1
    assert kit.depth() == (0, 0)


def test_r3_outage_outlasting_the_publication_lease_keeps_the_lease_for_a_later_republication(
    kit, pg_server
):
    """Published but never recorded: the message is retried and the lease is kept, so the
    next delivery republishes only after the lease lapses (same event_id)."""
    _, job_id = kit.submit("ok.mp4")
    proxy = TcpProxy(pg_server.port)
    worker, database = _worker_behind(kit, pg_server, proxy, visibility_timeout_seconds=2)
    try:
        assert worker.poll_once() == [Outcome.RETRY]
    finally:
        database.close()
        proxy.close()
    job = kit.job(job_id)
    assert (job["state"], job["notified"], job["publishing"]) == ("COMPLETED", False, True)
    assert len(kit.processed_events()) == 1
    assert kit.depth() == (0, 1)


def test_w6_redis_outage_is_transient_and_retried(kit, redis_client):
    proxy = TcpProxy(kit.redis_port)
    proxy.cut()
    kit_down = dataclasses.replace(kit, redis_port=proxy.port)
    video_id, job_id = kit.submit("ok.mp4")
    try:
        assert kit_down.worker().poll_once() == [Outcome.RETRY]
        assert kit.processed_events() == []
        wait_visible(kit)
        assert kit.worker().poll_once() == [Outcome.DUPLICATE]
    finally:
        proxy.close()
    assert VideoCache(redis_client, 300).get(str(video_id))["status"] == "COMPLETED"
    assert kit.job(job_id)["notified"] is True


def test_w6_transient_failures_back_off_then_fail_on_the_last_receive_before_sqs_dead_letters(kit):
    """Each attempt fails transiently; the one at MAX_RECEIVE_COUNT records FAILED and SQS's
    redrive policy (maxReceiveCount) moves the message to the dead-letter queue."""
    video_id, job_id = kit.submit("ok.mp4")

    def flaky_validate(source, *, deadline):
        raise TransientJobError("ffprobe could not start")

    outcomes = []
    for attempt in range(MAX_RECEIVE_COUNT):
        if attempt:
            wait_visible(kit)
        outcomes += kit.worker(validate=flaky_validate).poll_once()
        job = kit.job(job_id)
        assert job["attempts"] == attempt + 1
        if attempt + 1 < MAX_RECEIVE_COUNT:
            assert job["state"] == "QUEUED"  # released for the retry
    assert outcomes == [Outcome.RETRY] * (MAX_RECEIVE_COUNT - 1) + [Outcome.FAILED]
    job = kit.job(job_id)
    assert job["state"] == "FAILED"
    assert job["last_error"].startswith(f"gave up after {MAX_RECEIVE_COUNT} attempts")
    assert kit.video(video_id)["status"] == "FAILED"
    # The next receive lets SQS redrive it: nothing for the worker, one message in the DLQ.
    assert kit.worker().poll_once() == []
    dead = drain_queue(kit.aws.sqs, kit.aws.dlq_url)
    assert [json.loads(m["Body"])["job_id"] for m in dead] == [str(job_id)]
    assert kit.processed_events() == []


def test_w6_database_rejecting_credentials_releases_the_batch_and_stops(kit, pg_server):
    database = Database(
        pg_server.settings(),
        StaticDbCredentials(WORKER_DB_USER, "wrong"),
        application_name="media-worker",
    )
    kit.submit("ok.mp4")
    kit.submit("ok.mp4")
    with pytest.raises(DatabaseAuthError):
        kit.worker(database=database).poll_once()
    assert kit.depth() == (2, 0)


# --- shutdown ---------------------------------------------------------------------------


def test_r3_stop_before_a_batch_releases_every_message(kit):
    stop = StopSignal(5)
    worker = kit.worker(stop=stop)
    jobs = [kit.submit("ok.mp4")[1] for _ in range(3)]
    stop.request()
    assert worker.poll_once() == []
    assert kit.depth() == (3, 0)
    assert {kit.job(j)["state"] for j in jobs} == {"QUEUED"}


def test_r3_stop_during_a_slow_probe_releases_the_job_within_the_stop_timeout(kit, tmp_path):
    slow = tmp_path / "slow-ffprobe"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    stop = StopSignal(0.5)
    _, job_id = kit.submit("ok.mp4")
    worker = kit.worker(stop=stop, validate=kit.validate(ffprobe=str(slow)))
    threading.Timer(0.3, stop.request).start()
    started = time.monotonic()
    assert worker.poll_once() == [Outcome.RELEASED]
    assert time.monotonic() - started < 3
    assert (kit.job(job_id)["state"], kit.depth()) == ("QUEUED", (1, 0))
    assert scratch_jobs(kit.scratch) == []


def test_r3_run_loop_beats_and_exits_zero_on_stop(kit):
    stop = StopSignal(5)
    worker = kit.worker(stop=stop)
    _, job_id = kit.submit("ok.mp4")
    threading.Timer(1.0, stop.request).start()
    assert worker.run() == 0
    assert kit.job(job_id)["state"] == "COMPLETED"
    beat = json.loads((kit.scratch / "media-worker.heartbeat").read_text())
    assert beat["pid"] == os.getpid()
    assert time.time() - beat["ts"] < 5


def test_w6_run_loop_survives_sqs_receive_failures(kit):
    stop = StopSignal(5)
    worker = kit.worker(stop=stop, jobs_queue_url=kit.aws.jobs_queue_url + "-missing")
    threading.Timer(0.5, stop.request).start()
    started = time.monotonic()
    assert worker.run() == 0
    assert time.monotonic() - started < 5


def test_w6_last_receive_records_failed_even_when_shutting_down(kit):
    _, job_id = kit.submit("ok.mp4")

    def interrupted(source, *, deadline):
        raise ProbeTimeout("ffprobe timed out", shutting_down=True)

    assert kit.worker(validate=interrupted, max_receive_count=1).poll_once() == [Outcome.FAILED]
    assert kit.job(job_id)["state"] == "FAILED"
    assert kit.depth() == (1, 0)  # visible at once, for SQS's redrive


def test_w6_unreadable_message_is_retried_when_the_dead_letter_queue_is_unreachable(kit):
    kit.aws.sqs.send_message(QueueUrl=kit.aws.jobs_queue_url, MessageBody="garbage")
    worker = kit.worker(dead_letter_queue_url=kit.aws.dlq_url + "-missing")
    assert worker.poll_once() == [Outcome.RETRY]
    wait_visible(kit)  # backoff, not lost
    assert kit.worker().poll_once() == [Outcome.POISON]
    assert [m["Body"] for m in drain_queue(kit.aws.sqs, kit.aws.dlq_url)] == ["garbage"]


# --- M5 / M6: what may never be published -------------------------------------------------


def test_m5_m6_a_key_file_among_the_outputs_stops_the_publication_and_nothing_stays(kit):
    """Defence in depth: only playlists, segments and posters are ever uploaded; a key file
    (or anything else) in a transcode's file list stops the publication and the version's
    prefix is emptied."""
    video_id, job_id = kit.submit("ok.mp4")

    def transcode_leaking_a_key(source, facts, output, **kwargs):
        result = transcode(source, facts, output, **kwargs)
        (output / "title.key").write_bytes(b"k" * 16)
        return dataclasses.replace(result, files=(*result.files, "title.key"))

    assert kit.worker(transcode=transcode_leaking_a_key).poll_once() == [Outcome.RETRY]
    assert "refusing to publish 'title.key'" in kit.job(job_id)["last_error"]
    assert kit.media_keys() == []
    assert kit.video(video_id)["published_version"] is None
    assert scratch_jobs(kit.scratch) == []


def test_m5_misconfigured_content_keyring_is_retried_not_blamed_on_the_media(kit):
    """An operator's broken secret is fixed by the operator; the job waits for it (retried
    up to the receive limit) instead of ending FAILED as if the upload were bad."""
    kit.aws.secrets.put_secret_value(
        SecretId=kit.aws.content_key_arn, SecretString='{"current": "k9", "keys": {}}'
    )
    _, job_id = kit.submit("ok.mp4")
    assert kit.worker().poll_once() == [Outcome.RETRY]
    job = kit.job(job_id)
    assert job["state"] == "QUEUED"
    assert "content-key secret is misconfigured" in job["last_error"]
    assert kit.media_keys() == []
