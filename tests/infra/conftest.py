"""Shared fixtures for the infrastructure tests (component and whole-program).

Whole-program runs are evaluated once per test process and shared by every test that only
reads them (`shared_run`): `dev_run` and `prod_run` (the stack files as written),
`region_runs` (every stack in every supported region, G1), the policy tests' `stack_runs` and
the offline plan's evaluation of a stack file (`shared_plan_main`). Each records the Python
deprecation warnings raised while the program evaluated as `run.python_warnings`.

Under pytest-xdist every worker process has its own captures, so the tests reading them share
one xdist group ("stacks"), which one worker runs: no stack is evaluated twice per run.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterator

import coverage
import pytest

import offline.engine
from components.kms import AwsContext
from components.naming import Namer
from offline.engine import ACCOUNT_ID, ProgramRun, run_stack, stack_config

STACKS = ("dev", "prod")
# Fixtures that hand out whole-stack captures; tests using one run in the "stacks" group.
STACK_FIXTURES = frozenset({"dev_run", "prod_run", "region_runs", "stack_runs", "shared_plan_main"})
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
    run.python_warnings = [
        str(w.message)
        for w in caught  # type: ignore[attr-defined]
        if issubclass(w.category, DeprecationWarning) and not _IMPORT_NOTICE.match(str(w.message))
    ]
    return run


_SHARED_RUNS: dict[tuple[str, str], ProgramRun] = {}


def shared_run(stack: str, region: str | None = None) -> ProgramRun:
    """The stack file's run (in `region` if given, else its own), evaluated once per process.
    Only for tests that read it: a test that changed it would change it for all of them."""
    own_region = stack_config(stack).get("aws:region")
    key = (stack, region or own_region)
    if key not in _SHARED_RUNS:
        overrides = None if key[1] == own_region else {"aws:region": key[1]}
        _SHARED_RUNS[key] = recorded_run(stack, overrides)
    return _SHARED_RUNS[key]


def plan_main_on_shared_runs(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], int]:
    """`offline.plan.main` taking a stack file as written from `shared_run` instead of
    evaluating it once more; with overrides (--region) it still evaluates afresh."""
    import offline.plan

    evaluate = offline.plan.run_stack

    def run_stack(stack: str, overrides: dict | None = None, **options) -> ProgramRun:
        if overrides or options:
            return evaluate(stack, overrides, **options)
        return shared_run(stack)

    monkeypatch.setattr(offline.plan, "run_stack", run_stack)
    return offline.plan.main


def group_whole_stack_tests(items: list[pytest.Item], directory: str) -> None:
    """Put the tests under `directory` that read a shared capture into the "stacks" xdist group
    (--dist loadgroup), so one worker evaluates each stack once for all of them."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        # Tests that pick a capture by name (request.getfixturevalue) may read one too.
        code = getattr(getattr(item, "function", None), "__code__", None)
        dynamic = code is not None and "getfixturevalue" in code.co_names
        if item.path.is_relative_to(directory) and (dynamic or fixtures & STACK_FIXTURES):
            item.add_marker(pytest.mark.xdist_group("stacks"))


# Before pytest-xdist names each test's group (its own hook has no order).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    group_whole_stack_tests(items, str(config.rootpath / "tests" / "infra"))


def untraced(evaluate: Callable[..., ProgramRun]) -> Callable[..., ProgramRun]:
    """`evaluate` with the coverage tracer paused while it runs (when coverage is measuring).

    A whole-program evaluation re-runs component code the component tests cover already,
    while the tracer, which sees every Python call, makes Pulumi's own machinery about 60 %
    slower (3.4 s instead of 2.1 s a stack). The coverage printed is then what the component,
    policy and service tests reach: never more than with the tracer on."""

    @functools.wraps(evaluate)
    def wrapper(*args, **kwargs) -> ProgramRun:
        measuring = coverage.Coverage.current()
        if measuring is None:
            return evaluate(*args, **kwargs)
        measuring.stop()
        try:
            return evaluate(*args, **kwargs)
        finally:
            measuring.start()

    return wrapper


@pytest.fixture(scope="session", autouse=True)
def whole_programs_untraced() -> Iterator[None]:
    """Every whole-program evaluation (the shared captures, the offline plan, cost and
    preflight tests, the tests with overrides) runs untraced (`untraced`)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(offline.engine, "run_program", untraced(offline.engine.run_program))
        yield


@pytest.fixture
def namer() -> Namer:
    return Namer("media", "test")


@pytest.fixture
def context() -> AwsContext:
    return AwsContext(account_id=ACCOUNT_ID, partition="aws", region="eu-central-1")


# The same values once per module: a component built with them serves every test of the
# module that only reads it (a component build costs about 0.4 s).
@pytest.fixture(scope="module")
def module_namer() -> Namer:
    return Namer("media", "test")


@pytest.fixture(scope="module")
def module_context() -> AwsContext:
    return AwsContext(account_id=ACCOUNT_ID, partition="aws", region="eu-central-1")


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    return shared_run("dev")


@pytest.fixture(scope="session")
def prod_run() -> ProgramRun:
    return shared_run("prod")


@pytest.fixture(scope="session")
def region_runs() -> dict[tuple[str, str], ProgramRun]:
    """`{(stack, region): run}` for every stack file in every supported region (G1), each
    evaluated once; the stack file's own region is `dev_run` / `prod_run`."""
    return {(stack, region): shared_run(stack, region) for stack in STACKS for region in REGIONS}


@pytest.fixture(scope="session")
def shared_plan_main() -> Iterator[Callable[[list[str]], int]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield plan_main_on_shared_runs(monkeypatch)
