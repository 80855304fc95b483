"""M3 / M4 / M6: the worker's media flow with S3 from moto's server over real HTTP (through a
proxy that can refuse a call), real PostgreSQL, Redis, ffprobe and ffmpeg, tiny clips.

An upload goes UPLOADED -> PROCESSING -> COMPLETED with its version's every object in the
media bucket before the row names it; every failure leaves no version referenced, no
partial prefix and no scratch behind; a retry or a redelivery writes a new version."""

# The worker fixtures live in test_svc_worker.py; importing them redefines their names.

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import connect_as, worker_environment
from svc_support import (
    AwsFaults,
    FaultyAwsProxy,
    bucket_keys,
    drain_queue,
    queue_depth,
    scratch_jobs,
    start_worker,
    submit_job,
)
from test_svc_worker import Kit, wait_visible
from test_svc_worker_process import run_until_exit, wait_for

from services.common.roles import WORKER_DB_USER
from services.contract import source_key
from services.worker.consumer import Outcome, StopSignal
from services.worker.errors import PermanentJobError
from services.worker.storage import (
    IMMUTABLE_CACHE_CONTROL,
    PLAYLIST_CACHE_CONTROL,
    MediaStorage,
    s3_client,
)

pytestmark = pytest.mark.services

REGION = "eu-central-1"


def _ffmpeg(*args: str) -> None:
    import subprocess

    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A 4 s clip (for runs that must last), and a container the worker does not accept."""
    directory = tmp_path_factory.mktemp("flow-clips")
    long_clip, flv = directory / "long.mp4", directory / "clip.flv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=4",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
            "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(long_clip))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-c:v", "flv1",
            "-f", "flv", str(flv))  # fmt: skip
    return {"long": long_clip, "flv": flv}


@pytest.fixture
def s3_proxy(moto_server):
    proxy = FaultyAwsProxy(moto_server, faults=AwsFaults(rate=0.0, operations=set()))
    yield proxy
    proxy.close()


@pytest.fixture
def flow(pg_server, database, served_aws, redis_proc, redis_client, media_root, tmp_path,
         admin_db, s3_proxy):  # fmt: skip
    worker_database = connect_as(pg_server, WORKER_DB_USER, application_name="media-worker")
    kit = FlowKit(database, worker_database, served_aws, redis_proc.port, media_root,
                  tmp_path / "scratch", admin_db, proxy=s3_proxy)  # fmt: skip
    kit.scratch.mkdir()
    yield kit
    worker_database.close()


@dataclasses.dataclass
class FlowKit(Kit):
    proxy: FaultyAwsProxy | None = None

    def worker(self, **kwargs):
        # The worker's own S3 client, through the proxy: real HTTP, refusable calls.
        kwargs.setdefault("s3", s3_client(REGION, concurrency=4, endpoint_url=self.proxy.url))
        return super().worker(**kwargs)

    def submit_path(self, path: Path):
        return submit_job(self.database, self.aws, path)

    def slow_ffmpeg(self, directory: Path) -> tuple[str, Path]:
        """An ffmpeg that reads its input in real time (`-re`), so a 4 s clip takes about
        4 s, and leaves its process id behind."""
        pid_file = directory / "ffmpeg.pid"
        script = directory / "ffmpeg-realtime"
        script.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec ffmpeg -re "$@"\n')
        script.chmod(0o755)
        return str(script), pid_file

    def assert_nothing_left(self, video_id) -> None:
        assert bucket_keys(self.aws.s3, self.aws.media_bucket, f"media/{video_id}/") == []
        assert scratch_jobs(self.scratch) == []


def _head(kit: Kit, key: str) -> dict:
    return kit.aws.s3.head_object(Bucket=kit.aws.media_bucket, Key=key)


# --- the happy path -----------------------------------------------------------------------


def test_m4_m6_upload_goes_uploaded_processing_completed_with_every_object_under_v1(flow):
    video_id, job_id = flow.submit("ok.mp4")
    assert flow.video(video_id)["status"] == "UPLOADED"
    seen = {}

    def transcode_and_look(*args, **kwargs):
        seen.update(flow.video(video_id))  # mid-run, as GET /videos/{id} would show it
        return flow_transcode(*args, **kwargs)

    from services.worker.transcode import transcode as flow_transcode

    assert flow.worker(transcode=transcode_and_look).poll_once() == [Outcome.COMPLETED]
    assert (seen["status"], seen["media_versions"], seen["published_version"]) == (
        "PROCESSING",
        1,
        None,
    )
    video = flow.video(video_id)
    prefix = f"media/{video_id}/v1/"
    assert (video["status"], video["published_version"], video["key_version"]) == (
        "COMPLETED",
        1,
        "k2",
    )
    [rendition] = video["renditions"]
    assert set(rendition) == {"name", "width", "height", "bitrate", "bandwidth", "codecs",
                              "playlist"}  # fmt: skip
    assert (rendition["width"], rendition["height"], rendition["bitrate"]) == (64, 64, 100_000)
    keys = bucket_keys(flow.aws.s3, flow.aws.media_bucket)
    assert keys and all(key.startswith(prefix) for key in keys)
    segments = [key for key in keys if key.endswith(".ts")]
    assert segments and {video["playlist_path"], video["poster_path"], rendition["playlist"]} == (
        set(keys) - set(segments)
    )
    # No key file anywhere in the bucket (M5), and each object typed and cached for HLS.
    assert not any("key" in key.rsplit("/", 1)[-1] for key in keys)
    for key in keys:
        head = _head(flow, key)
        expected = {
            ".m3u8": ("application/vnd.apple.mpegurl", PLAYLIST_CACHE_CONTROL),
            ".ts": ("video/mp2t", IMMUTABLE_CACHE_CONTROL),
            ".jpg": ("image/jpeg", IMMUTABLE_CACHE_CONTROL),
        }[Path(key).suffix]
        assert (head["ContentType"], head["CacheControl"]) == expected, key
    master = flow.aws.s3.get_object(Bucket=flow.aws.media_bucket, Key=video["playlist_path"])
    assert "#EXT-X-STREAM-INF" in master["Body"].read().decode()
    job = flow.job(job_id)
    assert (job["state"], job["media_version"], job["notified"]) == ("COMPLETED", 1, True)
    # The source stays unless the stack deletes sources after processing (M2).
    assert bucket_keys(flow.aws.s3, flow.aws.ingest_bucket) == [source_key(str(video_id))]
    assert scratch_jobs(flow.scratch) == []


def test_m2_source_deleted_after_processing_when_configured(flow):
    video_id, _ = flow.submit("ok.mp4")
    worker = flow.worker(media=flow.media(delete_source_after_processing=True))
    assert worker.poll_once() == [Outcome.COMPLETED]
    assert flow.video(video_id)["published_version"] == 1
    assert bucket_keys(flow.aws.s3, flow.aws.ingest_bucket) == []


def test_m4_long_run_extends_the_queue_and_database_leases_and_records_progress(
    flow, clips, tmp_path
):
    """Visibility 3 s, a transcode of about 4 s: without the lease keeper the message would
    be visible again, and the job's lease lapsed, before the job ends."""
    ffmpeg, _ = flow.slow_ffmpeg(tmp_path)
    video_id, job_id = flow.submit_path(clips["long"])
    samples: list[tuple] = []
    done = threading.Event()

    def sample() -> None:
        admin = flow.database
        while not done.wait(0.25):
            row = admin.run(
                lambda cursor: (
                    cursor.execute(
                        "SELECT v.progress, j.lease_expires_at, now() FROM videos v"
                        " JOIN jobs j ON j.video_id = v.id WHERE j.id = %s",
                        (job_id,),
                    ),
                    cursor.fetchone(),
                )[1]
            )
            samples.append((*row, queue_depth(flow.aws.sqs, flow.aws.jobs_queue_url)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        worker = flow.worker(
            visibility_timeout_seconds=3,
            job_timeout_seconds=20,
            media=flow.media(ffmpeg_path=ffmpeg),
        )
        assert worker.poll_once() == [Outcome.COMPLETED]
    finally:
        done.set()
        sampler.join()
    assert time.monotonic() - started > 3.5  # longer than the visibility timeout
    running = [s for s in samples if s[1] is not None]
    progress = {s[0] for s in running if s[0] is not None}
    assert any(0 < fraction < 1 for fraction in progress), progress
    expiries = sorted({s[1] for s in running})
    assert len(expiries) >= 3, expiries  # the claim's lease, then extended again and again
    assert all(expiry > now for _, expiry, now, _ in running)  # never lapsed while running
    assert all(depth == (0, 1) for *_, depth in running)  # never visible to another worker
    assert flow.video(video_id)["progress"] is None
    assert flow.job(job_id)["attempts"] == 1


def test_m4_lease_taken_over_mid_transcode_stops_the_transcode_and_publishes_nothing(
    flow, clips, tmp_path
):
    """Another worker claimed the job after this one stalled: the next lease extension is
    refused, the transcode stops at once (not after the clip's 4 s) and nothing is kept."""
    ffmpeg, pid_file = flow.slow_ffmpeg(tmp_path)
    video_id, job_id = flow.submit_path(clips["long"])

    def take_over_once_running() -> None:
        wait_for(pid_file.exists, 20, "ffmpeg to start")
        flow.database.run(
            lambda cursor: cursor.execute(
                "UPDATE jobs SET lease_token = gen_random_uuid() WHERE id = %s", (job_id,)
            )
        )

    threading.Thread(target=take_over_once_running).start()
    worker = flow.worker(
        visibility_timeout_seconds=3, job_timeout_seconds=20, media=flow.media(ffmpeg_path=ffmpeg)
    )
    started = time.monotonic()
    assert worker.poll_once() == [Outcome.LEASE_LOST]
    assert time.monotonic() - started < 4  # the whole clip takes 4 s at real time
    assert flow.job(job_id)["state"] == "PROCESSING"  # the other worker's now
    assert flow.video(video_id)["published_version"] is None
    flow.assert_nothing_left(video_id)


# --- failures: nothing published, nothing left on scratch -----------------------------------


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("corrupt", "rejected the media|is not accepted"),
        ("unsupported-container", "'flv' is not accepted"),
        ("missing-source", "does not exist"),
        ("over-the-size-limit", "more than the 1000 bytes allowed"),
        ("over-the-free-scratch", "scratch space has only"),
    ],
)
def test_m3_rejected_source_ends_failed_with_a_reason_and_publishes_nothing(
    flow, clips, case, reason
):
    worker_args = {}
    if case == "corrupt":
        video_id, job_id = flow.submit("corrupt.mp4")
    elif case == "unsupported-container":
        video_id, job_id = flow.submit_path(clips["flv"])
    elif case == "missing-source":
        video_id, job_id = flow.submit(None)
    else:
        video_id, job_id = flow.submit("ok.mp4")
        if case == "over-the-size-limit":
            worker_args["media"] = flow.media(max_source_bytes=1000)
        else:
            # The real free-space check, with the scratch's reserve set above what is free —
            # by far more than other tests free on the same disk meanwhile.
            s3 = s3_client(REGION, concurrency=4, endpoint_url=flow.proxy.url)
            free = __import__("shutil").disk_usage(flow.scratch).free
            worker_args["storage"] = MediaStorage(
                s3, flow.media(), scratch_reserve_bytes=free + 64 * 2**30
            )
    assert flow.worker(**worker_args).poll_once() == [Outcome.FAILED]
    job = flow.job(job_id)
    assert (job["state"], job["attempts"]) == ("FAILED", 1)
    assert __import__("re").search(reason, job["last_error"]), job["last_error"]
    video = flow.video(video_id)
    assert (video["status"], video["published_version"]) == ("FAILED", None)
    [dead] = drain_queue(flow.aws.sqs, flow.aws.dlq_url)
    assert dead["MessageAttributes"]["failure_reason"]["StringValue"] == job["last_error"]
    flow.assert_nothing_left(video_id)


def test_m3_disk_filling_up_while_fetching_is_a_permanent_failure_with_a_reason(flow):
    """ENOSPC from the kernel (/dev/full), not a simulated one."""
    video_id, _ = flow.submit("ok.mp4")
    storage = MediaStorage(flow.aws.s3, flow.media())
    with pytest.raises(PermanentJobError, match="scratch space ran out"):
        storage.fetch_source(
            str(video_id),
            Path("/dev/full"),
            deadline=lambda: (time.monotonic() + 10, False),
            stop_requested=lambda: False,
        )


def test_m4_ffmpeg_killed_mid_run_is_retried_and_leaves_no_partial_version(flow, clips, tmp_path):
    ffmpeg, pid_file = flow.slow_ffmpeg(tmp_path)
    video_id, job_id = flow.submit_path(clips["long"])

    def kill_ffmpeg() -> None:
        wait_for(pid_file.exists, 20, "ffmpeg to start")
        time.sleep(0.5)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_ffmpeg)
    killer.start()
    outcome = flow.worker(media=flow.media(ffmpeg_path=ffmpeg)).poll_once()
    killer.join()
    assert outcome == [Outcome.RETRY]
    assert "killed by signal 9" in flow.job(job_id)["last_error"]
    assert flow.job(job_id)["state"] == "QUEUED"
    flow.assert_nothing_left(video_id)
    wait_visible(flow)
    assert flow.worker().poll_once() == [Outcome.COMPLETED]
    video = flow.video(video_id)
    assert (video["published_version"], flow.job(job_id)["attempts"]) == (2, 2)
    keys = bucket_keys(flow.aws.s3, flow.aws.media_bucket)
    assert keys and all(key.startswith(f"media/{video_id}/v2/") for key in keys)
    assert scratch_jobs(flow.scratch) == []


def test_m6_s3_refusing_a_put_leaves_no_version_and_the_retry_publishes_a_new_complete_one(
    flow,
):
    video_id, job_id = flow.submit("ok.mp4")
    flow.proxy.refuse = lambda operation, path: (
        operation == "PutObject" and path.endswith("/v1/poster.jpg")
    )
    assert flow.worker().poll_once() == [Outcome.RETRY]
    assert "AccessDenied" in flow.job(job_id)["last_error"]
    video = flow.video(video_id)
    assert (video["status"], video["published_version"], video["playlist_path"]) == (
        "PROCESSING",
        None,
        None,
    )
    flow.assert_nothing_left(video_id)  # what v1 had uploaded was discarded
    flow.proxy.refuse = None
    wait_visible(flow)
    assert flow.worker().poll_once() == [Outcome.COMPLETED]
    video = flow.video(video_id)
    assert video["published_version"] == 2
    keys = bucket_keys(flow.aws.s3, flow.aws.media_bucket)
    prefix = f"media/{video_id}/v2/"
    assert all(key.startswith(prefix) for key in keys)
    assert {prefix + "master.m3u8", prefix + "poster.jpg"} <= set(keys)
    assert video["renditions"][0]["playlist"] in keys


def test_m6_stop_mid_transcode_releases_the_job_and_leaves_nothing(flow, clips, tmp_path):
    ffmpeg, pid_file = flow.slow_ffmpeg(tmp_path)
    video_id, job_id = flow.submit_path(clips["long"])
    stop = StopSignal(5)

    def stop_once_running() -> None:
        wait_for(pid_file.exists, 20, "ffmpeg to start")
        stop.request()

    threading.Thread(target=stop_once_running).start()
    worker = flow.worker(stop=stop, media=flow.media(ffmpeg_path=ffmpeg))
    assert worker.poll_once() == [Outcome.RELEASED]
    assert (flow.job(job_id)["state"], flow.depth()) == ("QUEUED", (1, 0))
    flow.assert_nothing_left(video_id)


# --- redelivery in the middle of publication ------------------------------------------------


def test_m6_redelivery_after_a_worker_died_mid_upload_publishes_a_complete_new_version(
    pg_server, redis_proc, redis_client, served_aws, moto_server, media_root, tmp_path,
    database, admin_db,
):  # fmt: skip
    """The first worker process is SIGKILLed as it uploads its second object of v1; the
    message comes back once its visibility lapses, a second worker claims the job after the
    lapsed lease and publishes v2. The row never names v1, and v1's leftovers go."""
    kill = {"puts": 0, "killed": False, "process": None}
    lock = threading.Lock()

    def interrupt(operation: str, body: bytes) -> bool:
        with lock:
            if operation != "PutObject" or kill["killed"] or kill["process"] is None:
                return False
            kill["puts"] += 1
            if kill["puts"] < 2:
                return False
            kill["killed"] = True
            kill["process"].kill()  # dies mid-upload, its request never forwarded
            return True

    proxy = FaultyAwsProxy(
        moto_server, faults=AwsFaults(rate=0.0, operations=set()), interrupt=interrupt
    )
    video_id, job_id = submit_job(database, served_aws, media_root / "clips" / "ok.mp4")
    scratches = [tmp_path / "first", tmp_path / "second"]
    for scratch in scratches:
        scratch.mkdir()
    env = worker_environment(
        pg_server, redis_proc.port, served_aws, media_root, scratches[0],
        AWS_ENDPOINT_URL=proxy.url, VISIBILITY_TIMEOUT_SECONDS="2", TRANSCODE_LADDER="144:100",
        SEGMENT_SECONDS="2", TRANSFER_CONCURRENCY="1",
    )  # fmt: skip
    published = []
    watching = threading.Event()

    def watch() -> None:
        connection = pg_server.admin()  # its own: a connection is not for two threads
        cursor = connection.cursor()
        while not watching.wait(0.05):
            cursor.execute("SELECT published_version FROM videos WHERE id = %s", (video_id,))
            published.append(cursor.fetchone()[0])
        connection.close()

    watcher = threading.Thread(target=watch)
    first = second = None
    try:
        with lock:
            first = kill["process"] = start_worker(env, tmp_path / "first.log")
        watcher.start()
        wait_for(lambda: kill["killed"], 60, "the first worker to die mid-upload")
        first.wait(10)
        assert bucket_keys(served_aws.s3, served_aws.media_bucket, f"media/{video_id}/v1/")
        env["SCRATCH_DIR"] = str(scratches[1])
        second = start_worker(env, tmp_path / "second.log")
        wait_for(lambda: flow_state(admin_db, job_id) == "COMPLETED", 60, "the second worker")
        wait_for(
            lambda: queue_depth(served_aws.sqs, served_aws.jobs_queue_url) == (0, 0), 30, "delete"
        )
        second.send_signal(signal.SIGTERM)
        assert run_until_exit(second, 30) == 0
    finally:
        watching.set()
        if watcher.is_alive():
            watcher.join()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        proxy.close()
    assert set(published) <= {None, 2}  # v1 was never visible
    cursor = admin_db.cursor()
    cursor.execute("SELECT published_version, playlist_path FROM videos WHERE id = %s", (video_id,))
    version, playlist = cursor.fetchone()
    assert version == 2 and playlist == f"media/{video_id}/v2/master.m3u8"
    keys = bucket_keys(served_aws.s3, served_aws.media_bucket)
    assert keys and all(key.startswith(f"media/{video_id}/v2/") for key in keys)
    assert scratch_jobs(scratches[1]) == []  # the first one's died with it (the task's disk)


def flow_state(admin_db, job_id) -> str:
    cursor = admin_db.cursor()
    cursor.execute("SELECT state FROM jobs WHERE id = %s", (job_id,))
    return cursor.fetchone()[0]
