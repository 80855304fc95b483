"""Tunables: every setting a stack may change, declared once, on the field that uses it.

A tier's settings are a frozen dataclass whose fields are made with `tunable(...)`: the config
key, the default, the description and the allowed values or range live in that one call. The
component's args inherit the settings (so `args.cpu` is the tunable itself), and everything
else is derived from the declarations: the config reader (`stack_config`), the `config:` block
of `Pulumi.yaml`, the README's config table, the validation messages, and the tests that probe
every range at both edges.

One rule, one validator: a declared range or choice is checked by `Tunable.problem`; a rule
between fields of one tier is the tier's `rules()`; both report in the caller's vocabulary
(field names for a component's args, config keys for a stack).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, NamedTuple, Self


class Problem(NamedTuple):
    """One broken rule: the field, its value and what is allowed."""

    field: str
    value: Any
    allowed: str


Label = Callable[[str], str]
"""Names a field in the caller's vocabulary (field name, or config key)."""

KINDS = ("string", "integer", "number", "boolean", "array")


def render(label: str, value: Any, allowed: str) -> str:
    return f"{label}={json.dumps(value, default=str)}: allowed {allowed}"


@dataclass(frozen=True)
class Tunable:
    """One declared setting: its config key and everything needed to read and check it."""

    key: str
    default: Any
    description: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    also: tuple[Any, ...] = ()
    """Values allowed outside the range (e.g. -1 for "unreserved")."""
    choices: tuple[Any, ...] | type[Enum] | None = None
    pattern: re.Pattern[str] | None = None
    allowed: str = ""
    """What `pattern` or `check` allows, in words."""
    check: Callable[[Any], bool] | None = None
    """An extra predicate a valid value satisfies (say what it allows in `allowed`)."""
    default_from: str = ""
    """Where the default comes from when no constant fits every stack (e.g. "the stack
    name"); the config layer supplies it, and `Pulumi.yaml` declares no default."""

    @property
    def options(self) -> tuple[Any, ...]:
        if isinstance(self.choices, type):
            return tuple(member.value for member in self.choices)
        return tuple(self.choices or ())

    @property
    def ranged(self) -> bool:
        return self.low is not None and self.high is not None

    def range_text(self) -> str:
        extra = "".join(f"{json.dumps(v)} or " for v in self.also)
        steps = f" in steps of {self.step}" if self.step else ""
        return f"{extra}{_number(self.low)}..{_number(self.high)}{steps}"

    def problem(self, value: Any) -> str | None:
        """What is allowed, if `value` breaks this declaration; None when it holds."""
        if value in self.also:
            return None
        if self.choices is not None and _plain(value) not in self.options:
            return "one of " + ", ".join(map(str, self.options))
        if self.ranged and not self._in_range(value):
            return self.range_text()
        if self.pattern is not None and not self.pattern.match(value):
            return self.allowed
        if self.check is not None and not self.check(value):
            return self.allowed
        return None

    def _in_range(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        on_step = self.step is None or (value / self.step).is_integer()
        return self.low <= value <= self.high and on_step

    def parse(self, text: str) -> Any:
        """The value of a raw config string (the CLI passes every value as text)."""
        value = _PARSERS[self.kind](text)
        if isinstance(self.choices, type) and value in self.options:
            return self.choices(value)
        return value

    def to_config(self) -> Any:
        """The default as `Pulumi.yaml` declares it (it has no fractional number type)."""
        default = _plain(self.default)
        if self.kind == "number":
            return str(default)
        return list(default) if self.kind == "array" else default


def tunable(
    key: str,
    default: Any,
    description: str,
    *,
    kind: str | None = None,
    range: tuple[float, float] | None = None,
    step: float | None = None,
    also: Sequence[Any] = (),
    choices: Sequence[Any] | type[Enum] | None = None,
    pattern: str | None = None,
    allowed: str = "",
    check: Callable[[Any], bool] | None = None,
    default_from: str = "",
) -> Any:
    """A dataclass field declared as a tunable (see the module docstring)."""
    declared = Tunable(
        key=key,
        default=default,
        description=description,
        kind=kind or _kind_of(default),
        low=range[0] if range else None,
        high=range[1] if range else None,
        step=step,
        also=tuple(also),
        choices=tuple(choices)
        if choices is not None and not isinstance(choices, type)
        else choices,
        pattern=re.compile(pattern) if pattern else None,
        allowed=allowed,
        check=check,
        default_from=default_from,
    )
    if declared.kind not in KINDS:
        raise TypeError(f"{key}: kind {declared.kind!r} is not one of {KINDS}")
    if isinstance(default, list):
        raise TypeError(f"{key}: declare an array default as a tuple (settings are frozen)")
    return dataclasses.field(default=default, metadata={"tunable": declared})


class Tunables:
    """Base of a tier's settings: declared fields, their checks and the tier's own rules."""

    TIER: ClassVar[str] = ""
    """The heading this tier's keys go under in the config table."""

    @classmethod
    def declarations(cls) -> list[tuple[str, Tunable]]:
        """(field name, declaration) of every tunable field, in declaration order."""
        return [
            (f.name, f.metadata["tunable"])
            for f in dataclasses.fields(cls)
            if "tunable" in f.metadata
        ]

    def rules(self) -> list[Problem]:
        """Rules between this tier's fields (none by default)."""
        return []

    def tunable_problems(self, label: Label = str) -> list[str]:
        """Every broken declaration and rule of this tier, named with `label`."""
        problems, broken = [], set()
        for name, declared in self.declarations():
            value = getattr(self, name)
            if (allowed := declared.problem(value)) is not None:
                problems.append(render(label(name), value, allowed))
                broken.add(name)
        problems += describe([p for p in self.rules() if p.field not in broken], label)
        return problems

    @classmethod
    def key_of(cls, name: str) -> str:
        """The config key declared for field `name`."""
        return dict(cls.declarations())[name].key

    def tuned(self) -> dict[str, Any]:
        """The tunable values by field name."""
        return {name: getattr(self, name) for name, _ in self.declarations()}

    @classmethod
    def of(cls, settings: Tunables, **wiring: Any) -> Self:
        """Args from a tier's validated settings plus the ids and grants wired in."""
        return cls(**settings.tuned(), **wiring)


def describe(problems: Sequence[Problem], label: Label = str) -> list[str]:
    """Messages for rule problems; a rule names other fields as `{field}`, said here in the
    caller's vocabulary."""
    return [render(label(p.field), p.value, p.allowed.format_map(_Labels(label))) for p in problems]


class _Labels(dict):
    def __init__(self, label: Label):
        super().__init__()
        self.label = label

    def __missing__(self, name: str) -> str:
        return self.label(name)


def _kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, list | tuple):
        return "array"
    return "string"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _number(value: float | None) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"-?\d{1,19}", text.strip()):
        raise ValueError(text)
    return int(text)


def _parse_number(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return int(value) if value.is_integer() else value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _parse_array(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(text)
    return tuple(value)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": _parse_int,
    "number": _parse_number,
    "boolean": _parse_bool,
    "array": _parse_array,
}
