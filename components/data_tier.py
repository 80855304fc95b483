"""What a data store (the database, the cache) is wired to, and what both build alike.

Both live in the private data subnets, one per zone, encrypt with their own CMK, keep a
secret under the Secrets Manager CMK, log to encrypted groups and alarm to the stack's topic.
`DataStorePlacement` is the part of their args that says so; `DataStore` builds the pieces
that follow from it the same way for both: the role security group consumers are admitted
to, the subnet group, the protected store's final snapshot name and the secret-read grant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.firewall import RoleSecurityGroup
from components.iam import attach_grants, secret_read_grants
from components.logs import retention_problems
from components.naming import NameKind, check_name, name_tag
from components.placement import VpcPlacement


@dataclass(frozen=True, kw_only=True)
class DataStorePlacement(VpcPlacement):
    """The wiring of a data store's args; the region of `context` scopes the KMS condition of
    `grant_secret_read`."""

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


class DataStore(pulumi.ComponentResource):
    """Base of the data-store components: what they build from their placement alike."""

    port: int
    security_group: RoleSecurityGroup

    def __init__(
        self,
        type_token: str,
        name: str,
        args: DataStorePlacement,
        opts: pulumi.ResourceOptions | None,
        *,
        port: int,
    ):
        super().__init__(type_token, name, None, opts)
        self._name = name
        self._placement = args
        self._child = pulumi.ResourceOptions(parent=self)
        self.port = port

    def _role_security_group(self, role: str, description: str) -> RoleSecurityGroup:
        """The store's own group: no rule until a consumer is admitted (`allow_from`)."""
        return RoleSecurityGroup(
            f"{self._name}-sg",
            role=role,
            description=description,
            vpc_id=self._placement.vpc_id,
            namer=self._placement.namer,
            parent=self,
        )

    def _subnet_group(
        self,
        make: Callable[..., pulumi.CustomResource],
        stem: str,
        kind: NameKind,
        description: str,
    ) -> pulumi.CustomResource:
        """The service's subnet group (`make`, e.g. `aws.rds.SubnetGroup`) over the data subnets."""
        name = self._placement.namer.name(stem, kind)
        return make(
            f"{self._name}-subnets",
            name=name,
            description=description,
            subnet_ids=list(self._placement.subnet_ids),
            tags=name_tag(name),
            opts=self._child,
        )

    def _final_snapshot_identifier(
        self, identifier: str, kind: NameKind
    ) -> pulumi.Output[str] | None:
        """`<identifier>-final-<8 random characters>` when the data is protected, else None
        (a final snapshot would block re-creating the store under its name)."""
        if not self._placement.protect_data:
            return None
        stem = f"{identifier}-final-"
        check_name(stem + "x" * 8, kind)
        # A fixed name fails the second destroy (snapshot already exists); the random part is
        # new for every incarnation of the stack and stable within one.
        suffix = random.RandomString(
            f"{self._name}-final-snapshot-suffix",
            length=8,
            special=False,
            upper=False,
            opts=self._child,
        )
        return pulumi.Output.concat(stem, suffix.result)

    def allow_from(self, peer: RoleSecurityGroup) -> None:
        """Admit `peer` on the store's port: ingress here, matching egress on the peer (C4,
        D6). Admitting the same peer twice is an error."""
        self.security_group.admit_once(peer, self.port, self._name)

    def _grant_secret_read(
        self, resource_name: str, role: aws.iam.Role, label: str, secret_arn: pulumi.Input[str]
    ) -> aws.iam.RolePolicy:
        """Let `role` read `secret_arn` and decrypt it only through Secrets Manager."""
        placement = self._placement
        return attach_grants(
            resource_name,
            role,
            secret_read_grants(label, secret_arn, placement.secret_key_arn, placement.context),
            parent=self,
        )
