"""`make diagram` (offline/diagram.py): the architecture drawn from the dev plan with Graphviz.
The committed docs/architecture.dot must equal a fresh render, and docs/architecture.svg must
hold the same nodes and edges (it is rendered from that DOT by `make diagram`)."""

from __future__ import annotations

import html
import re

import pytest

from offline.diagram import DOT_PATH, SVG_PATH, build

EDGE = re.compile(r'^\t"?([\w-]+)"? -> "?([\w-]+)"? \[label="?([^"\]]+?)"? style=', re.M)


@pytest.fixture(scope="module")
def dev_dot(dev_run) -> str:
    return build(dev_run).source


def edges_of(source: str) -> dict[tuple[str, str], str]:
    return {(a, b): label for a, b, label in EDGE.findall(source)}


def test_committed_diagram_is_the_dev_plan_rendered_afresh(dev_dot):
    assert DOT_PATH.read_text() == dev_dot, "docs/architecture.dot is stale: run `make diagram`"


def test_committed_svg_shows_the_committed_dot():
    """Graphviz writes each node and edge's name as an SVG <title>."""
    svg = SVG_PATH.read_text()
    titles = {html.unescape(title) for title in re.findall(r"<title>(.*?)</title>", svg)}
    dot = DOT_PATH.read_text()
    nodes = set(re.findall(r'^\t\t"?([\w-]+)"? \[label=', dot, re.M)) | {"clients"}
    assert nodes <= titles
    assert {f"{a}->{b}" for a, b in edges_of(dot)} <= titles


def test_edges_come_from_grants_security_groups_and_references_m1_d3(dev_dot):
    edges = edges_of(dev_dot)
    # IAM: the worker's task role may consume the job queue and write renditions.
    assert edges[("worker-service", "jobs-queue")] == "IAM"
    assert edges[("worker-service", "media-media")] == "IAM"
    # IAM authentication and the security-group path to Aurora's port.
    assert edges[("api-function", "database-cluster")] == "IAM, tcp/5432"
    # A network path without a grant is dashed.
    assert edges[("worker-service", "cache-group")] == "tcp/6379"
    assert '"worker-service" -> "cache-group" [label="tcp/6379" style=dashed]' in dev_dot
    # References: the API integration's function and the web ACL's association.
    assert edges[("api-rest-api", "api-function")] == "uses"
    assert edges[("api-waf", "api-rest-api")] == "uses"
    assert edges[("clients", "api-rest-api")] == "HTTPS"


def test_nodes_are_grouped_by_top_level_component(dev_dot):
    database = dev_dot.split("subgraph cluster_database {", 1)[1].split("}", 1)[0]
    assert '"database-cluster" [label="Aurora PostgreSQL (Serverless v2)\nmedia-aurora-dev"]' in (
        database
    )
    worker = dev_dot.split("subgraph cluster_worker {", 1)[1].split("}", 1)[0]
    assert '"worker-service" [label="ECS Fargate service\nmedia-worker-dev"]' in worker
