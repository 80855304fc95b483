"""H3, M3: the worker as a hostile producer would feed it, against real PostgreSQL, Redis,
ffprobe and ffmpeg.

Every message ends processed or dead-lettered once with a reason, and no message can raise
out of the job loop (the process exited 1 on every delivery). Only real video is accepted:
a playlist in disguise or a still image uploaded as a source ends FAILED with a reason, and
the source is the video's own object whatever the message names."""

# The worker fixtures live in test_svc_worker.py; importing them redefines their names.
# ruff: noqa: F811

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from svc_support import drain_queue, submit_job
from test_svc_worker import Kit, kit, worker_database  # noqa: F401 (fixtures)
from test_svc_worker_process import process_env  # noqa: F401 (fixture)

from services.contract import source_key
from services.worker.consumer import Outcome
from services.worker.errors import PermanentJobError

pytestmark = pytest.mark.services


def _event(**changes) -> dict:
    return {
        "type": "job.requested",
        "version": 1,
        "video_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
        "source_uri": "clips/ok.mp4",
        "occurred_at": "2025-01-01T00:00:00.000Z",
        **changes,
    }


def _envelope(text: str) -> str:
    return json.dumps({"data": base64.b64encode(text.encode()).decode()})


DEEP = "[" * 1000 + "]" * 1000
HUGE_INT = "1" * 5000
HOSTILE_BODIES = {
    "deep-array": DEEP,
    "deep-object": '{"a":' * 1000 + "1" + "}" * 1000,
    "deep-field": json.dumps(_event())[:-1] + ', "extra": ' + DEEP + "}",
    "deep-in-object-envelope": '{"data": ' + DEEP + "}",
    "deep-in-base64-envelope": _envelope(DEEP),
    "int-5000-digits-version": json.dumps(_event()).replace('"version": 1', f'"version": {HUGE_INT}'),
    "int-5000-digits-in-envelope": _envelope('{"type": "job.requested", "version": ' + HUGE_INT + "}"),
    "float-overflow": json.dumps(_event()).replace('"version": 1', '"version": 1e400'),
    "nan-version": json.dumps(_event()).replace('"version": 1', '"version": NaN'),
    "type-unhashable": json.dumps(_event(type=["job.requested"])),
    "type-object": json.dumps(_event(type={"a": 1})),
    "version-true": json.dumps(_event(version=True)),
    "surrogate-in-source": json.dumps(_event(source_uri="clips/\ud800.mp4")),
    "control-in-source": json.dumps(_event(source_uri="clips/\x85ok.mp4")),
    "id-not-a-uuid": json.dumps(_event(job_id="1" * 5000)),
    "envelope-data-number": '{"data": ' + HUGE_INT + "}",
    "envelope-not-json-inside": _envelope("not json"),
    "envelope-invalid-utf8": json.dumps({"data": base64.b64encode(b"\xed\xa0\x80").decode()}),
}  # fmt: skip


@pytest.mark.parametrize("body", list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_h3_hostile_message_is_dead_lettered_once_with_a_reason(kit, body):
    """Deep nesting (plain or in either Kinesis envelope) and 5,000-digit numbers raised out
    of the job loop and ended the process; wrong types raised TypeError the same way."""
    kit.aws.sqs.send_message(QueueUrl=kit.aws.jobs_queue_url, MessageBody=body)
    assert kit.worker().poll_once() == [Outcome.POISON]
    [dead] = drain_queue(kit.aws.sqs, kit.aws.dlq_url)
    assert dead["Body"] == body
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason and "Traceback" not in reason
    assert kit.depth() == (0, 0)


def test_h3_good_job_in_the_same_batch_as_hostile_messages_proceeds(kit):
    for name in ("deep-array", "int-5000-digits-version", "type-unhashable"):
        kit.aws.sqs.send_message(QueueUrl=kit.aws.jobs_queue_url, MessageBody=HOSTILE_BODIES[name])
    _, job_id = kit.submit("ok.mp4")
    outcomes = kit.worker().poll_once()
    assert sorted(outcomes) == sorted([Outcome.POISON] * 3 + [Outcome.COMPLETED])
    assert kit.job(job_id)["state"] == "COMPLETED"
    assert len(drain_queue(kit.aws.sqs, kit.aws.dlq_url)) == 3
    assert kit.depth() == (0, 0)


# --- M3: only real video --------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture
def disguised(tmp_path: Path) -> dict[str, Path]:
    """Uploads that are not videos, whatever their names say."""
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    outside = tmp_path / "outside-secret.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x48:rate=10:duration=2", "-c:v", "mpeg4",
            str(outside))  # fmt: skip
    (hostile / "playlist.mp4").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{outside}\n#EXT-X-ENDLIST\n"
    )
    (hostile / "concat.mp4").write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1",
            str(hostile / "still.png"))  # fmt: skip
    (hostile / "still.mp4").write_bytes((hostile / "still.png").read_bytes())
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", "-f", "image2",
            "-c:v", "mjpeg", str(hostile / "still.jpg"))  # fmt: skip
    return {
        "hls-playlist-named-mp4": hostile / "playlist.mp4",
        "concat-list-named-mp4": hostile / "concat.mp4",
        "still-png": hostile / "still.png",
        "still-png-named-mp4": hostile / "still.mp4",
        "still-jpeg": hostile / "still.jpg",
    }


def _deadline():
    import time

    return time.monotonic() + 10, False


@pytest.mark.parametrize(
    "name",
    [
        "hls-playlist-named-mp4",
        "concat-list-named-mp4",
        "still-png",
        "still-png-named-mp4",
        "still-jpeg",
    ],
)
def test_m3_playlists_and_still_images_are_not_video(kit, disguised, name):
    """A text HLS playlist named .mp4 made ffprobe report the file it names outside the
    media root (COMPLETED with that file's facts); a PNG was COMPLETED as a video."""
    with pytest.raises(PermanentJobError, match=r"not accepted|no duration|no video|still"):
        kit.validate()(disguised[name], deadline=_deadline)


@pytest.mark.parametrize("name", ["hls-playlist-named-mp4", "still-png-named-mp4"])
def test_m3_uploaded_playlist_or_still_image_ends_failed_and_publishes_nothing(
    kit, disguised, name
):
    video_id, job_id = submit_job(kit.database, kit.aws, disguised[name])
    assert kit.worker().poll_once() == [Outcome.FAILED]
    job = kit.job(job_id)
    assert job["state"] == "FAILED"
    video = kit.video(video_id)
    assert (video["status"], video["width"], video["published_version"]) == ("FAILED", None, None)
    [dead] = drain_queue(kit.aws.sqs, kit.aws.dlq_url)
    assert dead["MessageAttributes"]["failure_reason"]["StringValue"] == job["last_error"]
    assert kit.media_keys() == []


@pytest.mark.parametrize(
    "reference",
    [
        "file:///etc/passwd",
        "s3://other-bucket/x",
        "https://user:secret@host/a.mp4",
        "concat:clips/ok.mp4|clips/ok.mp4",
        "/etc/hostname",
        "../../../etc/hostname",
        "OTHER-VIDEO",  # another video's real source object
    ],
)
def test_h1_m3_source_named_by_the_message_is_never_read(kit, reference):
    """The worker reads the video's own source key (derived from its id): a message naming
    anything else, even another video's upload, cannot make it read that."""
    other_video, _ = kit.submit("ok.mp4")
    drain_queue(kit.aws.sqs, kit.aws.jobs_queue_url)
    if reference == "OTHER-VIDEO":
        reference = source_key(str(other_video))
    video_id, job_id = submit_job(kit.database, kit.aws, None, message_source_uri=reference)
    assert kit.worker().poll_once() == [Outcome.FAILED]
    job = kit.job(job_id)
    assert (job["state"], job["attempts"]) == ("FAILED", 1)
    assert f"{source_key(str(video_id))} does not exist" in job["last_error"]
    assert kit.video(video_id)["status"] == "FAILED"
    assert kit.media_keys() == []


def test_m3_real_containers_still_complete(kit):
    video_id, _ = kit.submit("ok.mp4")
    assert kit.worker().poll_once() == [Outcome.COMPLETED]
    assert kit.video(video_id)["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"format": {"format_name": "hls", "duration": "2"}, "streams": []}, "not accepted"),
        ({"format": {"format_name": "png_pipe"}, "streams": []}, "not accepted"),
        ({"format": {"format_name": "concat"}, "streams": []}, "not accepted"),
        ({"format": "mp4", "streams": []}, "not accepted"),
        (
            {
                "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "N/A"},
                "streams": [{"codec_type": "video", "codec_name": "png", "width": 8, "height": 8}],
            },
            "no duration",
        ),
        (
            {
                "format": {"format_name": "matroska,webm", "duration": "3"},
                "streams": [{"codec_type": "video", "width": 8, "height": 8}],
            },
            "no codec",
        ),
        (
            {
                "format": {"format_name": "avi", "duration": "3"},
                "streams": [{"codec_type": "video", "codec_name": "h264", "width": 0}],
            },
            "no picture size",
        ),
        ({"format": {"format_name": "mpegts", "duration": "3"}, "streams": "x"}, "no video"),
    ],
)
def test_m3_probe_report_must_be_an_accepted_container_with_a_real_video_stream(document, reason):
    """Checked on ffprobe's report as well, so an ffprobe that ignored the whitelist (or a
    format the whitelist lets through with an image codec) still cannot pass a still."""
    from services.worker.probe import require_video

    with pytest.raises(PermanentJobError, match=reason):
        require_video(document)


def test_h3_worker_process_survives_hostile_messages_and_exits_zero_on_sigterm(
    process_env, served_aws, database, admin_db, tmp_path, media_root
):
    """The real process: it exited 1 with a traceback on every delivery of such a message,
    and the good job in the same batch waited."""
    import signal

    from svc_support import queue_depth, start_worker
    from test_svc_worker_process import job_state, run_until_exit, wait_for

    names = ["deep-array", "deep-in-base64-envelope", "int-5000-digits-version"]
    for name in names:
        served_aws.sqs.send_message(
            QueueUrl=served_aws.jobs_queue_url, MessageBody=HOSTILE_BODIES[name]
        )
    _, job_id = submit_job(database, served_aws, media_root / "clips" / "ok.mp4")
    worker = start_worker(process_env, tmp_path / "worker.log")
    try:
        wait_for(lambda: job_state(admin_db, job_id) == "COMPLETED", 60, "the good job")
        wait_for(
            lambda: queue_depth(served_aws.sqs, served_aws.dlq_url)[0] == len(names),
            30,
            "one dead-letter copy per hostile message",
        )
        assert worker.poll() is None, "the worker process ended"
        worker.send_signal(signal.SIGTERM)
        assert run_until_exit(worker, 30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    dead = drain_queue(served_aws.sqs, served_aws.dlq_url)
    assert sorted(m["Body"] for m in dead) == sorted(HOSTILE_BODIES[name] for name in names)
    assert all(m["MessageAttributes"]["failure_reason"]["StringValue"] for m in dead)
    assert queue_depth(served_aws.sqs, served_aws.jobs_queue_url) == (0, 0)
    assert "Traceback" not in (tmp_path / "worker.log").read_text()
