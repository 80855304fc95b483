"""SecureVpc (N1-N6): subnet plan, NAT strategy, routes, locked default SG, flow logs, NACLs,
endpoints."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from components.firewall import RoleSecurityGroup
from components.network import (
    INTERFACE_ENDPOINT_SERVICES,
    NatStrategy,
    SecureVpc,
    SecureVpcArgs,
    nat_gateway_count,
    plan_subnets,
)
from offline.engine import run_components

LOGS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/logs"
ZONES3 = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]


def vpc_args(namer, context, **overrides) -> SecureVpcArgs:
    """A /16 over three zones, flow logs under the logs key; `overrides` change any field."""
    values = dict(
        cidr="10.0.0.0/16",
        availability_zones=ZONES3,
        namer=namer,
        context=context,
        logs_key_arn=LOGS_KEY,
    )
    return SecureVpcArgs(**{**values, **overrides})


def build(namer, context, zones=ZONES3, **overrides):
    overrides = {"availability_zones": zones, "log_retention_days": 90, **overrides}
    args = vpc_args(namer, context, **overrides)
    return run_components(lambda: SecureVpc("net", args))


def test_plan_cuts_quarters_per_tier_and_one_subnet_per_az_n1():
    plan = plan_subnets("10.0.0.0/16", 3)
    assert plan.app.summary == "10.0.0.0/18"
    assert plan.app.subnets == ("10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20")
    assert plan.data.subnets == ("10.0.64.0/20", "10.0.80.0/20", "10.0.96.0/20")
    assert plan.public.subnets == ("10.0.128.0/20", "10.0.144.0/20", "10.0.160.0/20")


def test_plan_of_the_smallest_vpc_still_gives_slash_24_subnets():
    plan = plan_subnets("172.16.32.0/20", 2)
    assert plan.data.subnets == ("172.16.36.0/24", "172.16.37.0/24")


@pytest.mark.parametrize(
    ("cidr", "zones", "message"),
    [
        ("10.0.0.0/26", 2, "vpc_cidr=10.0.0.0/26: allowed /16 to /20"),
        ("10.0.0.0/16", 5, "az_count=5: allowed 1..4"),
    ],
)
def test_plan_rejects_what_it_cannot_cut(cidr, zones, message):
    with pytest.raises(ValueError, match=message):
        plan_subnets(cidr, zones)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [(NatStrategy.ONE_PER_AZ, 3), (NatStrategy.SINGLE, 1), (NatStrategy.NONE, 0)],
)
def test_nat_gateway_count_per_strategy_n2(strategy, expected):
    assert nat_gateway_count(strategy, 3) == expected


def test_subnets_of_each_tier_spread_over_distinct_azs_n1(namer, context):
    run = build(namer, context)
    subnets = sorted(run.of_type("aws:ec2/subnet:Subnet"), key=lambda s: s.name)
    for tier in ("public", "app", "data"):
        tier_subnets = [s for s in subnets if s.inputs["tags"]["Tier"] == tier]
        assert [s.inputs["availabilityZone"] for s in tier_subnets] == ZONES3
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets)
    vpc = run.one("aws:ec2/vpc:Vpc")
    assert (vpc.inputs["enableDnsSupport"], vpc.inputs["enableDnsHostnames"]) == (True, True)


def test_one_nat_per_az_each_app_route_uses_its_own_az_nat_n2(namer, context):
    run = build(namer, context, nat_strategy=NatStrategy.ONE_PER_AZ)
    nats = {n.name: n for n in run.of_type("aws:ec2/natGateway:NatGateway")}
    subnets = {s.name: s for s in run.of_type("aws:ec2/subnet:Subnet")}
    routes = {r.name: r.inputs for r in run.of_type("aws:ec2/route:Route")}
    assert len(nats) == 3
    for index in range(3):
        nat = nats[f"net-nat-{index}"]
        assert nat.inputs["subnetId"] == subnets[f"net-public-{index}"].id
        assert routes[f"net-app-{index}-default"]["natGatewayId"] == nat.id


def test_single_nat_is_shared_by_every_app_route_n2(namer, context):
    run = build(namer, context, nat_strategy=NatStrategy.SINGLE)
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == 1
    app_routes = [r for r in run.of_type("aws:ec2/route:Route") if "-app-" in r.name]
    assert len(app_routes) == 3
    assert len({r.inputs["natGatewayId"] for r in app_routes}) == 1


def test_no_nat_means_no_default_route_from_app_subnets_n2(namer, context):
    run = build(namer, context, nat_strategy=NatStrategy.NONE)
    assert run.of_type("aws:ec2/natGateway:NatGateway") == []
    assert [r.name for r in run.of_type("aws:ec2/route:Route")] == ["net-public-default"]


def test_public_route_goes_to_the_internet_gateway_and_data_has_none_n2(namer, context):
    run = build(namer, context)
    public = run.named("net-public-default").inputs
    assert public["destinationCidrBlock"] == "0.0.0.0/0"
    assert public["gatewayId"] == run.one("aws:ec2/internetGateway:InternetGateway").id
    data_table_id = run.named("net-data-rt").id
    assert not [
        r for r in run.of_type("aws:ec2/route:Route") if r.inputs["routeTableId"] == data_table_id
    ]


def test_default_security_group_is_adopted_with_no_rules_n3(namer, context):
    default_sg = build(namer, context).one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default_sg.inputs.get("ingress", []) == []
    assert default_sg.inputs.get("egress", []) == []


def test_flow_logs_go_to_the_kms_encrypted_group_with_retention_n4(namer, context):
    run = build(namer, context)
    group = run.named("net-flow-logs")
    assert group.inputs["kmsKeyId"] == LOGS_KEY
    assert group.inputs["retentionInDays"] == 90
    assert group.inputs["name"] == "/vpc/flow-logs/media-vpc-test"
    flow = run.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["logDestination"] == group.state["arn"]
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["iamRoleArn"] == run.named("net-flow-logs-role").state["arn"]
    assert run.named("net-flow-logs-policy").urn in flow.dependencies


def test_flow_log_role_is_scoped_to_its_group_and_this_accounts_flow_logs_n4(namer, context):
    run = build(namer, context)
    trust = json.loads(run.named("net-flow-logs-role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:ec2:eu-central-1:123456789012:vpc-flow-log/*"},
    }
    policy = json.loads(run.named("net-flow-logs-policy").inputs["policy"])
    group_arn = run.named("net-flow-logs").state["arn"]
    assert policy["Statement"] == [
        {
            "Sid": "WriteFlowLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [group_arn, group_arn + ":*"],
        }
    ]


def test_data_nacl_admits_only_data_ports_from_app_tier_and_within_the_data_tier_n5(namer, context):
    """Issue "Operate" item 1: no all-protocol rule any more, also inside the data tier."""
    run = build(namer, context)
    rules = sorted(
        (
            r.inputs["egress"],
            r.inputs["ruleNumber"],
            r.inputs["protocol"],
            r.inputs["fromPort"],
            r.inputs["toPort"],
            r.inputs["cidrBlock"],
        )
        for r in run.of_type("aws:ec2/networkAclRule:NetworkAclRule")
    )
    assert rules == [
        (False, 100, "6", 5432, 5432, "10.0.0.0/18"),
        (False, 110, "6", 6379, 6379, "10.0.0.0/18"),
        (False, 120, "6", 2049, 2049, "10.0.0.0/18"),
        (False, 200, "6", 5432, 5432, "10.0.64.0/18"),
        (False, 210, "6", 6379, 6379, "10.0.64.0/18"),
        (False, 220, "6", 2049, 2049, "10.0.64.0/18"),
        (False, 300, "6", 1024, 65535, "10.0.64.0/18"),
        (True, 100, "6", 1024, 65535, "10.0.0.0/18"),
        (True, 200, "6", 1024, 65535, "10.0.64.0/18"),
        (True, 300, "6", 5432, 5432, "10.0.64.0/18"),
        (True, 310, "6", 6379, 6379, "10.0.64.0/18"),
        (True, 320, "6", 2049, 2049, "10.0.64.0/18"),
    ]
    nacl = run.one("aws:ec2/networkAcl:NetworkAcl")
    data_ids = [
        s.id for s in run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["Tier"] == "data"
    ]
    assert sorted(nacl.inputs["subnetIds"]) == sorted(data_ids)


@pytest.mark.parametrize(
    ("strategy", "endpoints", "routes"),
    [
        (NatStrategy.ONE_PER_AZ, True, 3),
        (NatStrategy.SINGLE, False, 3),
        (NatStrategy.NONE, True, 0),
    ],
)
def test_workloads_can_wait_for_what_their_subnets_need(
    namer, context, strategy, endpoints, routes
):
    """Issue 14 item 4: what a workload in the app or data subnets uses from its first
    second is offered as prerequisites to wait for."""
    made = {}
    args = vpc_args(namer, context, nat_strategy=strategy, vpc_endpoints=endpoints)
    run_components(lambda: made.setdefault("net", SecureVpc("net", args)))
    network = made["net"]
    assert Counter(type(r).__name__ for r in network.data_prerequisites) == {
        "RouteTableAssociation": 3,
        "NetworkAclRule": 12,
    }
    expected = {
        "RouteTableAssociation": 3,
        "VpcEndpoint": 1 + endpoints * len(INTERFACE_ENDPOINT_SERVICES),
    }
    if routes:
        expected["Route"] = routes
    assert Counter(type(r).__name__ for r in network.app_prerequisites) == expected


def test_nacls_are_optional_n5(namer, context):
    run = build(namer, context, data_subnet_nacls=False)
    assert run.of_type("aws:ec2/networkAcl:NetworkAcl") == []


def test_endpoints_s3_gateway_and_interface_endpoints_in_app_subnets_n6(namer, context):
    run = build(namer, context)
    endpoints = {e.name: e.inputs for e in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    s3 = endpoints.pop("net-s3-endpoint")
    assert (s3["serviceName"], s3["vpcEndpointType"]) == (
        "com.amazonaws.eu-central-1.s3",
        "Gateway",
    )
    # N6, M1: on the three app tables only (the data subnets never call S3), no policy.
    assert s3["routeTableIds"] == [run.named(f"net-app-eu-central-1{zone}-rt").id for zone in "abc"]
    assert "policy" not in s3
    assert sorted(e["serviceName"] for e in endpoints.values()) == sorted(
        f"com.amazonaws.eu-central-1.{s}" for s in INTERFACE_ENDPOINT_SERVICES
    )
    app_ids = sorted(
        s.id for s in run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["Tier"] == "app"
    )
    assert all(
        sorted(e["subnetIds"]) == app_ids and e["privateDnsEnabled"] for e in endpoints.values()
    )
    # Nobody reaches the endpoints until the stack grants it (grant_aws_apis).
    assert run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


def test_interface_endpoints_are_optional_but_s3s_gateway_is_always_there_n6(namer, context):
    """Media through NAT is billed per GB; the gateway endpoint costs nothing (M1, M6)."""
    run = build(namer, context, vpc_endpoints=False)
    [s3] = run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert s3.name == "net-s3-endpoint"
    assert (s3.inputs["vpcEndpointType"], s3.inputs["routeTableIds"]) == (
        "Gateway",
        [run.named(f"net-app-eu-central-1{zone}-rt").id for zone in "abc"],
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"availability_zones": ["eu-central-1a"]},
            "availability_zones=['eu-central-1a']: allowed 2 or 3 distinct zones",
        ),
        ({"availability_zones": ["a", "a"]}, "allowed 2 or 3 distinct zones"),
        (
            {"cidr": "10.0.0.0/28"},
            'cidr="10.0.0.0/28": allowed a private (RFC 1918) IPv4 network in CIDR form (such as 10.0.0.0/16), /16 to /20',
        ),
        ({"cidr": "10.0.0.0/21"}, 'cidr="10.0.0.0/21": allowed a private (RFC 1918)'),
        (
            {"nat_strategy": NatStrategy.NONE, "vpc_endpoints": False},
            'nat_strategy="NONE": allowed ONE_PER_AZ or SINGLE unless vpc_endpoints is true',
        ),
    ],
)
def test_bad_vpc_args_raise_one_error_naming_the_field(namer, context, overrides, message):
    with pytest.raises(ValueError, match="SecureVpcArgs: ") as caught:
        SecureVpc("net", vpc_args(namer, context, **overrides))
    assert message in str(caught.value)


def build_with_consumer(namer, context, **overrides):
    def program():
        vpc = SecureVpc("net", vpc_args(namer, context, **overrides))
        consumer = RoleSecurityGroup(
            "app-sg", role="app", description="consumer", vpc_id=vpc.vpc_id, namer=namer, parent=vpc
        )
        vpc.grant_aws_apis(consumer, "app")

    return run_components(program)


def rules_of(run, token, group_name):
    group_id = run.named(group_name).id
    return [r.inputs for r in run.of_type(token) if r.inputs["securityGroupId"] == group_id]


def test_with_endpoints_aws_apis_are_reached_only_through_them_n3_n6(namer, context):
    run = build_with_consumer(namer, context, vpc_endpoints=True)
    endpoints_sg, app_sg = run.named("net-endpoints-sg").id, run.named("app-sg").id
    prefix_list = run.named("net-s3-endpoint").state["prefixListId"]
    egress = rules_of(run, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "app-sg")
    assert sorted(
        (
            e.get("referencedSecurityGroupId") or e.get("prefixListId"),
            e["fromPort"],
            e["toPort"],
            e.get("cidrIpv4"),
        )
        for e in egress
    ) == sorted([(endpoints_sg, 443, 443, None), (prefix_list, 443, 443, None)])
    ingress = rules_of(
        run, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "net-endpoints-sg"
    )
    assert [(i["referencedSecurityGroupId"], i["fromPort"]) for i in ingress] == [(app_sg, 443)]


def test_without_endpoints_aws_apis_are_reached_via_nat_on_443_only_n2(namer, context):
    run = build_with_consumer(namer, context, vpc_endpoints=False)
    egress = rules_of(run, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "app-sg")
    assert [(e["cidrIpv4"], e["ipProtocol"], e["fromPort"], e["toPort"]) for e in egress] == [
        ("0.0.0.0/0", "tcp", 443, 443)
    ]
