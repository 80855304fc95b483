"""G8: every tunable is declared once, and the declarations drive the checks.

The table tests below are generated from the declarations themselves: each ranged key is
probed at both edges (accepted) and one step beyond each (rejected with the key, the value
and the declared range), through the config layer and through the tier's own settings class,
so a range can neither be skipped nor checked differently in two places.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from components.tunables import Problem, Tunable, Tunables, render, tunable
from stack_config import KEYS_BY_NAME, TIERS, ConfigError, declared_keys, parse_settings

RANGED = [(tier, name, declared) for tier, name, declared in declared_keys() if declared.ranged]
CHOICES = [
    (tier, name, declared)
    for tier, name, declared in declared_keys()
    if declared.choices is not None
]


def _ids(rows):
    return [declared.key for _, _, declared in rows]


def config_problems(**raw: str) -> list[str]:
    try:
        parse_settings(raw, project="media-pipeline", stack="test", region="eu-central-1")
    except ConfigError as error:
        return error.problems
    return []


def _step(declared: Tunable) -> float:
    return declared.step or 1


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _beyond(declared: Tunable) -> list[float]:
    low, high = declared.low - _step(declared), declared.high + _step(declared)
    return [value for value in (low, high) if value not in declared.also]


def test_the_edge_table_covers_every_ranged_key_the_issue_found_untested():
    """The issue found 15 of 36 ranged keys never tested at their edges: this table covers
    every ranged key there is, whatever its count."""
    assert len(RANGED) >= 36
    assert {declared.key for _, _, declared in RANGED} >= {
        "alarmApi5xxThreshold",
        "alarmApiLatencyP99Ms",
        "alarmWorkerCpuPercent",
        "alarmWorkerMemoryPercent",
        "alarmDbCpuPercent",
        "alarmCacheCpuPercent",
        "alarmQueueOldestMessageSeconds",
        "alarmStreamIteratorAgeMs",
        "apiThrottleRateLimit",
        "apiThrottleBurstLimit",
        "apiLambdaMemoryMb",
        "dbSecretRotationDays",
        "cacheSnapshotRetentionDays",
    }


@pytest.mark.parametrize(("tier", "name", "declared"), RANGED, ids=_ids(RANGED))
def test_g8_both_edges_of_every_range_are_accepted(tier, name, declared):
    for edge in (declared.low, declared.high):
        own = render(declared.key, edge, declared.range_text())
        assert own not in config_problems(**{declared.key: _text(edge)})
        assert declared.problem(edge) is None
        settings = tier(**{name: edge})
        assert not any(
            p.startswith(f"{name}=") and declared.range_text() in p
            for p in settings.tunable_problems()
        )


@pytest.mark.parametrize(("tier", "name", "declared"), RANGED, ids=_ids(RANGED))
def test_g8_one_step_beyond_either_edge_is_rejected_naming_key_value_and_range(
    tier, name, declared
):
    for beyond in _beyond(declared):
        value = declared.parse(_text(beyond))
        expected = f"{declared.key}={json.dumps(value)}: allowed {declared.range_text()}"
        assert expected in config_problems(**{declared.key: _text(beyond)})
        field_message = f"{name}={json.dumps(value)}: allowed {declared.range_text()}"
        assert field_message in tier(**{name: value}).tunable_problems()


@pytest.mark.parametrize(("tier", "name", "declared"), CHOICES, ids=_ids(CHOICES))
def test_g8_every_declared_choice_is_accepted_and_anything_else_named(tier, name, declared):
    for option in declared.options:
        assert not any(
            p.startswith(f"{declared.key}=")
            for p in config_problems(**{declared.key: str(option)})
            if "one of" in p
        )
    wrong = "not-an-option" if declared.kind == "string" else "-7"
    assert render(
        declared.key, declared.parse(wrong), "one of " + ", ".join(map(str, declared.options))
    ) in config_problems(**{declared.key: wrong})


@pytest.mark.parametrize(
    ("tier", "name", "declared"), list(declared_keys()), ids=_ids(declared_keys())
)
def test_g8_every_default_satisfies_its_own_declaration(tier, name, declared):
    assert declared.problem(declared.default) is None
    assert getattr(tier(), name) == declared.default


def test_every_key_is_declared_once_and_each_tier_has_a_heading():
    keys = [declared.key for _, _, declared in declared_keys()]
    assert len(keys) == len(set(keys)) == len(KEYS_BY_NAME)
    assert len({tier.TIER for tier in TIERS}) == len(TIERS)


def test_components_args_inherit_their_tier_settings_unchanged():
    """The component's args are the tier's settings plus wiring: one declaration each."""
    from components.api import PublicApiArgs, PublicApiSettings
    from components.database import EncryptedAuroraArgs, EncryptedAuroraSettings
    from components.worker import MediaWorkerServiceArgs, MediaWorkerServiceSettings

    for args, settings in (
        (PublicApiArgs, PublicApiSettings),
        (EncryptedAuroraArgs, EncryptedAuroraSettings),
        (MediaWorkerServiceArgs, MediaWorkerServiceSettings),
    ):
        assert issubclass(args, settings)
        assert args.declarations() == settings.declarations()


def test_rules_name_other_fields_in_the_callers_vocabulary():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Pair(Tunables):
        low: int = tunable("pairLow", 1, "low", range=(0, 10))
        high: int = tunable("pairHigh", 2, "high", range=(0, 10))

        def rules(self) -> list[Problem]:
            if self.high < self.low:
                return [Problem("high", self.high, f">= {{low}} ({self.low})")]
            return []

    bad = Pair(low=5, high=3)
    assert bad.tunable_problems() == ["high=3: allowed >= low (5)"]
    keys = {"low": "pairLow", "high": "pairHigh"}
    assert bad.tunable_problems(keys.get) == ["pairHigh=3: allowed >= pairLow (5)"]
    # A field its declaration already refuses is not judged again by a rule.
    assert Pair(low=5, high=11).tunable_problems() == ["high=11: allowed 0..10"]


def test_config_values_parse_by_declared_kind_g8():
    assert config_problems(workerCpu="1024.5") == [
        'workerCpu="1024.5": allowed a value of type integer'
    ]
    assert config_problems(dbMinCapacity="nan") == [
        'dbMinCapacity="nan": allowed a value of type number'
    ]
    assert config_problems(workerEfsMount="yes") == [
        'workerEfsMount="yes": allowed a value of type boolean'
    ]
    assert config_problems(workerMinTasks="9" * 30) == [
        f'workerMinTasks="{"9" * 30}": allowed a value of type integer'
    ]
