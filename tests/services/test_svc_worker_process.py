"""R3 / W8: the worker as a process: start-up, health check, SIGTERM, exit codes (logged in
as the worker's role, media_worker)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, worker_environment
from svc_support import (
    bucket_keys,
    queue_depth,
    read_stream,
    scratch_jobs,
    start_worker,
    submit_job,
)

from services.worker import healthcheck
from services.worker.heartbeat import heartbeat_path, write_heartbeat
from services.worker.main import (
    EXIT_BAD_CONFIG,
    EXIT_CREDENTIALS_REJECTED,
    EXIT_STARTUP_FAILED,
    main,
)

pytestmark = pytest.mark.services


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def job_state(admin_db, job_id) -> str:
    cursor = admin_db.cursor()
    cursor.execute("SELECT state FROM jobs WHERE id = %s", (job_id,))
    return cursor.fetchone()[0]


@pytest.fixture
def restore_signals():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def in_process_env(
    monkeypatch, pg_server, redis_proc, redis_client, aws, media_root, tmp_path, admin_db
):
    env = worker_environment(pg_server, redis_proc.port, aws, media_root, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = __import__("logging").getLogger()
    handlers, level = list(root.handlers), root.level
    yield env
    root.handlers[:] = handlers
    root.setLevel(level)


# --- main() in this process (moto's in-process mock) -------------------------------------


def test_r3_main_processes_jobs_until_sigterm_then_exits_zero(
    in_process_env, restore_signals, database, aws, admin_db, media_root
):
    _, job_id = submit_job(database, aws, media_root / "clips" / "ok.mp4")

    def terminate_when_done() -> None:
        wait_for(lambda: job_state(admin_db, job_id) == "COMPLETED", 30, "the job")
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=terminate_when_done)
    watcher.start()
    assert main() == 0
    watcher.join()
    assert queue_depth(aws.sqs, aws.jobs_queue_url) == (0, 0)


def test_r3_main_bad_configuration_exits_2(in_process_env, monkeypatch, restore_signals):
    monkeypatch.delenv("JOBS_QUEUE_URL")
    assert main() == EXIT_BAD_CONFIG


def test_k3_unreadable_content_key_secret_fails_start_up(
    in_process_env, monkeypatch, restore_signals
):
    monkeypatch.setenv(
        "CONTENT_KEY_SECRET_ARN", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:gone"
    )
    assert main() == EXIT_STARTUP_FAILED


def test_r3_main_rejected_database_credentials_exit_78_for_a_restart(
    in_process_env, monkeypatch, restore_signals
):
    monkeypatch.setenv("DB_PASSWORD", "stale-after-rotation")
    assert main() == EXIT_CREDENTIALS_REJECTED


def test_r1_main_with_a_schema_missing_migrations_exits_1_naming_them(
    in_process_env, monkeypatch, restore_signals, empty_database, capsys
):
    """The worker does not migrate; `pulumi up` runs the migration function first."""
    monkeypatch.setenv("DB_NAME", empty_database)
    assert main() == EXIT_STARTUP_FAILED
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [failure] = [line for line in lines if line["message"] == "start-up failed"]
    assert failure["error"].startswith(
        "database schema is missing migration(s) 001_videos_and_jobs, 002_publication_lease,"
        " 003_service_roles, 004_service_role_hardening, 005_media_path; the migration"
        " function (run by `pulumi up`) must apply them"
    )


def test_r3_main_waits_for_an_unreachable_database_and_still_stops_cleanly(
    in_process_env, monkeypatch, restore_signals
):
    from svc_support import free_port

    monkeypatch.setenv("DB_PORT", str(free_port()))
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    assert main() == 0
    assert time.monotonic() - started < 10


# --- health check -----------------------------------------------------------------------


def test_w8_healthcheck_passes_on_a_fresh_heartbeat_only(tmp_path: Path):
    env = {"SCRATCH_DIR": str(tmp_path), "JOB_TIMEOUT_SECONDS": "30", "RECEIVE_WAIT_SECONDS": "20"}
    assert healthcheck.check(env)[0] is False  # no heartbeat yet
    path = heartbeat_path(tmp_path)
    write_heartbeat(path)
    assert healthcheck.check(env)[0] is True
    write_heartbeat(path, now=time.time() - 111)  # just past 30 + 20 + 60
    assert healthcheck.check(env) == (False, "heartbeat is 111s old (limit 110s)")
    assert healthcheck.check({**env, "HEALTHCHECK_MAX_AGE_SECONDS": "500"})[0] is True
    path.write_text("{not json")
    assert healthcheck.check(env)[0] is False


def test_w8_healthcheck_command_exit_codes(tmp_path: Path, monkeypatch):
    def run() -> int:
        return subprocess.run(
            [sys.executable, "-m", "services.worker.healthcheck"],
            cwd=REPO_ROOT,
            env={**os.environ, "SCRATCH_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            timeout=30,
        ).returncode

    assert run() == 1
    write_heartbeat(heartbeat_path(tmp_path))
    assert run() == 0
    monkeypatch.setenv("SCRATCH_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHCHECK_MAX_AGE_SECONDS", "soon")
    assert healthcheck.main() == 1


# --- the real process with SIGTERM (moto server shared between processes) ----------------


@pytest.fixture
def process_env(
    pg_server, redis_proc, redis_client, served_aws, media_root, tmp_path, moto_server, admin_db
):
    env = worker_environment(
        pg_server, redis_proc.port, served_aws, media_root, tmp_path, AWS_ENDPOINT_URL=moto_server
    )
    return env


@pytest.fixture
def slow_ffprobe(tmp_path: Path):
    """An ffprobe that announces itself, then takes `delay` seconds before the real work."""

    def make(delay: float) -> tuple[Path, Path]:
        marker = tmp_path / "probe-started"
        script = tmp_path / f"ffprobe-slow-{delay}"
        script.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep {delay}\nexec ffprobe "$@"\n')
        script.chmod(0o755)
        return script, marker

    return make


def run_until_exit(process: subprocess.Popen, timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_w8_m4_sigterm_mid_job_releases_it_and_the_rest_and_exits_zero(
    process_env, served_aws, database, admin_db, slow_ffprobe, tmp_path, media_root
):
    """A stop request ends the transcode (it could outlast the two minutes Spot gives); the
    job goes back to the queue at once, for another worker, with nothing published."""
    probe, marker = slow_ffprobe(2)
    clip = media_root / "clips" / "ok.mp4"
    first = submit_job(database, served_aws, clip)[1]
    second = submit_job(database, served_aws, clip)[1]
    worker = start_worker({**process_env, "FFPROBE_PATH": str(probe)}, tmp_path / "worker.log")
    wait_for(marker.exists, 30, "the first probe")
    worker.send_signal(signal.SIGTERM)
    assert run_until_exit(worker, 30) == 0
    assert {job_state(admin_db, first), job_state(admin_db, second)} == {"QUEUED"}
    assert queue_depth(served_aws.sqs, served_aws.jobs_queue_url) == (2, 0)  # released at once
    processed = [
        e
        for e in read_stream(served_aws.kinesis, "media-events-test")
        if e["type"] == "video.processed"
    ]
    assert processed == []
    assert bucket_keys(served_aws.s3, served_aws.media_bucket) == []
    assert scratch_jobs(tmp_path) == []
    log = (tmp_path / "worker.log").read_text()
    assert '"signal": "SIGTERM"' in log


def test_w8_sigterm_with_a_probe_outlasting_the_stop_timeout_releases_it(
    process_env, served_aws, database, admin_db, slow_ffprobe, tmp_path, media_root
):
    probe, marker = slow_ffprobe(60)
    job = submit_job(database, served_aws, media_root / "clips" / "ok.mp4")[1]
    env = {**process_env, "FFPROBE_PATH": str(probe), "STOP_TIMEOUT_SECONDS": "1"}
    worker = start_worker(env, tmp_path / "worker.log")
    wait_for(marker.exists, 30, "the probe")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert run_until_exit(worker, 20) == 0
    assert time.monotonic() - started < 10
    assert job_state(admin_db, job) == "QUEUED"
    assert queue_depth(served_aws.sqs, served_aws.jobs_queue_url) == (1, 0)
    assert scratch_jobs(tmp_path) == []


def test_w8_idle_worker_is_healthy_and_stops_on_sigterm(process_env, tmp_path):
    worker = start_worker(process_env, tmp_path / "worker.log")
    beat = heartbeat_path(tmp_path)
    wait_for(beat.exists, 30, "the first heartbeat")
    health = subprocess.run(
        [sys.executable, "-m", "services.worker.healthcheck"],
        cwd=REPO_ROOT,
        env={**os.environ, "SCRATCH_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)},
        timeout=30,
    )
    assert health.returncode == 0
    worker.send_signal(signal.SIGTERM)
    assert run_until_exit(worker, 15) == 0
    lines = [
        json.loads(line)
        for line in (tmp_path / "worker.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line["message"] == "stop requested; exiting" for line in lines)
    assert not any("k" * 32 in json.dumps(line) for line in lines)  # the content key never logged
