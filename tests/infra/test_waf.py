"""The regional WAF builder (A6) on its own: bad args fail before anything is registered."""

from __future__ import annotations

import pytest

from components.waf import WAF_MAX_RATE_LIMIT, WAF_MIN_RATE_LIMIT, RegionalWafArgs, regional_waf
from offline.engine import run_components

LOGS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/logs"
STAGE = "arn:aws:apigateway:eu-central-1::/restapis/abc/stages/v1"


def waf_args(namer, context, **changes) -> RegionalWafArgs:
    values = dict(
        namer=namer,
        context=context,
        stem="api",
        description="test ACL",
        resource_arn=STAGE,
        rate_limit=2000,
        logs_key_arn=LOGS_KEY,
    )
    return RegionalWafArgs(**{**values, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate_limit": WAF_MIN_RATE_LIMIT - 1}, f"rate_limit=9: allowed 10..{WAF_MAX_RATE_LIMIT}"),
        (
            {"rate_limit": WAF_MAX_RATE_LIMIT + 1},
            f"rate_limit={WAF_MAX_RATE_LIMIT + 1}: allowed 10..{WAF_MAX_RATE_LIMIT}",
        ),
        ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3, 5"),
    ],
)
def test_a6_bad_waf_args_name_the_field_and_register_nothing(namer, context, changes, message):
    import pulumi

    def program():
        parent = pulumi.ComponentResource("media:test:Parent", "parent")
        regional_waf("api", waf_args(namer, context, **changes), parent)

    with pytest.raises(ValueError, match="RegionalWafArgs: ") as caught:
        run_components(program)
    assert message in str(caught.value)
    assert [r for r in caught.value.registered if r.custom] == []  # type: ignore[attr-defined]
