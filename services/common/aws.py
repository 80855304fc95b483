"""boto3 clients and the Kinesis producer.

boto3 honours AWS_REGION and AWS_ENDPOINT_URL from the environment, which is how the
tests point the worker processes at a local moto server.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.common.events import Event

AWS_ERRORS = (BotoCoreError, ClientError)


def aws_client(
    service: str, *, region: str | None, connect_timeout: float = 3, read_timeout: float = 10
) -> Any:
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout)
    return boto3.client(service, region_name=region, config=config)


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
