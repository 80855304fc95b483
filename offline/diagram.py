"""The architecture drawn from the offline plan with Graphviz: docs/architecture.dot and .svg.

    python -m offline.diagram [STACK] [--check]

The same `run_stack` as `make plan` evaluates the real `__main__.py`; the picture holds the
resources a reader thinks in (network edges, compute, data stores, queues, APIs, delivery,
audit), grouped by the top-level component that created them. Edges come from the plan too:
  - "IAM": a compute resource's role (Lambda `role`, the worker's task and execution roles,
    the pipe's `roleArn`) has a role policy naming the other resource's ARN;
  - "tcp/<port>": a security-group ingress rule lets one resource's group reach another's;
  - "uses": a resource's inputs name another's ARN or id (the pipe's queues, the trail's
    bucket, an API integration's function, the web ACL's association with the API, an origin).
The DOT source is deterministic (sorted; names and ids from the mocks), so a test compares the
committed file with a fresh render. The SVG needs Graphviz's `dot` (Debian package `graphviz`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import graphviz

from offline.engine import ProgramRun, Registered, run_stack
from offline.plan import NAME_KEYS

ROOT = Path(__file__).resolve().parent.parent
DOT_PATH = ROOT / "docs" / "architecture.dot"
SVG_PATH = ROOT / "docs" / "architecture.svg"

# The resources drawn, with what a reader calls them.
KINDS: dict[str, str] = {
    "aws:ec2/vpc:Vpc": "VPC",
    "aws:ec2/internetGateway:InternetGateway": "Internet gateway",
    "aws:ec2/natGateway:NatGateway": "NAT gateway",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "VPC endpoint",
    "aws:rds/cluster:Cluster": "Aurora PostgreSQL (Serverless v2)",
    "aws:elasticache/replicationGroup:ReplicationGroup": "ElastiCache",
    "aws:efs/fileSystem:FileSystem": "EFS file system",
    "aws:s3/bucket:Bucket": "S3 bucket",
    "aws:sqs/queue:Queue": "SQS queue",
    "aws:pipes/pipe:Pipe": "EventBridge Pipe",
    "aws:sns/topic:Topic": "SNS topic",
    "aws:kinesis/stream:Stream": "Kinesis stream",
    "aws:ecs/service:Service": "ECS Fargate service",
    "aws:ecr/repository:Repository": "ECR repository",
    "aws:lambda/function:Function": "Lambda function",
    "aws:apigateway/restApi:RestApi": "API Gateway REST API",
    "aws:wafv2/webAcl:WebAcl": "WAF web ACL",
    "aws:cloudfront/distribution:Distribution": "CloudFront distribution",
    "aws:secretsmanager/secret:Secret": "Secrets Manager secret",
    "aws:cloudtrail/trail:Trail": "CloudTrail trail",
    "aws:cloudwatch/dashboard:Dashboard": "CloudWatch dashboard",
}
# Resources that stand for a drawn one: a stage is its API, a task definition its service.
STAND_INS = {
    "aws:apigateway/stage:Stage": ("restApi", "aws:apigateway/restApi:RestApi"),
    "aws:lambda/functionUrl:FunctionUrl": ("functionName", "aws:lambda/function:Function"),
}
# Link resources whose two inputs name the two ends of an edge.
LINKS = {
    "aws:wafv2/webAclAssociation:WebAclAssociation": ("webAclArn", "resourceArn"),
    "aws:apigateway/integration:Integration": ("restApi", "uri"),
    "aws:lambda/eventSourceMapping:EventSourceMapping": ("eventSourceArn", "functionName"),
}
EXTERNAL = "clients"


def tier_of(run: ProgramRun) -> dict[str, str]:
    by_urn = {resource.urn: resource for resource in run.resources}
    tiers = {}
    for resource in run.resources:
        top = resource
        while top.parent_urn in by_urn:
            top = by_urn[top.parent_urn]
        tiers[resource.urn] = top.name
    return tiers


def physical_name(resource: Registered) -> str:
    name = next((resource.inputs[k] for k in NAME_KEYS if resource.inputs.get(k)), "")
    if not name and resource.type == "aws:ec2/vpcEndpoint:VpcEndpoint":
        name = str(resource.inputs.get("serviceName", "")).split(".", 3)[-1]
    return str(name)


# Ids distinctive enough to find in another resource's inputs; other ids are plain names
# (an ECS service's id is its name, which its ECR repository may share).
DISTINCT_ID_PREFIXES = ("vpc-", "subnet-", "sg-", "fs-", "nat-", "igw-", "vpce-", "https://")
ID_IS_DISTINCT = {"aws:s3/bucket:Bucket", "aws:apigateway/restApi:RestApi"}


def identities(resource: Registered) -> set[str]:
    """Strings by which other resources' inputs name this one: its ARN, the Aurora cluster's
    resource id (IAM authentication), and ids that are not plain names."""
    # A function URL is named by its host (a CloudFront origin's domainName).
    url_host = str(resource.state.get("functionUrl") or "").removeprefix("https://").strip("/")
    values = {resource.state.get("arn"), resource.state.get("clusterResourceId"), url_host}
    if resource.type in ID_IS_DISTINCT or str(resource.id).startswith(DISTINCT_ID_PREFIXES):
        values.add(resource.id)
    return {str(v) for v in values if v and len(str(v)) >= 8}


class Graph:
    """The drawn nodes, the strings that name each, and the edges found between them."""

    def __init__(self, run: ProgramRun):
        self.run = run
        self.nodes = sorted(
            (r for r in run.resources if r.type in KINDS), key=lambda r: (r.type, r.name)
        )
        self.owner: dict[str, str] = {}
        for node in self.nodes:
            for text in identities(node):
                self.owner[text] = node.name
        self._add_stand_ins()
        self.edges: dict[tuple[str, str], set[str]] = defaultdict(set)

    def _add_stand_ins(self) -> None:
        for type_token, (field, target_type) in STAND_INS.items():
            for stand_in in self.run.of_type(type_token):
                for target in self.run.of_type(target_type):
                    if target.id == str(stand_in.inputs.get(field)):
                        for text in identities(stand_in):
                            self.owner[text] = target.name

    def named_in(self, value: object) -> set[str]:
        """Drawn nodes whose ARN or id occurs in `value` (any nesting)."""
        text = json.dumps(value, sort_keys=True, default=str)
        return {owner for ident, owner in self.owner.items() if ident in text}

    def add(self, source: str, target: str, kind: str) -> None:
        if source != target:
            self.edges[(source, target)].add(kind)


def add_reference_edges(graph: Graph) -> None:
    for node in graph.nodes:
        for target in graph.named_in(node.inputs):
            graph.add(node.name, target, "uses")
    for type_token, (from_key, to_key) in LINKS.items():
        for link in graph.run.of_type(type_token):
            for source in graph.named_in(link.inputs.get(from_key)):
                for target in graph.named_in(link.inputs.get(to_key)):
                    graph.add(source, target, "uses")


def compute_roles(graph: Graph) -> dict[str, set[str]]:
    """Drawn compute resource -> ARNs of the roles it runs as."""
    tasks = {
        t.state.get("arn"): t for t in graph.run.of_type("aws:ecs/taskDefinition:TaskDefinition")
    }
    roles: dict[str, set[str]] = defaultdict(set)
    for node in graph.nodes:
        inputs = node.inputs
        if node.type == "aws:ecs/service:Service" and inputs.get("taskDefinition") in tasks:
            task = tasks[inputs["taskDefinition"]].inputs
            roles[node.name] |= {task.get("taskRoleArn"), task.get("executionRoleArn")}
        roles[node.name] |= {inputs.get("role"), inputs.get("roleArn")}
        roles[node.name].discard(None)
    return roles


def add_iam_edges(graph: Graph) -> None:
    role_names = {
        role.state.get("arn"): {role.id, role.inputs.get("name")}
        for role in graph.run.of_type("aws:iam/role:Role")
    }
    policies = graph.run.of_type("aws:iam/rolePolicy:RolePolicy")
    for compute, arns in compute_roles(graph).items():
        names = set().union(*(role_names.get(arn, set()) for arn in arns)) - {None}
        for policy in policies:
            if policy.inputs.get("role") in names:
                for target in graph.named_in(policy.inputs.get("policy")):
                    graph.add(compute, target, "IAM")


def add_network_edges(graph: Graph) -> None:
    group_owner: dict[str, str] = {}
    for resource in graph.run.resources:
        if resource.type in KINDS or resource.type == "aws:efs/mountTarget:MountTarget":
            owners = graph.named_in(resource.inputs.get("fileSystemId")) or {resource.name}
            for group in graph.run.of_type("aws:ec2/securityGroup:SecurityGroup"):
                if group.id in json.dumps(resource.inputs, default=str):
                    group_owner.setdefault(group.id, sorted(owners)[0])
    for rule in graph.run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        source = group_owner.get(str(rule.inputs.get("referencedSecurityGroupId")))
        target = group_owner.get(str(rule.inputs.get("securityGroupId")))
        if source and target:
            graph.add(source, target, f"tcp/{int(rule.inputs.get('fromPort', 0))}")


def build(run: ProgramRun) -> graphviz.Digraph:
    graph = Graph(run)
    add_reference_edges(graph)
    add_iam_edges(graph)
    add_network_edges(graph)
    for node in graph.nodes:
        if node.type in (
            "aws:apigateway/restApi:RestApi",
            "aws:cloudfront/distribution:Distribution",
        ):
            graph.add(EXTERNAL, node.name, "HTTPS")
    return render(run, graph)


def render(run: ProgramRun, graph: Graph) -> graphviz.Digraph:
    dot = graphviz.Digraph(
        name=f"{run.stack}",
        comment=f"Architecture of stack {run.stack} ({run.region}) from the offline plan "
        "(python -m offline.diagram); do not edit by hand",
        graph_attr={
            "rankdir": "LR",
            "fontname": "Helvetica",
            "fontsize": "11",
            "compound": "true",
            "nodesep": "0.25",
            "ranksep": "0.9",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": "#f5f5f5",
            "fontname": "Helvetica",
            "fontsize": "10",
        },
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "color": "#555555"},
    )
    dot.node(EXTERNAL, "API clients and viewers", shape="ellipse", fillcolor="#ffffff")
    tiers = tier_of(run)
    by_tier: dict[str, list[Registered]] = defaultdict(list)
    for node in graph.nodes:
        by_tier[tiers[node.urn]].append(node)
    for tier in sorted(by_tier):
        with dot.subgraph(name=f"cluster_{tier}") as cluster:
            cluster.attr(label=tier, style="rounded", color="#999999")
            for node in sorted(by_tier[tier], key=lambda r: r.name):
                cluster.node(node.name, f"{KINDS[node.type]}\n{physical_name(node)}")
    for (source, target), kinds in sorted(graph.edges.items()):
        # "uses" says least: it shows only where no grant or network path explains the edge.
        shown = sorted(kinds - {"uses"}) or ["uses"]
        dot.edge(source, target, label=", ".join(shown), style=_style(shown))
    return dot


def _style(kinds: Iterable[str]) -> str:
    return "dashed" if all(kind.startswith("tcp/") for kind in kinds) else "solid"


def write(dot: graphviz.Digraph) -> list[Path]:
    DOT_PATH.write_text(dot.source)
    written = [DOT_PATH]
    if shutil.which("dot"):
        SVG_PATH.write_bytes(dot.pipe(format="svg"))
        written.append(SVG_PATH)
    else:
        print("warning: Graphviz `dot` not found (apt-get install graphviz): SVG not updated")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/ is not current")
    args = parser.parse_args(argv)
    dot = build(run_stack(args.stack))
    if args.check:
        current = DOT_PATH.exists() and DOT_PATH.read_text() == dot.source
        print(
            "docs/architecture.dot is current"
            if current
            else "docs/architecture.dot is stale: make diagram"
        )
        return 0 if current else 1
    for path in write(dot):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
