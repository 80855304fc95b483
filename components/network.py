"""`SecureVpc`: the network tier (N1-N6).

Three subnet tiers per AZ: public (NAT gateways only), private app (Lambda, Fargate tasks,
interface endpoints) and private data (Aurora, cache, EFS mount targets; no route to the
internet at all). The VPC CIDR is cut into quarters — app, data, public, spare — and each
quarter into four subnets, one per AZ, so each tier also has one summary CIDR that NACLs and
rules can name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_aws as aws

from components.firewall import HTTPS, NFS, POSTGRES, REDIS, RoleSecurityGroup
from components.iam import Grant, attach_grants, service_role
from components.kms import AwsContext
from components.naming import Namer, name_tag
from components.tunables import Problem, Tunables, tunable

# Interface endpoints for the AWS APIs the workloads call (N6): image pulls, logs, secrets,
# keys, the queue, the stream, STS for SDK credential chains, X-Ray for traces and the
# ElastiCache API (the cache token's rotation changes the group's token).
INTERFACE_ENDPOINT_SERVICES = (
    "ecr.api",
    "ecr.dkr",
    "logs",
    "secretsmanager",
    "kms",
    "sqs",
    "kinesis-streams",
    "sts",
    "xray",
    "elasticache",
)
DATA_PORTS = (POSTGRES, REDIS, NFS)
EPHEMERAL_PORTS = (1024, 65535)
MAX_AZS = 4  # the CIDR plan cuts each tier quarter into four subnets
# A /20 VPC gives /24 subnets (251 usable addresses): room for Lambda ENIs, up to 200 tasks
# and the interface endpoints. Smaller VPCs would cut subnets that run out of addresses.
PREFIX_RANGE = (16, 20)


class NatStrategy(StrEnum):
    ONE_PER_AZ = "ONE_PER_AZ"
    SINGLE = "SINGLE"
    NONE = "NONE"


def is_private_vpc_cidr(cidr: str) -> bool:
    """A private (RFC 1918) IPv4 network, /16 to /20, written as a network address."""
    try:
        network = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        return False
    return network.is_private and PREFIX_RANGE[0] <= network.prefixlen <= PREFIX_RANGE[1]


@dataclass(frozen=True)
class TierPlan:
    summary: str
    subnets: tuple[str, ...]


@dataclass(frozen=True)
class SubnetPlan:
    public: TierPlan
    app: TierPlan
    data: TierPlan


def plan_subnets(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Split `vpc_cidr` into per-AZ public, app and data subnets (pure; tested directly)."""
    if not 1 <= az_count <= MAX_AZS:
        raise ValueError(f"az_count={az_count}: allowed 1..{MAX_AZS}")
    network = ipaddress.IPv4Network(vpc_cidr, strict=True)
    if not PREFIX_RANGE[0] <= network.prefixlen <= PREFIX_RANGE[1]:
        raise ValueError(f"vpc_cidr={vpc_cidr}: allowed /{PREFIX_RANGE[0]} to /{PREFIX_RANGE[1]}")
    app, data, public, _spare = network.subnets(prefixlen_diff=2)

    def tier(summary: ipaddress.IPv4Network) -> TierPlan:
        subnets = tuple(str(s) for s in summary.subnets(prefixlen_diff=2))[:az_count]
        return TierPlan(str(summary), subnets)

    return SubnetPlan(public=tier(public), app=tier(app), data=tier(data))


def nat_gateway_count(strategy: NatStrategy, az_count: int) -> int:
    return {NatStrategy.ONE_PER_AZ: az_count, NatStrategy.SINGLE: 1, NatStrategy.NONE: 0}[strategy]


@dataclass(frozen=True, kw_only=True)
class SecureVpcSettings(Tunables):
    """The network's tunables (N1, N2, N5, N6)."""

    TIER = "network"

    cidr: str = tunable(
        "vpcCidr",
        "10.0.0.0/16",
        "VPC IPv4 CIDR: a private (RFC 1918) network, /16 to /20.",
        check=is_private_vpc_cidr,
        allowed="a private (RFC 1918) IPv4 network in CIDR form (such as 10.0.0.0/16), /16 to /20",
    )
    nat_strategy: NatStrategy = tunable(
        "natStrategy",
        NatStrategy.ONE_PER_AZ,
        "NAT gateways: ONE_PER_AZ (HA), SINGLE (cheap, non-production) or NONE (needs endpoints).",
        choices=NatStrategy,
    )
    data_subnet_nacls: bool = tunable(
        "dataSubnetNacls", True, "Network ACLs on the data subnets (N5)."
    )
    vpc_endpoints: bool = tunable(
        "vpcEndpoints",
        True,
        "Interface endpoints for the AWS APIs the workloads call (N6); the S3 gateway "
        "endpoint exists in every stack.",
    )

    def rules(self) -> list[Problem]:
        if self.nat_strategy is NatStrategy.NONE and not self.vpc_endpoints:
            return [
                Problem(
                    "nat_strategy",
                    self.nat_strategy.value,
                    "ONE_PER_AZ or SINGLE unless {vpc_endpoints} is true (tasks must "
                    "reach ECR, Secrets Manager and CloudWatch Logs)",
                )
            ]
        return []


@dataclass(frozen=True, kw_only=True)
class SecureVpcArgs(SecureVpcSettings):
    """Inputs of `SecureVpc`: its settings plus what the stack wires in."""

    availability_zones: list[str]
    """Zone names looked up for the region, one subnet per tier in each (required)."""
    namer: Namer
    """Stack namer (required)."""
    context: AwsContext
    """Account, partition and region facts (required)."""
    logs_key_arn: pulumi.Input[str]
    """CMK ARN for the flow-log group; the key must allow the regional logs principal."""
    log_retention_days: int = 30
    """Flow-log retention (an allowed CloudWatch value)."""
    endpoint_services: tuple[str, ...] = field(default=INTERFACE_ENDPOINT_SERVICES)
    """Which interface endpoints to create when `vpc_endpoints` is on."""

    def validate(self) -> None:
        problems = self.tunable_problems()
        zones = self.availability_zones
        if not 2 <= len(zones) <= 3 or len(set(zones)) != len(zones):
            problems.append(f"availability_zones={zones}: allowed 2 or 3 distinct zones")
        if problems:
            raise ValueError("SecureVpcArgs: " + "; ".join(problems))


class SecureVpc(pulumi.ComponentResource):
    """VPC with public, private-app and private-data subnets across the given AZs."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    app_subnet_ids: list[pulumi.Output[str]]
    data_subnet_ids: list[pulumi.Output[str]]
    plan: SubnetPlan

    def __init__(self, name: str, args: SecureVpcArgs, opts: pulumi.ResourceOptions | None = None):
        args.validate()
        super().__init__("media:network:SecureVpc", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self.plan = plan_subnets(args.cidr, len(args.availability_zones))
        self.zones = list(args.availability_zones)
        # What a workload placed in the app or data subnets uses from its first second
        # (routes, ACL rules, endpoints): it lists these in `depends_on` (issue 14, item 4).
        self.app_prerequisites: list[pulumi.Resource] = []
        self.data_prerequisites: list[pulumi.Resource] = []
        vpc_name = args.namer.name("vpc")
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            # Interface endpoints with private DNS and EFS mount by DNS need both.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=name_tag(vpc_name),
            opts=self._child,
        )
        self.vpc_id = self.vpc.id
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            tags=name_tag(args.namer.name("default-sg-unused")),
            opts=self._child,
        )
        self.igw = aws.ec2.InternetGateway(
            f"{name}-igw",
            vpc_id=self.vpc.id,
            tags=name_tag(args.namer.name("igw")),
            opts=self._child,
        )
        public = self._subnets("public", self.plan.public)
        app = self._subnets("app", self.plan.app)
        data = self._subnets("data", self.plan.data)
        self.public_subnet_ids = [s.id for s in public]
        self.app_subnet_ids = [s.id for s in app]
        self.data_subnet_ids = [s.id for s in data]
        self._public_routes(public)
        nat_ids = self._nat_gateways(public)
        app_tables = self._app_routes(app, nat_ids)
        self._data_routes(data)
        self._flow_logs()
        if args.data_subnet_nacls:
            self._data_nacl(data)
        self._s3_gateway(app_tables)
        if args.vpc_endpoints:
            self._endpoints()
        self.nat_gateway_count = len(nat_ids)
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "app_subnet_ids": self.app_subnet_ids,
                "data_subnet_ids": self.data_subnet_ids,
            }
        )

    def grant_aws_apis(self, consumer: RoleSecurityGroup, label: str) -> None:
        """Let `consumer` reach the AWS APIs over HTTPS (ECR, Logs, Secrets Manager, SQS, …).

        With endpoints: only the interface endpoints' group and S3's prefix list (image
        layers), so a task has no path to the internet at all. Without: anywhere, via NAT.
        """
        if not self._args.vpc_endpoints:
            consumer.allow_https_egress()
            return
        self.endpoint_security_group.allow_from(consumer, HTTPS, label)
        consumer.allow_https_to_prefix_list(self.s3_endpoint.prefix_list_id, "s3")

    def grant_public_aws_api(self, consumer: RoleSecurityGroup, label: str) -> None:
        """Let `consumer` reach an AWS API that has no interface endpoint (the API Gateway
        management API) over HTTPS through the NAT gateways; without endpoints
        `grant_aws_apis` has opened that already."""
        if self._args.nat_strategy is NatStrategy.NONE:
            raise ValueError(
                f"SecureVpc: {label} needs HTTPS to an AWS API without an interface endpoint, "
                f"and {self._args.key_of('nat_strategy')}=NONE leaves the app subnets no way out"
            )
        if self._args.vpc_endpoints:
            consumer.allow_https_egress()

    def _subnets(self, tier: str, plan: TierPlan) -> list[aws.ec2.Subnet]:
        subnets = []
        for index, (zone, cidr) in enumerate(zip(self.zones, plan.subnets, strict=False)):
            subnet_name = self._args.namer.name(f"{tier}-{zone}")
            subnets.append(
                aws.ec2.Subnet(
                    f"{self._name}-{tier}-{index}",
                    vpc_id=self.vpc.id,
                    cidr_block=cidr,
                    availability_zone=zone,
                    # Nothing in this platform needs a public IP; NAT gateways use Elastic IPs.
                    map_public_ip_on_launch=False,
                    tags={**name_tag(subnet_name), "Tier": tier},
                    opts=self._child,
                )
            )
        return subnets

    def _route_table(
        self,
        label: str,
        subnets: list[aws.ec2.Subnet],
        prerequisites: list[pulumi.Resource] | None = None,
    ) -> aws.ec2.RouteTable:
        table = aws.ec2.RouteTable(
            f"{self._name}-{label}-rt",
            vpc_id=self.vpc.id,
            tags=name_tag(self._args.namer.name(f"{label}-rt")),
            opts=self._child,
        )
        for index, subnet in enumerate(subnets):
            association = aws.ec2.RouteTableAssociation(
                f"{self._name}-{label}-rta-{index}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=self._child,
            )
            if prerequisites is not None:
                prerequisites.append(association)
        return table

    def _public_routes(self, public: list[aws.ec2.Subnet]) -> None:
        table = self._route_table("public", public)
        aws.ec2.Route(
            f"{self._name}-public-default",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=self.igw.id,
            opts=self._child,
        )

    def _nat_gateways(self, public: list[aws.ec2.Subnet]) -> list[pulumi.Output[str]]:
        count = nat_gateway_count(self._args.nat_strategy, len(public))
        nat_ids = []
        for index in range(count):
            nat_name = self._args.namer.name(f"nat-{self.zones[index]}")
            # EIP and NAT fail intermittently if created before the IGW is attached.
            after_igw = pulumi.ResourceOptions(parent=self, depends_on=[self.igw])
            eip = aws.ec2.Eip(
                f"{self._name}-nat-eip-{index}",
                domain="vpc",
                tags=name_tag(nat_name),
                opts=after_igw,
            )
            nat = aws.ec2.NatGateway(
                f"{self._name}-nat-{index}",
                allocation_id=eip.id,
                subnet_id=public[index].id,
                tags=name_tag(nat_name),
                opts=after_igw,
            )
            nat_ids.append(nat.id)
        return nat_ids

    def _app_routes(
        self, app: list[aws.ec2.Subnet], nat_ids: list[pulumi.Output[str]]
    ) -> list[aws.ec2.RouteTable]:
        """One table per AZ, routed to the NAT in the same AZ (or the shared one)."""
        tables = []
        for index, subnet in enumerate(app):
            table = self._route_table(f"app-{self.zones[index]}", [subnet], self.app_prerequisites)
            if nat_ids:
                route = aws.ec2.Route(
                    f"{self._name}-app-{index}-default",
                    route_table_id=table.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nat_ids[index % len(nat_ids)],
                    opts=self._child,
                )
                self.app_prerequisites.append(route)
            tables.append(table)
        return tables

    def _data_routes(self, data: list[aws.ec2.Subnet]) -> aws.ec2.RouteTable:
        # Data subnets keep only the local route: databases never reach the internet.
        return self._route_table("data", data, self.data_prerequisites)

    def _flow_logs(self) -> None:
        args = self._args
        group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs",
            name=args.namer.path("/vpc/flow-logs/", "vpc"),
            kms_key_id=args.logs_key_arn,
            retention_in_days=args.log_retention_days,
            opts=self._child,
        )
        ctx = args.context
        # Confused-deputy guard: only flow logs of this account may assume the role.
        role = service_role(
            f"{self._name}-flow-logs-role",
            role="vpc-flow-logs",
            service="vpc-flow-logs.amazonaws.com",
            ctx=ctx,
            namer=args.namer,
            parent=self,
            source_arn=pulumi.Output.concat(
                "arn:", ctx.partition, ":ec2:", ctx.region, ":", ctx.account_id, ":vpc-flow-log/*"
            ),
        )
        policy = attach_grants(
            f"{self._name}-flow-logs-policy",
            role,
            [
                Grant(
                    sid="WriteFlowLogs",
                    actions=(
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ),
                    resources=(group.arn, pulumi.Output.concat(group.arn, ":*")),
                )
            ],
            parent=self,
        )
        self.flow_log_group = group
        self.flow_log = aws.ec2.FlowLog(
            f"{self._name}-flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=name_tag(args.namer.name("flow-log")),
            # Delivery starts at once; without its permissions the first records are dropped.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )

    def _data_nacl(self, data: list[aws.ec2.Subnet]) -> None:
        """Data subnets admit only the data ports from the app tier, and among themselves only
        the data ports and their replies: cache replicas replicate from their primary over the
        cache port; Aurora replicates in its storage layer and EFS has no peers in the tier."""
        app_cidr, data_cidr = self.plan.app.summary, self.plan.data.summary
        nacl = aws.ec2.NetworkAcl(
            f"{self._name}-data-nacl",
            vpc_id=self.vpc.id,
            subnet_ids=[s.id for s in data],
            tags=name_tag(self._args.namer.name("data-nacl")),
            opts=self._child,
        )
        rules = [
            (100 + i * 10, False, "6", port, port, app_cidr) for i, port in enumerate(DATA_PORTS)
        ]
        rules += [
            (200 + i * 10, False, "6", port, port, data_cidr) for i, port in enumerate(DATA_PORTS)
        ]
        rules += [
            (300, False, "6", *EPHEMERAL_PORTS, data_cidr),
            (100, True, "6", *EPHEMERAL_PORTS, app_cidr),
            (200, True, "6", *EPHEMERAL_PORTS, data_cidr),
        ]
        rules += [
            (300 + i * 10, True, "6", port, port, data_cidr) for i, port in enumerate(DATA_PORTS)
        ]
        for number, egress, protocol, from_port, to_port, cidr in rules:
            direction = "out" if egress else "in"
            rule = aws.ec2.NetworkAclRule(
                f"{self._name}-data-nacl-{direction}-{number}",
                network_acl_id=nacl.id,
                rule_number=number,
                egress=egress,
                protocol=protocol,
                rule_action="allow",
                cidr_block=cidr,
                from_port=from_port,
                to_port=to_port,
                opts=self._child,
            )
            self.data_prerequisites.append(rule)
        self.data_nacl = nacl

    def _s3_gateway(self, app_tables: list[aws.ec2.RouteTable]) -> None:
        """S3 through a gateway endpoint in every stack (N6): it costs nothing, while media
        through a NAT gateway is billed per GB. On the app tables only: the data subnets'
        databases and caches never call S3.

        No endpoint policy (full access): a restrictive one silently breaks what uses S3
        behind the scenes — Fargate image layers come from ECR's
        `prod-<region>-starport-layer-bucket` (PITFALLS 124) — and it would not stop a task
        from reaching other buckets anyway, since the app subnets also route to a NAT
        gateway. Who may touch the media is decided by the roles' policies and the buckets'
        own policies. Presigned browser uploads never traverse the endpoint, so the buckets
        carry no `aws:SourceVpce` condition either."""
        s3 = aws.ec2.get_vpc_endpoint_service_output(
            service="s3", service_type="Gateway", opts=pulumi.InvokeOptions(parent=self)
        )
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{self._name}-s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=s3.service_name,
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in app_tables],
            tags=name_tag(self._args.namer.name("s3-endpoint")),
            opts=self._child,
        )
        self.app_prerequisites.append(self.s3_endpoint)

    def _endpoints(self) -> None:
        invoke = pulumi.InvokeOptions(parent=self)
        self.endpoint_security_group = RoleSecurityGroup(
            f"{self._name}-endpoints-sg",
            role="endpoints",
            description="Interface endpoints: HTTPS from the private app subnets",
            vpc_id=self.vpc.id,
            namer=self._args.namer,
            parent=self,
        )
        for service in self._args.endpoint_services:
            label = service.replace(".", "-")
            found = aws.ec2.get_vpc_endpoint_service_output(
                service=service, service_type="Interface", opts=invoke
            )
            endpoint = aws.ec2.VpcEndpoint(
                f"{self._name}-{label}-endpoint",
                vpc_id=self.vpc.id,
                service_name=found.service_name,
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=self.app_subnet_ids,
                security_group_ids=[self.endpoint_security_group.id],
                tags=name_tag(self._args.namer.name(f"{label}-endpoint")),
                opts=self._child,
            )
            self.app_prerequisites.append(endpoint)
