"""`make cost` (offline/cost.py): the idle monthly baseline of a stack, read from the offline
plan's resolved inputs and priced from offline/prices.json at 730 h/month. Whatever the table
cannot price fails loudly (exit 3), never as $0."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

import offline.cost
from offline.cost import (
    PRICES_PATH,
    Estimate,
    PriceTable,
    capacity_split,
    estimate,
    exit_code,
    render,
)
from offline.engine import ProgramRun, Registered, run_stack

HOURS = 730
EU = "eu-central-1"
TABLE = json.loads(PRICES_PATH.read_text())


def figure(key: str, region: str = EU, node_type: str | None = None) -> float:
    return PriceTable(TABLE, region).price(key, node_type).usd


def lines_of(result: Estimate, type_token: str):
    return [line for line in result.lines if line.type == type_token]


@pytest.fixture(scope="module")
def dev_cost(dev_run) -> Estimate:
    return estimate(dev_run, PriceTable(TABLE, dev_run.region))


@pytest.fixture(scope="module")
def prod_cost(prod_run) -> Estimate:
    return estimate(prod_run, PriceTable(TABLE, prod_run.region))


@pytest.fixture(scope="module")
def changed_dev() -> tuple[ProgramRun, Estimate]:
    """dev with a 1-ACU floor and a NAT gateway per AZ: the settings the estimate must follow."""
    run = run_stack("dev", {"dbMinCapacity": "1", "natStrategy": "ONE_PER_AZ"})
    return run, estimate(run, PriceTable(TABLE, run.region))


# -- the price table ------------------------------------------------------------------------


def test_price_table_covers_the_four_regions_and_cites_each_figure():
    assert TABLE["hours_per_month"] == HOURS
    assert TABLE["regions"] == ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"]
    for key, entry in TABLE["prices"].items():
        assert entry["source"].startswith("https://aws.amazon.com/"), key
        assert entry["usage_type"], key
        for regions in entry.get("node_types", {"": entry.get("regions")}).values():
            assert set(regions) in ({"all"}, set(TABLE["regions"])), key
            for region, figure_ in regions.items():
                # A figure says where it was seen; a missing one says so instead of a number.
                assert figure_.get("seen") if figure_["usd"] is not None else figure_["note"], (
                    key,
                    region,
                )


def test_missing_region_takes_the_highest_known_figure_and_is_marked():
    document = {
        "hours_per_month": HOURS,
        "compiled": "2026-12-07",
        "prices": {
            "x": {
                "unit": "u",
                "regions": {"a": {"usd": 0.1}, "b": {"usd": 0.3}, "c": {"usd": None}},
            },
            "y": {"unit": "u", "regions": {"a": {"usd": None}, "c": {"usd": None}}},
        },
    }
    assert PriceTable(document, "a").price("x").usd == 0.1
    assert not PriceTable(document, "a").price("x").borrowed
    borrowed = PriceTable(document, "c").price("x")
    assert (borrowed.usd, borrowed.borrowed) == (0.3, True)
    assert PriceTable(document, "c").price("y") is None


# -- figures of the dev and prod plans --------------------------------------------------------


def test_nat_gateways_cost_count_x_hourly_x_730_n2(dev_cost, prod_cost, dev_run, prod_run):
    for result, run in ((dev_cost, dev_run), (prod_cost, prod_run)):
        nat = lines_of(result, "aws:ec2/natGateway:NatGateway")
        assert len(nat) == len(run.of_type("aws:ec2/natGateway:NatGateway"))
        assert sum(line.monthly for line in nat) == pytest.approx(len(nat) * 0.052 * HOURS)
    assert len(lines_of(prod_cost, "aws:ec2/natGateway:NatGateway")) == 3
    # Every NAT gateway's Elastic IP is a public IPv4 address at $0.005/h.
    eips = lines_of(prod_cost, "aws:ec2/eip:Eip")
    assert sum(line.monthly for line in eips) == pytest.approx(3 * 0.005 * HOURS)


def test_interface_endpoints_cost_per_az_gateway_endpoint_free_n6(prod_cost, prod_run):
    endpoints = lines_of(prod_cost, "aws:ec2/vpcEndpoint:VpcEndpoint")
    interface = [
        r
        for r in prod_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if r.inputs["vpcEndpointType"] == "Interface"
    ]
    # Nine for the workloads' AWS APIs, ElastiCache's (the token rotation) and API Gateway's
    # management API (the API key rotation).
    assert len(endpoints) == len(interface) == 10
    for line in endpoints:
        assert line.monthly == pytest.approx(3 * 0.012 * HOURS)
        assert "in 3 AZ" in line.what
    assert not any("s3" in line.what for line in endpoints)


def test_aurora_min_acu_x_instances_d1(prod_cost, prod_run):
    instances = lines_of(prod_cost, "aws:rds/clusterInstance:ClusterInstance")
    assert len(instances) == len(prod_run.of_type("aws:rds/clusterInstance:ClusterInstance")) == 3
    acu = figure("aurora_acu_hour")
    for line in instances:
        assert line.what == "2 ACU minimum (db.serverless) x 730 h"
        assert line.monthly == pytest.approx(2 * acu * HOURS)
        # No eu-central-1 ACU figure in the table: the highest known one, marked.
        assert line.marks == "~"
    assert acu == max(
        f["usd"] for f in TABLE["prices"]["aurora_acu_hour"]["regions"].values() if f["usd"]
    )


def test_a_change_in_settings_moves_the_figure_d1_n2(changed_dev, dev_cost):
    _, changed = changed_dev
    acu = figure("aurora_acu_hour")
    aurora = lines_of(changed, "aws:rds/clusterInstance:ClusterInstance")
    assert [line.monthly for line in aurora] == pytest.approx([acu * HOURS] * 2)
    assert len(lines_of(changed, "aws:ec2/natGateway:NatGateway")) == 2
    assert len(lines_of(dev_cost, "aws:ec2/natGateway:NatGateway")) == 1
    assert changed.by_tier()["network"] == pytest.approx(
        dev_cost.by_tier()["network"] + (0.052 + 0.005) * HOURS
    )


def test_aurora_scaled_to_zero_costs_no_idle_compute_d1(dev_run, dev_cost):
    scaling = dev_run.one("aws:rds/cluster:Cluster").inputs["serverlessv2ScalingConfiguration"]
    aurora = lines_of(dev_cost, "aws:rds/clusterInstance:ClusterInstance")
    if scaling["minCapacity"] == 0:
        assert all(line.monthly == 0 and "pauses after" in line.what for line in aurora)
    else:
        minimum = scaling["minCapacity"]
        assert all(line.monthly == pytest.approx(minimum * 0.14 * HOURS) for line in aurora)


def test_worker_minimum_tasks_split_by_base_and_weights_w2(dev_cost, prod_cost):
    # dev scales to zero (workerMinTasks 0): no idle task-hours at all.
    assert lines_of(dev_cost, "aws:ecs/service:Service") == []
    # prod: 3 minimum tasks, all in the on-demand base of 3; 200 GiB scratch is 180 beyond 20.
    prod = {line.what: line for line in lines_of(prod_cost, "aws:ecs/service:Service")}
    assert prod["3 task(s) x (4 vCPU, 8 GB, x86) on FARGATE x 730 h"].monthly == pytest.approx(
        3 * (4 * 0.04656 + 8 * 0.00511) * HOURS
    )
    storage = prod["3 task(s) x 180 GiB ephemeral storage beyond 20 x 730 h"]
    assert storage.monthly == pytest.approx(3 * 180 * figure("fargate_ephemeral_gb_hour") * HOURS)


def test_capacity_split_places_base_first_then_by_weight_w2():
    strategy = [
        {"capacityProvider": "FARGATE", "base": 3, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
    ]
    assert capacity_split(3, strategy) == {"FARGATE": 3, "FARGATE_SPOT": 0}
    assert capacity_split(7, strategy) == {"FARGATE": 4, "FARGATE_SPOT": 3}
    assert capacity_split(2, []) == {"FARGATE": 2}


def test_cache_nodes_valkey_20_percent_below_redis_c1(prod_cost, dev_cost):
    (prod,) = lines_of(prod_cost, "aws:elasticache/replicationGroup:ReplicationGroup")
    assert prod.what == "3 x cache.r7g.large node (valkey) x 730 h"
    assert prod.monthly == pytest.approx(3 * 0.263 * 0.8 * HOURS)
    (dev,) = lines_of(dev_cost, "aws:elasticache/replicationGroup:ReplicationGroup")
    assert dev.what == "2 x cache.t4g.micro node (valkey) x 730 h"
    assert dev.monthly == pytest.approx(2 * 0.025 * 0.8 * HOURS)


def test_kinesis_mode_and_shards_s1(dev_cost, prod_cost):
    (dev,) = lines_of(dev_cost, "aws:kinesis/stream:Stream")
    assert dev.what == "1 provisioned shard(s) x 730 h"
    assert dev.monthly == pytest.approx(0.015 * HOURS)
    (prod,) = lines_of(prod_cost, "aws:kinesis/stream:Stream")
    assert prod.what == "on-demand stream x 730 h"
    assert prod.monthly == pytest.approx(0.04 * HOURS)


def test_keys_secrets_alarms_dashboard_and_web_acl_k1_a6(prod_cost, prod_run):
    def total(type_token: str) -> float:
        return sum(line.monthly for line in lines_of(prod_cost, type_token))

    assert total("aws:kms/key:Key") == len(prod_run.of_type("aws:kms/key:Key")) * 1.0
    assert total("aws:secretsmanager/secret:Secret") == pytest.approx(
        0.4 * len(prod_run.of_type("aws:secretsmanager/secret:Secret"))
    )
    # The cluster's RDS-managed master secret is a secret too.
    (managed,) = lines_of(prod_cost, "aws:rds/cluster:Cluster")
    assert managed.monthly == 0.4
    alarms = prod_run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert total("aws:cloudwatch/metricAlarm:MetricAlarm") == pytest.approx(0.1 * len(alarms))
    assert total("aws:cloudwatch/dashboard:Dashboard") == 3.0
    acls = prod_run.of_type("aws:wafv2/webAcl:WebAcl")
    assert total("aws:wafv2/webAcl:WebAcl") == sum(5.0 + len(a.inputs["rules"]) for a in acls)
    (api_acl,) = [line for line in prod_cost.lines if line.resource == "api-waf"]
    assert api_acl.what == "web ACL (REGIONAL) with 3 rule(s)"
    assert api_acl.monthly == 8.0


def test_totals_are_the_sum_of_the_tiers(dev_cost, prod_cost):
    for result in (dev_cost, prod_cost):
        assert result.total == pytest.approx(sum(result.by_tier().values()))
        assert result.complete
        assert exit_code(result, None) == 0


def test_every_resource_type_of_both_stacks_is_classified(dev_cost, prod_cost):
    """A new resource type (the delivery tier's, say) must be priced or named as usage-based or
    free in offline/cost.py before `make cost` passes."""
    assert [r.type for r in dev_cost.unknown + prod_cost.unknown] == []


# -- what cannot be priced fails loudly ----------------------------------------------------


def _registered(type_token: str, name: str, inputs: dict) -> Registered:
    urn = f"urn:pulumi:test::media-pipeline::{type_token}::{name}"
    return Registered(urn, f"{name}-id", type_token, name, "", True, inputs, dict(inputs))


def _run(*resources: Registered) -> ProgramRun:
    return ProgramRun("test", EU, {}, list(resources), {}, set())


def test_unknown_resource_type_fails_loudly_not_as_zero():
    zone = _registered("aws:route53/zone:Zone", "zone", {"name": "example.com"})
    result = estimate(_run(zone), PriceTable(TABLE, EU))
    assert result.unknown == [zone]
    assert exit_code(result, max_monthly=1000) == 3
    text = "\n".join(render(result))
    assert "NOT COMPLETE: 1 resource(s) of types offline/cost.py does not classify" in text
    assert "zone  aws:route53/zone:Zone" in text


def test_node_type_without_a_price_is_listed_not_priced_c1():
    group = _registered(
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "cache",
        {"nodeType": "cache.m7g.large", "numCacheClusters": 2, "engine": "valkey"},
    )
    result = estimate(_run(group), PriceTable(TABLE, EU))
    (line,) = result.lines
    assert line.monthly is None
    assert "cache.m7g.large" in line.what
    assert exit_code(result, None) == 3
    assert "NOT PRICED" in "\n".join(render(result))


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def cost_main(monkeypatch, dev_run):
    monkeypatch.setattr(offline.cost, "run_stack", lambda stack, overrides=None: dev_run)
    return offline.cost.main


def _main(cost_main, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cost_main(argv)
    return code, out.getvalue()


def test_cost_command_prints_tiers_total_and_usage_parts(cost_main, dev_cost):
    code, text = _main(cost_main, ["dev"])
    assert code == 0
    assert text.startswith("Idle monthly baseline of stack dev in eu-central-1 (offline plan; 730")
    assert f"Total idle baseline: ${dev_cost.total:,.2f} / month" in text
    network = f"${dev_cost.by_tier()['network']:,.2f}"
    assert any(line.split() == ["network", "total", network] for line in text.splitlines()), network
    assert "Usage-based (not in the total; what moves them):" in text
    assert "GB ingested and GB-month stored until retention" in text


def test_max_monthly_exits_1_above_and_0_below(cost_main, dev_cost):
    code, text = _main(cost_main, ["dev", "--max-monthly", str(dev_cost.total - 1)])
    assert code == 1
    assert "ABOVE BUDGET" in text
    code, _ = _main(cost_main, ["dev", "--max-monthly", str(dev_cost.total + 1)])
    assert code == 0
