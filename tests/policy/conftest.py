"""Whole-stack runs shared by the policy tests (the same captures CrossGuard would see)."""

from __future__ import annotations

import pytest

from offline.engine import run_stack


@pytest.fixture(scope="session")
def stack_runs():
    return {stack: run_stack(stack) for stack in ("dev", "prod")}
