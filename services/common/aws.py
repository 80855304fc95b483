"""boto3 clients and the Kinesis producer.

boto3 honours AWS_REGION and AWS_ENDPOINT_URL from the environment, which is how the
tests point the worker processes at a local moto server.

boto3 is imported when the first client is made, not with this module: it costs about
0.2 s, which the API function then pays only on a request that needs AWS, not on every
cold start (`scripts/bench_cold_start.py`). `botocore.exceptions` alone is cheap.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from services.common.events import Event

AWS_ERRORS = (BotoCoreError, ClientError)


def aws_client(
    service: str,
    *,
    region: str | None,
    connect_timeout: float = 3,
    read_timeout: float = 10,
    max_attempts: int | None = None,
    endpoint_url: str | None = None,
    **options: Any,
) -> Any:
    """A client with bounded timeouts and botocore's standard retry mode; `max_attempts`
    (first call included) caps retries where the caller has a time budget (the mode's
    default is 3 attempts). `options` are further botocore `Config` settings
    (`signature_version`, `max_pool_connections`)."""
    import boto3
    from botocore.config import Config

    # botocore's `max_attempts` counts retries only; `total_max_attempts` counts the first
    # call too, which is what callers sizing a time budget mean.
    retries: dict[str, Any] = {"mode": "standard"}
    if max_attempts is not None:
        retries["total_max_attempts"] = max_attempts
    config = Config(
        connect_timeout=connect_timeout, read_timeout=read_timeout, retries=retries, **options
    )
    return boto3.client(service, region_name=region, config=config, endpoint_url=endpoint_url)


class LazyClient:
    """A boto3 client made on first use: `LazyClient(lambda: aws_client("kinesis", ...))`."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, name)


class StreamUnavailable(RuntimeError):
    """The event could not be put on the stream."""


class EventStream:
    def __init__(self, kinesis: Any, stream_name: str) -> None:
        self._kinesis = kinesis
        self._stream_name = stream_name

    def put(self, event: Event) -> str:
        """Put one event keyed by its video id; return the sequence number."""
        try:
            response = self._kinesis.put_record(
                StreamName=self._stream_name,
                Data=event.to_json().encode(),
                PartitionKey=event.partition_key,
            )
        except AWS_ERRORS as error:
            raise StreamUnavailable(
                f"cannot put {event.type} on {self._stream_name}: {error}"
            ) from error
        return response["SequenceNumber"]
