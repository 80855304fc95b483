"""The WAF builder (A6, M7) on its own: bad args fail before anything is registered; a
CLOUDFRONT web ACL lives in the CloudFront region with its logs and is associated with nothing."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.aws_limits import CLOUDFRONT_REGION
from components.waf import WAF_MAX_RATE_LIMIT, WAF_MIN_RATE_LIMIT, WafScope, WebAclArgs, web_acl
from offline.engine import run_components

LOGS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/logs"
STAGE = "arn:aws:apigateway:eu-central-1::/restapis/abc/stages/v1"


def waf_args(namer, context, **changes) -> WebAclArgs:
    values = dict(
        namer=namer,
        context=context,
        stem="api",
        description="test ACL",
        resource_arn=STAGE,
        rate_limit=2000,
        logs_key_arn=LOGS_KEY,
    )
    return WebAclArgs(**{**values, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate_limit": WAF_MIN_RATE_LIMIT - 1}, f"rate_limit=9: allowed 10..{WAF_MAX_RATE_LIMIT}"),
        (
            {"rate_limit": WAF_MAX_RATE_LIMIT + 1},
            f"rate_limit={WAF_MAX_RATE_LIMIT + 1}: allowed 10..{WAF_MAX_RATE_LIMIT}",
        ),
        ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3, 5"),
        ({"resource_arn": None}, "resource_arn: allowed an ARN with scope REGIONAL"),
        ({"scope": WafScope.CLOUDFRONT}, "resource_arn: allowed None with scope CLOUDFRONT"),
    ],
)
def test_a6_bad_waf_args_name_the_field_and_register_nothing(namer, context, changes, message):
    def program():
        parent = pulumi.ComponentResource("media:test:Parent", "parent")
        web_acl("api", waf_args(namer, context, **changes), parent)

    with pytest.raises(ValueError, match="WebAclArgs: ") as caught:
        run_components(program)
    assert message in str(caught.value)
    assert [r for r in caught.value.registered if r.custom] == []  # type: ignore[attr-defined]


def test_m7_a_cloudfront_acl_and_its_logs_live_in_the_cloudfront_region_unassociated(
    namer, context
):
    def program():
        parent = pulumi.ComponentResource("media:test:Parent", "parent")
        web_acl(
            "cdn",
            waf_args(
                namer,
                context,
                stem="cdn",
                resource_arn=None,
                scope=WafScope.CLOUDFRONT,
                redacted_headers=("cookie",),
                redact_query_string=True,
            ),
            parent,
        )

    run = run_components(program)
    regions = {r.name: r.inputs.get("region") for r in run.resources if r.custom}
    assert regions == {
        "cdn-waf": CLOUDFRONT_REGION,
        "cdn-waf-logs": CLOUDFRONT_REGION,
        "cdn-waf-logs-policy": CLOUDFRONT_REGION,
        "cdn-waf-logging": CLOUDFRONT_REGION,
    }
    acl = run.one("aws:wafv2/webAcl:WebAcl")
    assert acl.inputs["scope"] == "CLOUDFRONT"
    assert acl.state["arn"].startswith(f"arn:aws:wafv2:{CLOUDFRONT_REGION}:123456789012:global/")
    logging = run.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    assert logging.inputs["redactedFields"] == [
        {"singleHeader": {"name": "cookie"}},
        {"queryString": {}},
    ]
    policy = json.loads(run.named("cdn-waf-logs-policy").inputs["policyDocument"])
    assert policy["Statement"][0]["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:logs:{CLOUDFRONT_REGION}:123456789012:*"
    }


def test_a6_a_regional_acl_stays_in_the_stacks_region_and_is_associated(namer, context):
    def program():
        parent = pulumi.ComponentResource("media:test:Parent", "parent")
        web_acl("api", waf_args(namer, context), parent)

    run = run_components(program)
    assert all("region" not in r.inputs for r in run.resources if r.custom)
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["resourceArn"] == STAGE
    assert run.one("aws:wafv2/webAcl:WebAcl").inputs["scope"] == "REGIONAL"
