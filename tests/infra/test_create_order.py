"""Create order that holds by construction, not by timing (issue 14, item 4).

The needs are derived from the resources themselves, for every stack: whatever starts work
in subnets during the deployment (an ECS service starting its tasks, the invocation of a VPC
Lambda function, an EFS mount target) waits for the routes of those subnets, their network
ACL rules, the endpoints serving them and every security-group rule that lets its groups out
or into their peers; an API method waits for the request models it names. "Waits" means a path in the dependency graph the engine is
given (`depends_on` and input references, a component standing for all its children).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

import pytest

from offline.engine import ProgramRun

FUNCTION = "aws:lambda/function:Function"
SERVICE = "aws:ecs/service:Service"
MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"
ROUTE = "aws:ec2/route:Route"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
NACL = "aws:ec2/networkAcl:NetworkAcl"
NACL_RULE = "aws:ec2/networkAclRule:NetworkAclRule"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
METHOD = "aws:apigateway/method:Method"
INVOCATION = "aws:lambda/invocation:Invocation"
MODEL = "aws:apigateway/model:Model"


class Graph:
    """The dependency graph of one run, transitively closed."""

    def __init__(self, run: ProgramRun):
        self.by_urn = {r.urn: r for r in run.resources}
        self.children: dict[str, list[str]] = defaultdict(list)
        for resource in run.resources:
            self.children[resource.parent_urn].append(resource.urn)

    def descendants(self, urn: str) -> set[str]:
        found = set()
        for child in self.children.get(urn, ()):
            found |= {child} | self.descendants(child)
        return found

    def waits_for(self, urn: str) -> set[str]:
        @cache
        def closure(node: str) -> frozenset[str]:
            direct = set()
            for dependency in self.by_urn[node].dependencies:
                direct.add(dependency)
                if not self.by_urn[dependency].custom:
                    direct |= self.descendants(dependency)
            reached = set(direct)
            for dependency in direct:
                if self.by_urn[dependency].custom:
                    reached |= closure(dependency)
            return frozenset(reached)

        return set(closure(urn))


def placements(run: ProgramRun) -> list[tuple[str, str, set[str], set[str]]]:
    """(urn, logical name, subnet ids, security group ids) of every subnet-placed workload."""
    placed = []
    functions = {f.inputs["name"]: f for f in run.of_type(FUNCTION)}
    for invocation in run.of_type(INVOCATION):
        vpc = functions[invocation.inputs["functionName"]].inputs["vpcConfig"]
        placed.append(
            (invocation.urn, invocation.name, set(vpc["subnetIds"]), set(vpc["securityGroupIds"]))
        )
    for service in run.of_type(SERVICE):
        network = service.inputs["networkConfiguration"]
        placed.append(
            (service.urn, service.name, set(network["subnets"]), set(network["securityGroups"]))
        )
    for target in run.of_type(MOUNT_TARGET):
        placed.append(
            (
                target.urn,
                target.name,
                {target.inputs["subnetId"]},
                set(target.inputs["securityGroups"]),
            )
        )
    return placed


def needs(run: ProgramRun, subnets: set[str], groups: set[str]) -> set[str]:
    """Everything a workload in `subnets` with `groups` uses from its first second."""
    tables = {
        a.inputs["routeTableId"]
        for a in run.of_type(ASSOCIATION)
        if a.inputs.get("subnetId") in subnets
    }
    acls = {n.id for n in run.of_type(NACL) if subnets & set(n.inputs.get("subnetIds", []))}
    return (
        {r.urn for r in run.of_type(ROUTE) if r.inputs["routeTableId"] in tables}
        | {a.urn for a in run.of_type(ASSOCIATION) if a.inputs.get("subnetId") in subnets}
        | {r.urn for r in run.of_type(NACL_RULE) if r.inputs["networkAclId"] in acls}
        | {
            e.urn
            for e in run.of_type(ENDPOINT)
            if subnets & set(e.inputs.get("subnetIds") or [])
            or tables & set(e.inputs.get("routeTableIds") or [])
        }
        | {r.urn for r in run.of_type(EGRESS) if r.inputs["securityGroupId"] in groups}
        | {
            r.urn
            for r in run.of_type(INGRESS)
            if r.inputs.get("referencedSecurityGroupId") in groups
        }
    )


@pytest.fixture(params=["dev", "prod"])
def run(request, dev_run, prod_run) -> ProgramRun:
    return {"dev": dev_run, "prod": prod_run}[request.param]


def test_every_placed_workload_waits_for_its_routes_acls_endpoints_and_rules(run):
    graph = Graph(run)
    placed = placements(run)
    assert len(placed) >= 4
    missing = {}
    for urn, name, subnets, groups in placed:
        lacking = needs(run, subnets, groups) - graph.waits_for(urn)
        if lacking:
            missing[name] = sorted(graph.by_urn[u].name for u in lacking)
    assert missing == {}


def test_every_method_waits_for_the_request_models_it_names(run):
    graph = Graph(run)
    models = {(m.inputs["restApi"], m.inputs["name"]): m.urn for m in run.of_type(MODEL)}
    named = [m for m in run.of_type(METHOD) if m.inputs.get("requestModels")]
    assert len(named) >= 2
    for method in named:
        wanted = {
            models[(method.inputs["restApi"], n)] for n in method.inputs["requestModels"].values()
        }
        assert wanted <= graph.waits_for(method.urn), method.name


def test_the_migration_runs_only_once_its_function_can_reach_everything(run):
    """The invocation waits for the function, and through it for the function's needs."""
    graph = Graph(run)
    invocation = run.one("aws:lambda/invocation:Invocation", "schema-run")
    function = next(f for f in run.of_type(FUNCTION) if f.name == "schema-function")
    assert function.urn in graph.waits_for(invocation.urn)
