"""Shared fixtures for the infrastructure tests (component and whole-program)."""

from __future__ import annotations

import pytest

from components.kms import AwsContext
from components.naming import Namer
from offline.engine import ACCOUNT_ID, run_stack


@pytest.fixture
def namer() -> Namer:
    return Namer("media", "test")


@pytest.fixture
def context() -> AwsContext:
    return AwsContext(account_id=ACCOUNT_ID, partition="aws", region="eu-central-1")


@pytest.fixture(scope="session")
def dev_run():
    return run_stack("dev")


@pytest.fixture(scope="session")
def prod_run():
    return run_stack("prod")
