"""Shared fixtures for the infrastructure tests (component and whole-program).

Whole-program runs are session-scoped and evaluated once for the whole test session:
`dev_run` and `prod_run` (the stack files as written) and `region_runs` (every stack in every
supported region, G1). Each records the Python deprecation warnings raised while the program
evaluated as `run.python_warnings`.
"""

from __future__ import annotations

import re
import warnings

import pytest

from components.kms import AwsContext
from components.naming import Namer
from offline.engine import ACCOUNT_ID, ProgramRun, run_stack, stack_config

STACKS = ("dev", "prod")
REGIONS = ("eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1")

# pulumi-aws announces its own deprecated modules once, when they are first imported (the same
# notice pyproject.toml filters). A deprecated resource or property the program uses is also
# logged through `pulumi.log.warn`, which every run records in `run.warnings`.
_IMPORT_NOTICE = re.compile(r"^[a-z0-9]+\.\S+ has been deprecated in favor of")


def recorded_run(stack: str, overrides: dict | None = None) -> ProgramRun:
    """`run_stack`, keeping the program's Python deprecation warnings on the run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_stack(stack, overrides)
    run.python_warnings = [str(w.message) for w in caught  # type: ignore[attr-defined]
                           if issubclass(w.category, DeprecationWarning)
                           and not _IMPORT_NOTICE.match(str(w.message))]
    return run


@pytest.fixture
def namer() -> Namer:
    return Namer("media", "test")


@pytest.fixture
def context() -> AwsContext:
    return AwsContext(account_id=ACCOUNT_ID, partition="aws", region="eu-central-1")


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    return recorded_run("dev")


@pytest.fixture(scope="session")
def prod_run() -> ProgramRun:
    return recorded_run("prod")


@pytest.fixture(scope="session")
def region_runs(dev_run, prod_run) -> dict[tuple[str, str], ProgramRun]:
    """`{(stack, region): run}` for every stack file in every supported region (G1), each
    evaluated once; the stack file's own region reuses `dev_run` / `prod_run`."""
    as_written = {"dev": dev_run, "prod": prod_run}
    runs = {}
    for stack in STACKS:
        for region in REGIONS:
            if stack_config(stack).get("aws:region") == region:
                runs[stack, region] = as_written[stack]
            else:
                runs[stack, region] = recorded_run(stack, {"aws:region": region})
    return runs
