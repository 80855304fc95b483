"""The account and region a stack deploys into, looked up, never written down (G1).

One explicit AWS provider carries the region and the common tags (G4) as default tags for
every resource; the zones, account, partition and deploying role are read through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.kms import AwsContext

# Zones that need an opt-in (Local Zones, Wavelength) are not availability zones to spread over.
_STANDARD_ZONES = [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


@dataclass(frozen=True)
class DeploymentTarget:
    """Where the stack's resources go: the provider, the account facts and the zones."""

    provider: aws.Provider
    context: AwsContext
    zone_names: list[str]
    deployer_arn: pulumi.Output[str]
    """The role behind the deploying session (CI's OIDC role, an engineer's SSO role)."""

    @property
    def options(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(provider=self.provider)

    @classmethod
    def look_up(cls, region: str, tags: Mapping[str, str]) -> DeploymentTarget:
        provider = aws.Provider("aws", region=region, default_tags={"tags": dict(tags)})
        invoke = pulumi.InvokeOptions(provider=provider)
        zones = aws.get_availability_zones(state="available", filters=_STANDARD_ZONES, opts=invoke)
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke)
        session = aws.iam.get_session_context_output(arn=identity.arn, opts=invoke)
        context = AwsContext(
            account_id=identity.account_id,
            partition=partition.partition,
            region=region,
            dns_suffix=partition.dns_suffix,
        )
        return cls(provider, context, list(zones.names), session.issuer_arn)
