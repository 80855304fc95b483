"""What every test process shares.

botocore parses a service's JSON model (hundreds of kilobytes) once per session, and moto
starts every mocked test with a fresh boto3 default session, so each test paid that parse
again for every client it made — about 70 ms a client. One loader per process keeps the
parsed models (read-only data) for all sessions; sessions, credentials and clients stay fresh
per test.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import botocore.session
import pytest


@pytest.fixture(scope="session", autouse=True)
def one_botocore_loader_per_process() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(
            botocore.session, "create_loader", functools.cache(botocore.session.create_loader)
        )
        yield
