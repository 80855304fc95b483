"""Cold start of the API function: importing the handler loads nothing slow (boto3, redis
with redis.asyncio, pg8000, ssl); each is imported by the first request that needs it.
`scripts/bench_cold_start.py` measures the time."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT

SLOW_MODULES = ("boto3", "botocore.session", "redis", "redis.asyncio", "pg8000", "ssl")


def _loaded_after(statement: str) -> list[str]:
    probe = (
        f"{statement}; import json, sys;"
        f" print(json.dumps([m for m in {SLOW_MODULES!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_cold_start_importing_the_api_handler_loads_no_slow_module():
    """Was boto3 (~0.2 s) and redis with redis.asyncio (~0.17 s): ~510 ms per cold start."""
    assert _loaded_after("import services.api.handler") == []


def test_cold_start_building_the_app_still_defers_them_until_a_request_needs_them():
    build = (
        "import os; os.environ.update(DB_HOST='h', DB_NAME='d', DB_SSL='false',"
        " DB_SECRET_ARN='arn:aws:secretsmanager:eu-central-1:1:secret:x', REDIS_HOST='r',"
        " STREAM_NAME='s', INGEST_BUCKET='b', AWS_REGION='eu-central-1');"
        " from services.api import handler;"
        " handler.build_app(handler.load_api_settings(), 15.0)"
    )
    assert _loaded_after(build) == []


def test_cold_start_lazy_client_is_made_once_on_first_use():
    from services.common.aws import LazyClient

    made = []

    class Client:
        def put_record(self, **kwargs):
            return kwargs

    def factory():
        made.append(1)
        return Client()

    client = LazyClient(factory)
    assert made == []
    assert client.put_record(a=1) == {"a": 1}
    assert client.put_record(a=2) == {"a": 2}
    assert made == [1]
