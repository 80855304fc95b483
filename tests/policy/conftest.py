"""Whole-stack runs shared by the policy tests (the same captures CrossGuard would see).

They are the infrastructure tests' captures (`tests/infra/conftest.py`): each stack file is
evaluated once per test process for both suites, and the tests reading them join the same
"stacks" xdist group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from offline.engine import ProgramRun
from tests.infra.conftest import (  # noqa: F401 (whole_programs_untraced: an autouse fixture)
    group_whole_stack_tests,
    plan_main_on_shared_runs,
    shared_run,
    whole_programs_untraced,
)


# Before pytest-xdist names each test's group (its own hook has no order).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    group_whole_stack_tests(items, str(config.rootpath / "tests" / "policy"))


@pytest.fixture(scope="session")
def stack_runs() -> dict[str, ProgramRun]:
    return {stack: shared_run(stack) for stack in ("dev", "prod")}


@pytest.fixture(scope="session")
def shared_plan_main() -> Iterator[Callable[[list[str]], int]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield plan_main_on_shared_runs(monkeypatch)
