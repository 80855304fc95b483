"""A WAF web ACL in front of one resource, with its logging (A6, M7, O1).

A rate-based rule (requests per 5 minutes per client IP) and AWS managed rule groups, and logs
to an encrypted `aws-waf-logs-` log group with credentials redacted. A REGIONAL ACL is
associated with the resource it protects (an API Gateway stage, a load balancer …); a
CLOUDFRONT ACL lives in `CLOUDFRONT_REGION` with its logs, and the distribution names it in its
own `web_acl_id` (CloudFront takes no association).

`web_acl` is a builder, not a component: its resources are children of the calling component,
so they keep that component's URNs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws_limits import CLOUDFRONT_REGION
from components.kms import AwsContext
from components.logs import encrypted_log_group, retention_problems
from components.naming import NameKind, Namer, name_tag

WAF_MIN_RATE_LIMIT = 10
WAF_MAX_RATE_LIMIT = 2_000_000_000
# Headers WAF must never write to its logs: the API key and SigV4 signatures.
WAF_REDACTED_HEADERS = ("x-api-key", "authorization")
WAF_MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")


class WafScope(StrEnum):
    REGIONAL = "REGIONAL"
    CLOUDFRONT = "CLOUDFRONT"


@dataclass(frozen=True, kw_only=True)
class WebAclArgs:
    """Inputs of `web_acl`."""

    namer: Namer
    """Stack namer for the web ACL's and the log group's names (required)."""
    context: AwsContext
    """Account facts for the log-delivery policy (required)."""
    stem: str
    """Physical name stem: the ACL is `{prefix}-{stem}-waf-{suffix}`, its log group
    `aws-waf-logs-{prefix}-{stem}-{suffix}` (required)."""
    description: str
    """Description of the web ACL (required)."""
    resource_arn: pulumi.Input[str] | None
    """ARN of the regional resource the ACL protects, e.g. a stage's `arn`; None with scope
    CLOUDFRONT, where the distribution names the ACL instead (required)."""
    rate_limit: int
    """Requests per 5 minutes per client IP before WAF blocks (required)."""
    logs_key_arn: pulumi.Input[str]
    """CMK of the WAF log group (required)."""
    log_retention_days: int = 30
    """Retention of the WAF log group; default 30."""
    managed_rule_groups: Sequence[str] = WAF_MANAGED_RULE_GROUPS
    """AWS managed rule groups, in evaluation order after the rate rule; default the common
    rule set and known bad inputs."""
    redacted_headers: Sequence[str] = WAF_REDACTED_HEADERS
    """Headers kept out of the logs; default `x-api-key` and `authorization`."""
    redact_query_string: bool = False
    """Keep query strings out of the logs (they carry signed grants); default False."""
    scope: WafScope = WafScope.REGIONAL
    """REGIONAL (default: the stack's region, associated with `resource_arn`) or CLOUDFRONT
    (in `CLOUDFRONT_REGION`, named by a distribution)."""

    @property
    def region(self) -> str | None:
        """Where the ACL and its logs live: None (the stack's region) unless CloudFront's."""
        return CLOUDFRONT_REGION if self.scope is WafScope.CLOUDFRONT else None

    def validate(self) -> None:
        problems = retention_problems("log_retention_days", self.log_retention_days)
        if not WAF_MIN_RATE_LIMIT <= self.rate_limit <= WAF_MAX_RATE_LIMIT:
            problems.append(
                f"rate_limit={self.rate_limit}: allowed {WAF_MIN_RATE_LIMIT}..{WAF_MAX_RATE_LIMIT}"
            )
        regional = self.scope is WafScope.REGIONAL
        if regional != (self.resource_arn is not None):
            problems.append(
                f"resource_arn: allowed {'an ARN' if regional else 'None'} with scope "
                f"{self.scope.value}"
            )
        if problems:
            raise ValueError("WebAclArgs: " + "; ".join(problems))


def web_acl(name: str, args: WebAclArgs, parent: pulumi.Resource) -> aws.wafv2.WebAcl:
    """`{name}-waf`, its association (REGIONAL), logs and logging, all children of `parent`."""
    args.validate()
    child = pulumi.ResourceOptions(parent=parent)
    acl_name = args.namer.name(f"{args.stem}-waf", NameKind.WAF)
    acl = aws.wafv2.WebAcl(
        f"{name}-waf",
        name=acl_name,
        description=args.description,
        scope=args.scope.value,
        default_action={"allow": {}},
        rules=web_acl_rules(acl_name, args.rate_limit, args.managed_rule_groups),
        visibility_config=_visibility(acl_name),
        tags=name_tag(acl_name),
        region=args.region,
        opts=child,
    )
    if args.resource_arn is not None:
        aws.wafv2.WebAclAssociation(
            f"{name}-waf-association",
            resource_arn=args.resource_arn,
            web_acl_arn=acl.arn,
            opts=child,
        )
    _logging(name, args, acl, parent)
    return acl


def web_acl_rules(
    acl_name: str, rate_limit: int, managed_rule_groups: Sequence[str]
) -> list[dict[str, Any]]:
    """The rate rule first, then each managed rule group; metrics named after the ACL."""
    rate_rule = {
        "name": "rate-limit-per-ip",
        "priority": 1,
        "action": {"block": {}},
        "statement": {"rate_based_statement": {"limit": rate_limit, "aggregate_key_type": "IP"}},
        "visibility_config": _visibility(f"{acl_name}-rate-limit-per-ip"),
    }
    managed_rules = [
        {
            "name": group,
            "priority": priority,
            # Rule groups keep their own actions; `action` here is rejected by WAF.
            "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": {"name": group, "vendor_name": "AWS"}},
            "visibility_config": _visibility(f"{acl_name}-{group}"),
        }
        for priority, group in enumerate(managed_rule_groups, start=2)
    ]
    return [rate_rule, *managed_rules]


def _visibility(metric: str) -> dict[str, Any]:
    return {
        "cloudwatch_metrics_enabled": True,
        "metric_name": metric,
        "sampled_requests_enabled": True,
    }


def _logging(name: str, args: WebAclArgs, acl: aws.wafv2.WebAcl, parent: pulumi.Resource) -> None:
    # WAF accepts only log groups whose names start with aws-waf-logs-, in the ACL's region.
    group = encrypted_log_group(
        f"{name}-waf-logs",
        name=args.namer.path("aws-waf-logs-", args.stem),
        kms_key_arn=args.logs_key_arn,
        retention_days=args.log_retention_days,
        parent=parent,
        region=args.region,
    )
    ctx = args.context if args.region is None else replace(args.context, region=args.region)
    # WAF delivers through CloudWatch Logs' log-delivery service. A policy on this group
    # grants it up front, instead of WAF growing the account-wide AWSWAF-LOGS policy
    # (5,120 characters, ten per region) on every web ACL.
    policy = aws.cloudwatch.LogResourcePolicy(
        f"{name}-waf-logs-policy",
        resource_arn=group.arn,
        policy_document=pulumi.Output.json_dumps(log_delivery_policy(group.arn, ctx)),
        region=args.region,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    redacted: list[dict[str, Any]] = [{"single_header": {"name": h}} for h in args.redacted_headers]
    if args.redact_query_string:
        redacted.append({"query_string": {}})
    aws.wafv2.WebAclLoggingConfiguration(
        f"{name}-waf-logging",
        resource_arn=acl.arn,
        log_destination_configs=[group.arn],
        redacted_fields=redacted,
        region=args.region,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy]),
    )


def log_delivery_policy(group_arn: pulumi.Input[str], ctx: AwsContext) -> dict[str, Any]:
    """Lets log delivery write to the group, for this account's sources only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WafLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": pulumi.Output.concat("delivery.logs.", ctx.dns_suffix)},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": pulumi.Output.concat(group_arn, ":*"),
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": ctx.account_id},
                    "ArnLike": {
                        "aws:SourceArn": pulumi.Output.concat(
                            "arn:", ctx.partition, ":logs:", ctx.region, ":", ctx.account_id, ":*"
                        )
                    },
                },
            }
        ],
    }
