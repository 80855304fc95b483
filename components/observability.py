"""Operations tier: the alarm topic every tier publishes to (O2).

Tiers create their own alarms with `metric_alarm`, always pointing at this topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.kms import AwsContext
from components.naming import NameKind, Namer, name_tag


@dataclass(frozen=True, kw_only=True)
class AlarmTopicArgs:
    """Inputs of `AlarmTopic`."""

    namer: Namer
    """Stack namer (required)."""
    context: AwsContext
    """Account facts for the topic policy (required)."""
    kms_key_arn: pulumi.Input[str]
    """CMK for the topic; its policy must let cloudwatch.amazonaws.com use it (required)."""
    email: str = ""
    """Address subscribed to the topic; default none."""


class AlarmTopic(pulumi.ComponentResource):
    """Encrypted SNS topic that CloudWatch alarms of this account may publish to."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlarmTopicArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("media:observability:AlarmTopic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        physical = args.namer.name("alarms", NameKind.SNS_TOPIC)
        self.topic = aws.sns.Topic(f"{name}-topic", name=physical,
                                   kms_master_key_id=args.kms_key_arn,
                                   tags=name_tag(physical), opts=child)
        self.arn = self.topic.arn
        aws.sns.TopicPolicy(f"{name}-policy", arn=self.topic.arn,
                            policy=self._policy(args.context), opts=child)
        if args.email:
            aws.sns.TopicSubscription(f"{name}-email", topic=self.topic.arn, protocol="email",
                                      endpoint=args.email, opts=child)
        self.register_outputs({"arn": self.arn})

    def _policy(self, ctx: AwsContext) -> pulumi.Output[str]:
        # A topic policy replaces the default one, so the account owner keeps its rights here.
        account_root = pulumi.Output.concat("arn:", ctx.partition, ":iam::", ctx.account_id,
                                            ":root")
        return pulumi.Output.json_dumps({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountManagesTopic",
                    "Effect": "Allow",
                    "Principal": {"AWS": account_root},
                    "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes",
                               "sns:Subscribe", "sns:ListSubscriptionsByTopic",
                               "sns:Publish"],
                    "Resource": self.topic.arn,
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": self.topic.arn,
                    "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": self.topic.arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        })


def metric_alarm(resource_name: str, *, alarm_name: str, description: str,
                 namespace: str, metric_name: str, dimensions: dict[str, Any],
                 statistic: str, comparison: str, threshold: float, topic_arn: pulumi.Input[str],
                 parent: pulumi.Resource, period: int = 300,
                 evaluation_periods: int = 1,
                 treat_missing_data: str = "notBreaching") -> aws.cloudwatch.MetricAlarm:
    """A CloudWatch alarm on one metric that notifies (and clears) through the alarm topic.

    Missing data counts as not breaching by default: idle queues and streams publish no
    datapoints. Pass `treat_missing_data="breaching"` where silence itself is the failure.
    """
    extended = statistic.startswith("p")
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=alarm_name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dimensions,
        statistic=None if extended else statistic,
        extended_statistic=statistic if extended else None,
        comparison_operator=comparison,
        threshold=threshold,
        period=period,
        evaluation_periods=evaluation_periods,
        treat_missing_data=treat_missing_data,
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=pulumi.ResourceOptions(parent=parent),
    )
