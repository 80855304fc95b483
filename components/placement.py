"""Where a workload runs, shared by the args of the components that run in the VPC.

Every such workload names its resources with the stack's namer, puts a security group of its
own in the stack's VPC and builds ARNs and KMS conditions from the account facts
(`VpcPlacement`). App-tier workloads — the API function, the migration function, the workers —
run in the private app subnets (`AppPlacement`); the data stores in the data subnets
(`components.data_tier.DataStorePlacement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.kms import AwsContext
from components.naming import Namer


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
