"""`python -m services.worker`: build the worker from the environment and run it.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when start-up fails (an unreadable
content-key secret, a schema missing migrations), 2 on invalid configuration, 78 when the
database rejects the credentials even after fetching them again (ECS starts a fresh task:
with a secret it injects the current, possibly rotated, value; with IAM login the fault is
the task role's `rds-db:connect` grant or the cluster's IAM authentication).
"""

from __future__ import annotations

import logging
import signal
import sys
from functools import partial
from typing import Any

from services.common.aws import AWS_ERRORS, EventStream, aws_client
from services.common.cache import VideoCache
from services.common.db import Database, DatabaseAuthError, DatabaseUnavailable
from services.common.logs import configure_logging
from services.common.migrations import MigrationError, require_current_schema
from services.common.redis_client import create_redis, redis_auth
from services.common.secrets import CredentialsError, SecretCache, db_credentials
from services.common.settings import SettingsError, WorkerSettings, load_worker_settings
from services.worker.consumer import StopSignal, Worker, WorkerDeps
from services.worker.heartbeat import heartbeat_path, write_heartbeat
from services.worker.keyring import KeyringSource
from services.worker.storage import MediaStorage, s3_client
from services.worker.transcode import transcode, validate_source

log = logging.getLogger("services.worker")

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_CREDENTIALS_REJECTED = 78
_SCHEMA_RETRY_CAP_SECONDS = 30.0


def main() -> int:
    try:
        settings = load_worker_settings()
    except SettingsError as error:
        configure_logging()
        log.error("invalid configuration", extra={"error": str(error)})
        return EXIT_BAD_CONFIG
    configure_logging(settings.common.log_level)
    stop = StopSignal(settings.stop_timeout_seconds)
    install_signal_handlers(stop)
    try:
        worker = build_worker(settings, stop)
        if worker is None:
            return EXIT_OK
        return worker.run()
    except DatabaseAuthError as error:
        log.critical(
            "database rejected the credentials; exiting so ECS restarts the task",
            extra={"error": str(error)},
        )
        return EXIT_CREDENTIALS_REJECTED
    except (CredentialsError, MigrationError) as error:
        log.critical("start-up failed", extra={"error": str(error)})
        return EXIT_STARTUP_FAILED


def install_signal_handlers(stop: StopSignal) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        log.info(
            "signal received; finishing in-flight work",
            extra={"signal": signal.Signals(signum).name},
        )
        stop.request()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def build_worker(settings: WorkerSettings, stop: StopSignal) -> Worker | None:
    """The worker, ready to run; None if a stop was requested while waiting for the database."""
    common = settings.common
    secrets_client = aws_client("secretsmanager", region=common.aws_region)
    secrets = SecretCache(secrets_client)
    verify_secret_readable(secrets_client, settings.content_key_secret_arn)
    database = Database(
        common.database,
        db_credentials(common.database, region=common.aws_region, secrets=secrets),
        application_name="media-worker",
    )
    if not wait_for_schema(database, settings, stop):
        return None
    # A token the cache refuses (rotated twice since it was read) is re-read once.
    token = redis_auth(secrets, common.redis)
    cache = VideoCache(
        create_redis(common.redis, token, client_name="media-worker"), common.cache_ttl_seconds
    )
    # The long poll holds the HTTP request open for up to RECEIVE_WAIT_SECONDS.
    sqs = aws_client(
        "sqs", region=common.aws_region, read_timeout=settings.receive_wait_seconds + 10
    )
    stream = EventStream(aws_client("kinesis", region=common.aws_region), common.stream_name)
    media = settings.media
    deps = WorkerDeps(
        database=database,
        sqs=sqs,
        stream=stream,
        cache=cache,
        storage=MediaStorage(
            s3_client(common.aws_region, concurrency=media.transfer_concurrency), media
        ),
        keyring=KeyringSource(secrets_client, settings.content_key_secret_arn),
        validate=partial(validate_source, limits=media, ffprobe_path=settings.ffprobe_path),
        transcode=transcode,
    )
    return Worker(settings, deps, stop)


def verify_secret_readable(client: Any, arn: str) -> None:
    """Fail start-up early if the content-key secret cannot be read; never log its value."""
    try:
        client.get_secret_value(SecretId=arn)
    except AWS_ERRORS as error:
        raise CredentialsError(f"content key secret {arn} is not readable: {error}") from error
    log.info("content key secret is readable", extra={"secret_arn": arn})


def wait_for_schema(database: Database, settings: WorkerSettings, stop: StopSignal) -> bool:
    """Check the schema has every migration this code needs (MigrationError if not),
    waiting out a database that is still starting or failing over."""
    beat = heartbeat_path(settings.scratch_dir)
    failures = 0
    while not stop.requested:
        write_heartbeat(beat)
        try:
            version = require_current_schema(database)
        except DatabaseAuthError:
            raise
        except DatabaseUnavailable as error:
            failures += 1
            delay = min(_SCHEMA_RETRY_CAP_SECONDS, 2.0**failures)
            log.warning(
                "database unavailable at start-up; retrying",
                extra={"error": str(error), "delay_s": delay},
            )
            stop.wait(delay)
            continue
        log.info("database schema is current", extra={"version": version})
        return True
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
