"""Real PostgreSQL (pytest-postgresql), real Redis (pytest-redis), ffmpeg-made clips and
moto for the AWS APIs (R4)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pg8000.dbapi
import pytest
from moto import mock_aws
from pytest_postgresql import factories as postgresql_factories
from pytest_redis import factories as redis_factories

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# moto and every client the code under test creates read these; set before any client.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_REGION": "eu-central-1",
}.items():
    os.environ[_name] = _value

from svc_support import free_port, make_clips  # noqa: E402

from services.common.db import Database  # noqa: E402
from services.common.migrations import apply_migrations  # noqa: E402
from services.common.roles import API_DB_USER, WORKER_DB_USER  # noqa: E402
from services.common.secrets import StaticDbCredentials  # noqa: E402
from services.common.settings import DatabaseSettings, SslMode  # noqa: E402

REGION = "eu-central-1"
APP_USER = "media_app"
APP_PASSWORD = "app-password-1"
# RDS IAM authentication cannot be emulated locally, so in the test cluster only the
# services' login roles (created by migration 003 without a password) get this one.
SERVICE_ROLE_PASSWORD = "service-role-password-1"
DB_NAME = "media"
STREAM = "media-events-test"
CONTENT_KEYRING = {
    "current": "k2",
    "keys": {
        "k1": "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=",
        "k2": "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI=",
    },
}
"""Two versions, the second current: titles keyed from k1 must stay playable (M5)."""
MAX_RECEIVE_COUNT = 3


def _real_pg_ctl() -> str | None:
    """Debian keeps pg_ctl out of PATH, under /usr/lib/postgresql/<major>/bin."""

    def major(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/", path)
        return int(found.group(1)) if found else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=major, reverse=True)
    return candidates[0] if candidates else shutil.which("pg_ctl")


def _pg_ctl() -> str | None:
    """The real pg_ctl, or as root (CI) a wrapper that runs it as the postgres user."""
    real = _real_pg_ctl()
    if real is None or os.geteuid() != 0:
        return real
    wrapper_dir = Path(tempfile.mkdtemp(prefix="svc-pg-ctl-"))
    wrapper = wrapper_dir / "pg_ctl"
    helper = Path(__file__).resolve().parent / "pg_ctl_as_postgres.py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{helper}" "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


# Password authentication (not trust), so credential rotation can really be rejected.
postgresql_proc = postgresql_factories.postgresql_proc(
    executable=_pg_ctl(), port=None, password="superuser-password"
)
redis_proc = redis_factories.redis_proc(executable=shutil.which("redis-server"), port=None)


# Before pytest-xdist names each test's group (its own hook has no order).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fault-injection run is the longest test by far: collect it first, in an xdist group
    of its own, so that under --dist loadgroup one worker starts it at once and the other
    workers run everything else beside it."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    for item in slow:
        item.add_marker(pytest.mark.xdist_group("fault-injection"))
    items[:] = slow + [item for item in items if not item.get_closest_marker("slow")]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    superuser: str
    superuser_password: str

    def admin(self, database: str = DB_NAME) -> pg8000.dbapi.Connection:
        connection = pg8000.dbapi.connect(
            user=self.superuser,
            password=self.superuser_password,
            host=self.host,
            port=self.port,
            database=database,
        )
        connection.autocommit = True
        return connection

    def settings(self, *, port: int | None = None, name: str = DB_NAME) -> DatabaseSettings:
        return DatabaseSettings(
            host=self.host,
            port=port or self.port,
            name=name,
            ssl_mode=SslMode.DISABLE,
            username=APP_USER,
            password=APP_PASSWORD,
        )


@pytest.fixture(scope="session")
def pg_server(postgresql_proc: Any) -> PgServer:
    server = PgServer(
        host=postgresql_proc.host,
        port=int(postgresql_proc.port),
        superuser=postgresql_proc.user,
        superuser_password=postgresql_proc.password,
    )
    admin = server.admin("postgres")
    cursor = admin.cursor()
    # CREATEROLE: migration 003 creates the services' login roles (on RDS the master user
    # that runs migrations has it).
    cursor.execute(f"CREATE ROLE {APP_USER} LOGIN CREATEROLE PASSWORD '{APP_PASSWORD}'")
    cursor.execute(f"CREATE DATABASE {DB_NAME} OWNER {APP_USER}")
    admin.close()
    database = Database(
        server.settings(), StaticDbCredentials(APP_USER, APP_PASSWORD), application_name="tests"
    )
    apply_migrations(database)
    database.close()
    admin = server.admin()
    for role in (API_DB_USER, WORKER_DB_USER):
        admin.cursor().execute(f"ALTER ROLE {role} PASSWORD '{SERVICE_ROLE_PASSWORD}'")
    admin.close()
    return server


def connect_as(
    pg: PgServer,
    role: str,
    *,
    application_name: str,
    port: int | None = None,
    name: str = DB_NAME,
) -> Database:
    """A Database logged in as one of the services' roles, with only the grants of 003."""
    return Database(
        pg.settings(port=port, name=name),
        StaticDbCredentials(role, SERVICE_ROLE_PASSWORD),
        application_name=application_name,
    )


@pytest.fixture
def empty_database(pg_server: PgServer) -> Iterator[str]:
    """The name of a new database without any migration, owned by the application role."""
    name = f"empty_{uuid.uuid4().hex[:8]}"
    admin = pg_server.admin("postgres")
    admin.cursor().execute(f"CREATE DATABASE {name} OWNER {APP_USER}")
    yield name
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def admin_db(pg_server: PgServer) -> Iterator[pg8000.dbapi.Connection]:
    """A superuser connection to the test database, emptied of videos and jobs before use."""
    connection = pg_server.admin()
    connection.cursor().execute("TRUNCATE videos, jobs CASCADE")
    yield connection
    connection.close()


@pytest.fixture
def database(pg_server: PgServer, admin_db: Any) -> Iterator[Database]:
    db = Database(
        pg_server.settings(),
        StaticDbCredentials(APP_USER, APP_PASSWORD),
        application_name="media-worker",
    )
    yield db
    db.close()


@pytest.fixture
def redis_client(redis_proc: Any) -> Iterator[Any]:
    import redis

    client = redis.Redis(host=redis_proc.host, port=redis_proc.port, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_clips(root / "clips")
    return root


@dataclass
class AwsResources:
    kinesis: Any
    sqs: Any
    secrets: Any
    jobs_queue_url: str
    dlq_url: str
    db_secret_arn: str
    redis_secret_arn: str
    content_key_arn: str
    s3: Any = None
    ingest_bucket: str = "media-ingest-test"
    media_bucket: str = "media-renditions-test"


def create_aws_resources(
    endpoint_url: str | None = None,
    *,
    visibility: int = 30,
    max_receive_count: int = MAX_RECEIVE_COUNT,
) -> AwsResources:
    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint_url)

    kinesis, sqs, secrets = client("kinesis"), client("sqs"), client("secretsmanager")
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    dlq_url = sqs.create_queue(QueueName="media-jobs-dlq-test")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    jobs_url = sqs.create_queue(
        QueueName="media-jobs-test",
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": (
                f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{max_receive_count}"}}'
            ),
        },
    )["QueueUrl"]
    db_secret = secrets.create_secret(
        Name="media-db-test",
        SecretString=f'{{"username": "{APP_USER}", "password": "{APP_PASSWORD}"}}',
    )["ARN"]
    redis_secret = secrets.create_secret(Name="media-redis-test", SecretString="unused")["ARN"]
    content_key = secrets.create_secret(
        Name="media-content-key-test", SecretString=json.dumps(CONTENT_KEYRING)
    )["ARN"]
    s3 = client("s3")
    resources = AwsResources(
        kinesis, sqs, secrets, jobs_url, dlq_url, db_secret, redis_secret, content_key, s3
    )
    for bucket in (resources.ingest_bucket, resources.media_bucket):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return resources


@pytest.fixture
def aws() -> Iterator[AwsResources]:
    with mock_aws():
        yield create_aws_resources()


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST proxy event as the integration delivers it."""
    import base64
    import json

    resource, path_parameters = path, None
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "videos":
        resource, path_parameters = "/videos/{videoId}", {"videoId": parts[1]}
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if text is not None and base64_body:
        text = base64.b64encode(text.encode()).decode()
    default_headers = {"Content-Type": "application/json"} if text is not None else {}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers if headers is not None else default_headers,
        "queryStringParameters": query,
        "pathParameters": path_parameters,
        "body": text,
        "isBase64Encoded": base64_body,
        "requestContext": {"stage": "test", "requestId": "req-1"},
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for tests whose worker runs as a separate process. It runs in a process
    of its own: in the fault-injection run it answers every worker's call, and in this process
    it would contend for the interpreter lock with the proxies and the API."""
    for _ in range(3):  # the free port may be taken before moto binds it
        url, process = _start_moto_server(free_port())
        if process is not None:
            break
    else:
        pytest.fail("moto server did not start")
    yield url
    process.terminate()
    process.wait(30)


def _start_moto_server(port: int) -> tuple[str, subprocess.Popen[bytes] | None]:
    import urllib.request

    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=5).close()
            return url, process
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait(30)
    return url, None


def reset_moto_server(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))


@pytest.fixture
def served_aws(moto_server: str) -> AwsResources:
    reset_moto_server(moto_server)
    return create_aws_resources(moto_server)


def worker_environment(
    pg: PgServer, redis_port: int, aws: AwsResources, media_root: Path, scratch: Path, **extra: str
) -> dict[str, str]:
    """The environment the ECS task definition gives the worker container, logging in as
    the worker's role with a password where the stacks use DB_IAM_USER."""
    return {
        "DB_HOST": pg.host,
        "DB_PORT": str(pg.port),
        "DB_NAME": DB_NAME,
        "DB_SSL": "false",
        "DB_USERNAME": WORKER_DB_USER,
        "DB_PASSWORD": SERVICE_ROLE_PASSWORD,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        "REDIS_TLS": "false",
        "STREAM_NAME": STREAM,
        "MEDIA_ROOT": str(media_root),
        "CACHE_TTL_SECONDS": "60",
        "LOG_LEVEL": "INFO",
        "JOBS_QUEUE_URL": aws.jobs_queue_url,
        "DEAD_LETTER_QUEUE_URL": aws.dlq_url,
        "MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
        "JOB_TIMEOUT_SECONDS": "10",
        "VISIBILITY_TIMEOUT_SECONDS": "30",
        "CONTENT_KEY_SECRET_ARN": aws.content_key_arn,
        "INGEST_BUCKET": aws.ingest_bucket,
        "MEDIA_BUCKET": aws.media_bucket,
        # One small rung: every job really transcodes and publishes, cheaply.
        "TRANSCODE_LADDER": "144:100",
        "SEGMENT_SECONDS": "2",
        "SCRATCH_DIR": str(scratch),
        "RECEIVE_WAIT_SECONDS": "1",
        "RETRY_BASE_SECONDS": "1",
        "RETRY_MAX_SECONDS": "1",
        **extra,
    }
