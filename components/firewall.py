"""Security groups by role, with access granted rather than pre-wired (N3).

Each component owns one `RoleSecurityGroup`. A consumer is let in with
`target.allow_from(consumer, port)`, which adds exactly one ingress rule on the target (from
the consumer's group, on that port) and the matching egress rule on the consumer — the idea of
CDK's `connections`. Groups start with no rules at all: AWS's default allow-all egress is
removed by pulumi-aws, so every flow a workload needs is written down here.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.naming import NameKind, Namer, name_tag

HTTPS = 443
POSTGRES = 5432
REDIS = 6379
NFS = 2049
ANYWHERE_IPV4 = "0.0.0.0/0"


class RoleSecurityGroup:
    """One security group for one role (API backend, workers, database, cache, file system)."""

    def __init__(
        self,
        name: str,
        *,
        role: str,
        description: str,
        vpc_id: pulumi.Input[str],
        namer: Namer,
        parent: pulumi.Resource,
    ):
        self._name = name
        self._parent = parent
        self.physical_name = namer.name(f"{role}-sg", NameKind.SECURITY_GROUP)
        self.group = aws.ec2.SecurityGroup(
            name,
            name=self.physical_name,
            description=description,
            vpc_id=vpc_id,
            revoke_rules_on_delete=True,
            tags=name_tag(self.physical_name),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        self.id: pulumi.Output[str] = self.group.id
        # Every rule opening a flow for this group's workload (its egress, and the ingress
        # others granted it): what a deploy-time action must wait for before it connects.
        self.access_rules: list[pulumi.Resource] = []
        self._admitted: set[str] = set()

    def allow_from(self, peer: RoleSecurityGroup, port: int, label: str) -> None:
        """Admit `peer` on `port` (TCP): ingress here, egress on the peer."""
        ingress = aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-from-{label}",
            security_group_id=self.id,
            referenced_security_group_id=peer.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=f"{label} to {self.physical_name} on {port}",
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
        egress = aws.vpc.SecurityGroupEgressRule(
            f"{peer._name}-to-{self._name}",
            security_group_id=peer.id,
            referenced_security_group_id=self.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=f"to {self.physical_name} on {port}",
            opts=pulumi.ResourceOptions(parent=peer._parent),
        )
        peer.access_rules += [ingress, egress]

    def admit_once(self, peer: RoleSecurityGroup, port: int, owner: str) -> None:
        """`allow_from(peer, port)` labelled with the peer's group name; admitting the same
        peer twice is an error naming `owner` (the component the group guards)."""
        if peer.physical_name in self._admitted:
            raise ValueError(f"{owner}: {peer.physical_name} is already allowed")
        self._admitted.add(peer.physical_name)
        self.allow_from(peer, port, peer.physical_name)

    def allow_https_to_prefix_list(self, prefix_list_id: pulumi.Input[str], label: str) -> None:
        """HTTPS to an AWS-managed prefix list, e.g. S3 through its gateway endpoint."""
        self._https_egress(f"to-{label}", f"HTTPS to {label}", prefix_list_id=prefix_list_id)

    def allow_https_egress(self) -> None:
        """AWS APIs (ECR, Secrets Manager, Logs, SQS, Kinesis) over HTTPS via NAT or endpoints."""
        self._https_egress("out", "HTTPS to AWS APIs", cidr_ipv4=ANYWHERE_IPV4)

    def _https_egress(self, role: str, description: str, **destination: pulumi.Input[str]) -> None:
        self.access_rules.append(
            aws.vpc.SecurityGroupEgressRule(
                f"{self._name}-https-{role}",
                security_group_id=self.id,
                ip_protocol="tcp",
                from_port=HTTPS,
                to_port=HTTPS,
                description=description,
                opts=pulumi.ResourceOptions(parent=self._parent),
                **destination,
            )
        )
