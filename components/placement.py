"""Where a workload runs, shared by the args of the components that run in the VPC.

Every such workload names its resources with the stack's namer, puts a security group of its
own in the stack's VPC and builds ARNs and KMS conditions from the account facts
(`VpcPlacement`). App-tier workloads — the API function, the migration function, the workers —
run in the private app subnets (`AppPlacement`); the data stores in the data subnets
(`components.data_tier.DataStorePlacement`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from components.kms import AwsContext
from components.naming import Namer

if TYPE_CHECKING:
    from components.firewall import RoleSecurityGroup

NetworkGrant = Callable[["RoleSecurityGroup"], object]


@dataclass(frozen=True, kw_only=True)
class VpcPlacement:
    """The stack wiring of every workload in the VPC."""

    namer: Namer
    """Stack namer for every physical name (required)."""
    context: AwsContext
    """Account, partition and region facts for ARNs and KMS conditions (required)."""
    vpc_id: pulumi.Input[str]
    """VPC of the workload's security group (required)."""


@dataclass(frozen=True, kw_only=True)
class AppPlacement(VpcPlacement):
    """The wiring of an app-tier workload's args."""

    subnet_ids: Sequence[pulumi.Input[str]]
    """Private app subnets with a path to AWS APIs (NAT or endpoints), one per AZ, at least two
    (required)."""
    network_grants: Sequence[NetworkGrant] = ()
    """Called with the workload's security group before the workload exists — the tiers'
    `allow_from`, the network's `grant_aws_apis` — so the workload waits for the rules they
    add (its egress and its peers' ingress). Default none."""
    placement_ready: Sequence[pulumi.Resource] = ()
    """What the app subnets need before the workload reaches anything — their routes and
    endpoints (`SecureVpc.app_prerequisites`); the workload waits for them. Default none."""

    def open_flows(self, group: RoleSecurityGroup) -> list[pulumi.Resource]:
        """Apply `network_grants` to `group`: everything the workload waits for before it
        starts (its rules and the subnets' prerequisites), so its first connection never
        races a rule or a route being created (issue 14, item 4)."""
        for grant in self.network_grants:
            grant(group)
        return [*group.access_rules, *self.placement_ready]
