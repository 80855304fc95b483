"""What a data store (the database, the cache) is wired to, shared by their args.

Both live in the private data subnets, one per zone, encrypt with their own CMK, keep a
secret under the Secrets Manager CMK, log to encrypted groups and alarm to the stack's topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.kms import AwsContext
from components.logs import retention_problems
from components.naming import Namer


@dataclass(frozen=True, kw_only=True)
class DataStorePlacement:
    """The wiring of a data store's args."""

    namer: Namer
    """Stack namer for every physical name (required)."""
    context: AwsContext
    """Account facts; the region scopes the KMS condition of `grant_secret_read` (required)."""
    vpc_id: pulumi.Input[str]
    """VPC of the store's security group (required)."""
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private data subnets, one per zone, in the order of `availability_zones` (required)."""
    availability_zones: Sequence[str]
    """Zones of `subnet_ids`; members are placed round-robin over them (required)."""
    storage_key_arn: pulumi.Input[str]
    """The store's own CMK ARN for data at rest (required; an ARN, never an id)."""
    secret_key_arn: pulumi.Input[str]
    """Secrets Manager CMK ARN for the store's secret (required)."""
    logs_key_arn: pulumi.Input[str]
    """Logs CMK ARN for the store's log groups (required)."""
    alarm_topic_arn: pulumi.Input[str]
    """SNS topic every alarm notifies (required)."""
    log_retention_days: int = 30
    """Log retention (an allowed CloudWatch value); default 30."""
    protect_data: bool = False
    """Keep the data on destroy (G3); what that means is the store's own (see its args)."""

    def placement_problems(self) -> list[str]:
        problems = []
        zones = list(self.availability_zones)
        if len(zones) < 2 or len(set(zones)) != len(zones):
            problems.append(f"availability_zones={zones}: allowed 2 or more distinct zones")
        if len(self.subnet_ids) != len(zones):
            problems.append(
                f"subnet_ids: {len(self.subnet_ids)} given, allowed exactly one per "
                f"availability zone ({len(zones)})"
            )
        return problems + retention_problems("log_retention_days", self.log_retention_days)
