"""CrossGuard glue: each rule of `rules.py` as a `ResourceValidationPolicy` (O4).

Kept apart from `__main__.py` (which serves the pack as soon as it is built) so the tests can
build the policies and run their validations without a Pulumi engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# The analyzer hands `validate` its props behind an unknown-checking proxy that raises
# `UnknownValueError` for a value unknown during preview, and the wire marks such values with the
# `UNKNOWN_*` sentinels. Both live in `pulumi_policy.proxy`, which the package does not re-export:
# no public type names them.
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

# The tests import this module as `policy.pack`, the pack's own __main__ as `pack`; both have
# the repository root on the path, so the rules are always the one module `policy.rules`.
from policy.rules import (
    CONFIGURED_RULES,
    STATIC_RULES,
    UNKNOWN,
    PolicyConfig,
    Rule,
    configured_rules,
)

PACK_NAME = "media-platform-security"

# Each configured rule's schema: the keys of its entry in policy-config.<stack>.json.
CONFIG_SCHEMAS = {
    "required-tags": {"environmentSuffix": {"type": "string", "minLength": 1}},
    "names-carry-suffix": {"environmentSuffix": {"type": "string", "minLength": 1}},
    "destroyable-unless-protected": {"dataProtection": {"type": "boolean"}},
}

_UNKNOWN_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


def plain(value: Any) -> Any:
    """CrossGuard props (proxies that raise on values unknown during preview) as plain data,
    with each unknown value replaced by `rules.UNKNOWN`.

    Reads the proxies only through the `Mapping` / `Sequence` interface `ResourceValidationArgs`
    declares for `props`, so any implementation of that interface works."""
    if isinstance(value, Mapping):
        return {key: _plain_item(value, key) for key in value}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain_item(value, index) for index in range(len(value))]
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return UNKNOWN
    return value


def _plain_item(container: Mapping | Sequence, key: Any) -> Any:
    try:
        item = container[key]
    except UnknownValueError:
        return UNKNOWN
    return plain(item)


def _validate(rule_name: str) -> Any:
    static = {rule.name: rule for rule in STATIC_RULES}

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        rule: Rule = static.get(rule_name) or next(
            r
            for r in configured_rules(PolicyConfig.from_mapping(args.get_config()))
            if r.name == rule_name
        )
        for message in rule.check(args.resource_type, plain(args.props)):
            report_violation(message, None)

    return validate


def _validate_stack(rule: Rule) -> Any:
    """A rule over the whole stack, each violation reported on the resource it names."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        urns = {resource.name: resource.urn for resource in args.resources}
        captured = [(r.resource_type, r.name, plain(r.props)) for r in args.resources]
        for name, message in rule.check_stack(captured):
            report_violation(message, urns.get(name))

    return validate


def build_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """One policy per rule: mandatory rules fail the preview, advisory ones warn."""
    metadata = STATIC_RULES + configured_rules(PolicyConfig("", False))
    return [
        (StackValidationPolicy if rule.stack_check else ResourceValidationPolicy)(
            name=rule.name,
            description=f"{rule.description} ({rule.requirements})",
            validate=_validate_stack(rule) if rule.stack_check else _validate(rule.name),
            enforcement_level=(
                EnforcementLevel.MANDATORY if rule.mandatory else EnforcementLevel.ADVISORY
            ),
            config_schema=(
                PolicyConfigSchema(
                    properties=CONFIG_SCHEMAS[rule.name], required=list(CONFIG_SCHEMAS[rule.name])
                )
                if rule.name in CONFIGURED_RULES
                else None
            ),
        )
        for rule in metadata
    ]
