"""Whole-program wiring: what `__main__.py` connects, checked on the real program's resources.

Component tests prove each component does what its arguments say; these prove the program
passes the right arguments: the tiers sit in the right subnets, producers get the write (not
the read) grants, only the intended groups reach each data store, every alarm notifies the one
topic, every log group uses the logs key, and nothing depends on the deploying account.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws_limits import CLOUDFRONT_REGION
from offline.engine import ACCOUNT_ID, ProgramRun, run_stack

STACKS = ["dev", "prod"]
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
TIER_OUTPUTS = {"public": "publicSubnetIds", "app": "appSubnetIds", "data": "dataSubnetIds"}


@pytest.fixture(params=STACKS)
def stack_run(request, dev_run, prod_run) -> ProgramRun:
    return {"dev": dev_run, "prod": prod_run}[request.param]


def group_id(run: ProgramRun, name: str) -> str:
    return run.one(SG, name).id


# --- subnets: outputs, tags and routes agree (G6, N1, N2) -------------------------------------


def tier_subnet_ids(run: ProgramRun, tier: str) -> list[str]:
    """Ids of the subnets tagged `Tier=<tier>`, in the order of the stack's zones."""
    zones = run.outputs["availabilityZones"]
    tagged = [s for s in run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["Tier"] == tier]
    return [s.id for s in sorted(tagged, key=lambda s: zones.index(s.inputs["availabilityZone"]))]


def default_route_target(run: ProgramRun, subnet_id: str) -> str | None:
    """Where the subnet's route table sends 0.0.0.0/0: `igw`, `nat` or None (no internet)."""
    table = next(
        a.inputs["routeTableId"]
        for a in run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
        if a.inputs["subnetId"] == subnet_id
    )
    routes = [
        r.inputs
        for r in run.of_type("aws:ec2/route:Route")
        if r.inputs["routeTableId"] == table and r.inputs.get("destinationCidrBlock") == "0.0.0.0/0"
    ]
    if not routes:
        return None
    (route,) = routes
    return (
        "igw"
        if route.get("gatewayId", "").startswith("igw-")
        else "nat"
        if route.get("natGatewayId", "").startswith("nat-")
        else "other"
    )


def test_g6_subnet_outputs_are_the_subnets_of_their_tier(stack_run):
    zones = len(stack_run.outputs["availabilityZones"])
    for tier, output in TIER_OUTPUTS.items():
        assert stack_run.outputs[output] == tier_subnet_ids(stack_run, tier), output
        assert len(stack_run.outputs[output]) == zones
    every = [i for output in TIER_OUTPUTS.values() for i in stack_run.outputs[output]]
    assert len(set(every)) == len(every) == 3 * zones


def test_n2_exported_public_subnets_reach_the_internet_gateway_app_a_nat_data_nothing(stack_run):
    routes = {
        tier: {default_route_target(stack_run, s) for s in stack_run.outputs[output]}
        for tier, output in TIER_OUTPUTS.items()
    }
    assert routes == {"public": {"igw"}, "app": {"nat"}, "data": {None}}


def test_n1_every_tier_is_placed_in_its_own_subnets(stack_run):
    outputs = stack_run.outputs
    data, app, public = (
        outputs["dataSubnetIds"],
        outputs["appSubnetIds"],
        outputs["publicSubnetIds"],
    )
    assert stack_run.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == data
    assert stack_run.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"] == data
    assert sorted(
        t.inputs["subnetId"] for t in stack_run.of_type("aws:efs/mountTarget:MountTarget")
    ) == sorted(data)
    assert {
        n.inputs["subnetId"] for n in stack_run.of_type("aws:ec2/natGateway:NatGateway")
    } <= set(public)
    for endpoint in stack_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint"):
        if endpoint.inputs.get("vpcEndpointType") == "Interface":
            assert endpoint.inputs["subnetIds"] == app, endpoint.name


def test_w1_worker_service_runs_in_the_app_subnets_without_public_ip(stack_run):
    service = stack_run.one("aws:ecs/service:Service").inputs
    assert service["networkConfiguration"] == {
        "subnets": stack_run.outputs["appSubnetIds"],
        "securityGroups": [group_id(stack_run, "worker-sg")],
        "assignPublicIp": False,
    }


def test_a4_api_function_runs_in_the_app_subnets_with_its_own_group(stack_run):
    for function, group in (("api-function", "api-sg"), ("schema-function", "schema-sg")):
        assert stack_run.one("aws:lambda/function:Function", function).inputs["vpcConfig"] == {
            "subnetIds": stack_run.outputs["appSubnetIds"],
            "securityGroupIds": [group_id(stack_run, group)],
        }


# --- security groups: the complete rule sets (N3, D6, C4, W4, N6) -----------------------------


def _rule(names: dict[str, str], inputs: dict[str, Any]) -> tuple:
    peer = inputs.get("referencedSecurityGroupId") or inputs.get("sourceSecurityGroupId")
    cidrs = tuple(inputs.get("cidrBlocks") or ())  # legacy and inline rules take a list
    source = (
        names.get(peer, peer)
        if peer
        else inputs.get("cidrIpv4") or inputs.get("cidrIpv6") or inputs.get("prefixListId") or cidrs
    )
    return (
        source,
        inputs.get("ipProtocol") or inputs.get("protocol"),
        inputs["fromPort"],
        inputs["toPort"],
    )


def security_rules(run: ProgramRun, direction: str) -> dict[str, set[tuple]]:
    """`{group name: {(source or destination, protocol, from, to)}}` over every way a rule can
    be written: standalone rules (both resource types) and inline rules on the group."""
    names = {g.id: g.name for g in run.of_type(SG)}
    rules: dict[str, set[tuple]] = {name: set() for name in names.values()}
    standalone = INGRESS if direction == "ingress" else EGRESS
    for rule in run.of_type(standalone):
        rules[names[rule.inputs["securityGroupId"]]].add(_rule(names, rule.inputs))
    for rule in run.of_type(LEGACY_RULE):
        if rule.inputs["type"] == direction:
            rules[names[rule.inputs["securityGroupId"]]].add(_rule(names, rule.inputs))
    for group in run.of_type(SG):
        for inline in group.inputs.get(direction) or []:
            rules[group.name].add(_rule(names, inline))
    return rules


def test_n3_d6_c4_every_ingress_rule_of_the_program_is_intended(stack_run):
    """The complete ingress of every group: the database admits exactly the API, the workers
    and the migration function, the cache the API, the workers and its token's rotation
    function, the file system only the workers, the endpoints HTTPS from the app tier."""
    expected = {
        "database-sg": {
            ("api-sg", "tcp", 5432, 5432),
            ("worker-sg", "tcp", 5432, 5432),
            ("schema-sg", "tcp", 5432, 5432),
        },
        "cache-sg": {
            ("api-sg", "tcp", 6379, 6379),
            ("worker-sg", "tcp", 6379, 6379),
            ("cache-rotation-sg", "tcp", 6379, 6379),
        },
        "files-sg": {("worker-sg", "tcp", 2049, 2049)},
        "worker-sg": set(),
        "api-sg": set(),
        "schema-sg": set(),
        "cache-rotation-sg": set(),
        "api-key-rotation-sg": set(),
        # Key delivery is reached through its function URL, never through the VPC (M9).
        "delivery-sg": set(),
    }
    if stack_run.stack == "prod":  # interface endpoints (N6) are prod-only
        expected["network-endpoints-sg"] = {
            ("api-sg", "tcp", 443, 443),
            ("worker-sg", "tcp", 443, 443),
            ("schema-sg", "tcp", 443, 443),
            ("delivery-sg", "tcp", 443, 443),
            ("cache-rotation-sg", "tcp", 443, 443),
            ("api-key-rotation-sg", "tcp", 443, 443),
        }
    assert security_rules(stack_run, "ingress") == expected


def test_n3_n6_every_egress_rule_of_the_program_is_intended(stack_run):
    """Data ports to exactly the granted tiers; AWS APIs via NAT anywhere on 443 in dev, and in
    prod (endpoints on) only to the interface endpoints and S3's prefix list: no internet."""
    if stack_run.stack == "prod":
        s3 = stack_run.named("network-s3-endpoint").state["prefixListId"]
        aws_apis = {("network-endpoints-sg", "tcp", 443, 443), (s3, "tcp", 443, 443)}
    else:
        aws_apis = {("0.0.0.0/0", "tcp", 443, 443)}
    expected = {
        "worker-sg": aws_apis
        | {
            ("database-sg", "tcp", 5432, 5432),
            ("cache-sg", "tcp", 6379, 6379),
            ("files-sg", "tcp", 2049, 2049),
        },
        "api-sg": aws_apis | {("database-sg", "tcp", 5432, 5432), ("cache-sg", "tcp", 6379, 6379)},
        # The migration function: the database and Secrets Manager, nothing else.
        "schema-sg": aws_apis | {("database-sg", "tcp", 5432, 5432)},
        # Key delivery: Secrets Manager (the content key) and nothing else (M9).
        "delivery-sg": aws_apis,
        # The cache token's rotation: Secrets Manager, the ElastiCache API and the cache.
        "cache-rotation-sg": aws_apis | {("cache-sg", "tcp", 6379, 6379)},
        # The API key's rotation: Secrets Manager and the API Gateway management API only;
        # the management API has no interface endpoint, so in prod it alone goes out via NAT.
        "api-key-rotation-sg": aws_apis | {("0.0.0.0/0", "tcp", 443, 443)},
        "database-sg": set(),
        "cache-sg": set(),
        "files-sg": set(),
    }
    if stack_run.stack == "prod":
        expected["network-endpoints-sg"] = set()
    assert security_rules(stack_run, "egress") == expected


def test_n3_no_ingress_from_anywhere_and_the_default_group_is_empty(stack_run):
    open_to_all = [
        (group, rule)
        for group, rules in security_rules(stack_run, "ingress").items()
        for rule in rules
        if rule[0] in ("0.0.0.0/0", "::/0", ("0.0.0.0/0",))
    ]
    assert open_to_all == []
    default = stack_run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert (default.get("ingress") or [], default.get("egress") or []) == ([], [])


# --- stream producers get the write grant (S4) ------------------------------------------------


def stream_write_policy(run: ProgramRun) -> dict[str, Any]:
    stream = run.outputs["streamArn"]
    key = run.one("aws:kms/key:Key", "keys-stream-key").state["arn"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StreamWrite",
                "Effect": "Allow",
                "Action": [
                    "kinesis:PutRecord",
                    "kinesis:PutRecords",
                    "kinesis:DescribeStreamSummary",
                ],
                "Resource": [stream],
            },
            {
                "Sid": "StreamKeyEncrypt",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey"],
                "Resource": [key],
                "Condition": {"StringEquals": {"kms:EncryptionContext:aws:kinesis:arn": stream}},
            },
        ],
    }


def actions_of_role(run: ProgramRun, role_resource: str) -> set[str]:
    role = run.one("aws:iam/role:Role", role_resource).id
    return {
        action
        for policy in run.of_type(ROLE_POLICY)
        if policy.inputs["role"] == role
        for statement in json.loads(policy.inputs["policy"])["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }


@pytest.mark.parametrize(
    ("policy", "role"),
    [
        ("worker-task-stream", "worker-task-role"),  # R3: workers publish job progress
        ("api-stream-write", "api-role"),  # R2: the API publishes job.requested
    ],
)
def test_s4_producers_get_exactly_the_write_grant_on_the_programs_stream(stack_run, policy, role):
    attached = stack_run.one(ROLE_POLICY, policy)
    assert attached.inputs["role"] == stack_run.one("aws:iam/role:Role", role).id
    assert json.loads(attached.inputs["policy"]) == stream_write_policy(stack_run)


@pytest.mark.parametrize("role", ["worker-task-role", "api-role"])
def test_s4_producers_cannot_read_the_stream(stack_run, role):
    actions = actions_of_role(stack_run, role)
    assert {a for a in actions if a.startswith("kinesis:")} == {
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "kinesis:DescribeStreamSummary",
    }


# --- alarms notify the one topic (O2) ---------------------------------------------------------


def alarm_topic_of(run: ProgramRun, alarm) -> str:
    """The topic an alarm must notify: the alarm topic, or for CloudFront's alarms (which
    live in the CloudFront region) the delivery tier's topic there (O2, M7)."""
    if alarm.inputs.get("region") == CLOUDFRONT_REGION:
        return run.one("aws:sns/topic:Topic", "delivery-alarms-topic").state["arn"]
    return run.outputs["alarmTopicArn"]


SCALING_ALARMS = ("worker-wake-alarm", "worker-idle-alarm")


def test_o2_every_alarm_of_the_program_notifies_and_clears_through_the_alarm_topic(stack_run):
    topic = stack_run.outputs["alarmTopicArn"]
    # Scaling alarms drive App Auto Scaling, not people (dev's scaling from and to zero).
    scaling = [a for a in stack_run.of_type(ALARM) if a.name in SCALING_ALARMS]
    assert [a.inputs["alarmActions"][0].split(":")[2] for a in scaling] == ["appautoscaling"] * len(
        scaling
    )
    alarms = [a for a in stack_run.of_type(ALARM) if a.name not in SCALING_ALARMS]
    assert len(alarms) >= 20
    wrong = [
        (a.name, a.inputs.get("alarmActions"), a.inputs.get("okActions"))
        for a in alarms
        if a.inputs.get("alarmActions") != [alarm_topic_of(stack_run, a)]
        or a.inputs.get("okActions") != [alarm_topic_of(stack_run, a)]
    ]
    assert wrong == []
    assert topic == stack_run.one("aws:sns/topic:Topic", "alarms-topic").state["arn"]
    edge = sorted(a.name for a in alarms if a.inputs.get("region") == CLOUDFRONT_REGION)
    assert edge == ["delivery-5xx-rate-alarm", "delivery-origin-latency-alarm"]


def test_o2_stack_files_subscribe_nobody_by_default(stack_run):
    assert stack_run.of_type(SUBSCRIPTION) == []


def test_o2_alarm_email_from_config_subscribes_exactly_that_address():
    run = run_stack("dev", {"alarmEmail": "ops@example.com"})
    subscriptions = run.of_type(SUBSCRIPTION)
    delivery_topic = run.one("aws:sns/topic:Topic", "delivery-alarms-topic").state["arn"]
    # Both alarm topics: the stack's, and the delivery tier's in the CloudFront region (M7).
    assert sorted(
        (s.inputs["protocol"], s.inputs["endpoint"], s.inputs["topic"]) for s in subscriptions
    ) == sorted(
        [
            ("email", "ops@example.com", run.outputs["alarmTopicArn"]),
            ("email", "ops@example.com", delivery_topic),
        ]
    )
    assert delivery_topic.startswith(f"arn:aws:sns:{CLOUDFRONT_REGION}:")
    assert run.warnings == []


# --- log groups use the logs key (O1, K2) -----------------------------------------------------


def test_o1_every_log_group_is_encrypted_with_exactly_the_logs_key(stack_run):
    """No log group is deliberately on another key: the trail's own audit key encrypts only
    its S3 bucket, its CloudWatch copy uses the logs key like every other group. The groups
    CloudFront makes live in its region (access logs, WAF logs) use the key there (M7)."""
    logs_key = stack_run.one("aws:kms/key:Key", "keys-logs-key").state["arn"]
    edge_key = stack_run.one("aws:kms/key:Key", "delivery-edge-key-key").state["arn"]
    groups = stack_run.of_type(LOG_GROUP)
    assert len(groups) >= 12
    expected = {
        g.name: edge_key if g.inputs.get("region") == CLOUDFRONT_REGION else logs_key
        for g in groups
    }
    assert {g.name: g.inputs["kmsKeyId"] for g in groups} == expected
    assert sorted(n for n, key in expected.items() if key == edge_key) == [
        "delivery-access-logs",
        "delivery-waf-logs",
    ]


# --- who reads which secret (K3, G5, M8, M9) ---------------------------------------------------


def secret_labels(run: ProgramRun) -> dict[str, str]:
    """Secret ARN -> label: every Secrets Manager secret of the stack and the RDS-managed one."""
    labels = {s.state["arn"]: s.name for s in run.of_type("aws:secretsmanager/secret:Secret")}
    cluster = run.one("aws:rds/cluster:Cluster").state
    labels[cluster["masterUserSecrets"][0]["secretArn"]] = "database-master"
    return labels


def granted_readers(run: ProgramRun) -> dict[str, set[str]]:
    """Secret label -> the roles whose policies allow reading its value."""
    labels = secret_labels(run)
    roles = {r.id: r.name for r in run.of_type("aws:iam/role:Role")}
    readers: dict[str, set[str]] = {label: set() for label in labels.values()}
    for policy in run.of_type(ROLE_POLICY):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            if "secretsmanager:GetSecretValue" in statement["Action"]:
                for arn in statement["Resource"]:
                    readers[labels[arn]].add(roles[policy.inputs["role"]])
    return readers


def test_k3_g5_m8_m9_each_secret_is_granted_to_exactly_the_roles_that_use_it(stack_run):
    assert granted_readers(stack_run) == {
        "database-master": {"schema-role"},
        # The AUTH token: its users, and its rotation function (issue 14, item 7).
        "cache-auth-secret": {"worker-task-role", "api-role", "cache-rotation-role"},
        # The API key: its rotation function (issue 14, item 7); clients use credentials of
        # their own.
        "api-key-secret": {"api-key-rotation-role"},
        # The content key: the workers encrypt titles with it, key delivery derives their keys.
        "worker-content-key": {"worker-task-role", "delivery-role"},
        # The playback signing key: only the API signs grants.
        "delivery-signing-secret": {"api-role"},
    }


def test_k3_m8_secret_policies_deny_every_other_reader(stack_run):
    """The content and signing keys' own policies name their readers (and the deployer, for
    refresh): even the account's administrators cannot read them otherwise."""
    role_arn = {r.name: r.state["arn"] for r in stack_run.of_type("aws:iam/role:Role")}
    deployer = f"arn:aws:iam::{ACCOUNT_ID}:role/deployer"
    policies = {
        p.name: json.loads(p.inputs["policy"])["Statement"]
        for p in stack_run.of_type("aws:secretsmanager/secretPolicy:SecretPolicy")
    }
    readers = {
        name: statements[0]["Condition"]["StringNotEquals"]["aws:PrincipalArn"]
        for name, statements in policies.items()
    }
    assert readers == {
        "worker-content-key-policy": [
            role_arn["worker-task-role"],
            role_arn["delivery-role"],
            deployer,
        ],
        "delivery-signing-secret-policy": [role_arn["api-role"], deployer],
    }
    assert {(s["Effect"], s["Action"]) for statements in policies.values() for s in statements} == {
        ("Deny", "secretsmanager:GetSecretValue")
    }


# --- nothing depends on the account (G1) ------------------------------------------------------

OTHER_ACCOUNT = "210987654321"


@pytest.fixture(scope="module")
def other_account_run() -> ProgramRun:
    return run_stack("prod", account_id=OTHER_ACCOUNT)


def test_g1_no_account_id_is_written_into_the_program(other_account_run):
    run = other_account_run
    assert ACCOUNT_ID not in repr([r.inputs for r in run.resources])
    assert ACCOUNT_ID not in repr(run.outputs)
    assert run.warnings == []


def test_g1_the_deploying_account_reaches_account_scoped_names_and_policies(other_account_run):
    run = other_account_run
    assert run.outputs["auditBucketName"] == f"media-trail-{OTHER_ACCOUNT}-prod"
    assert run.outputs["alarmTopicArn"] == (
        f"arn:aws:sns:eu-central-1:{OTHER_ACCOUNT}:media-alarms-prod"
    )
    root = json.loads(run.one("aws:kms/key:Key", "keys-database-key").inputs["policy"])
    assert root["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}
