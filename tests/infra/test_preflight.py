"""`make preflight` (offline/preflight.py): read-only checks of an account before `pulumi up`,
against moto's AWS (and botocore's Stubber for the two calls moto does not answer:
lambda GetAccountSettings and db.serverless orderable options). One line per check, a clear
exit code, and without credentials one FAIL line and exit 2, never a traceback. The worker's
base image (issue 14, item 1) is looked up through an injected resolver, as the Docker daemon
is; its registry client is tested over HTTP in tests/infra/test_worker_image.py."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from dataclasses import replace

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

import offline.preflight
from offline.engine import ROOT
from offline.preflight import (
    FAIL,
    PASS,
    WARN,
    StackNeeds,
    check_base_image,
    client_factory,
    needs_from_plan,
    run_checks,
)
from scripts.refresh_base_image import PinStatus, RegistryError, read_pin

REGION = "eu-central-1"


@pytest.fixture(scope="module")
def dev_needs(dev_run) -> StackNeeds:
    return needs_from_plan(dev_run)


@pytest.fixture(scope="module")
def prod_needs(prod_run) -> StackNeeds:
    return needs_from_plan(prod_run)


@pytest.fixture
def no_ambient_credentials(monkeypatch, tmp_path):
    """No credentials from the environment, files or the instance metadata service (which
    would also send a request off this machine)."""
    for name in list(__import__("os").environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws(no_ambient_credentials):
    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )


def account_settings(unreserved: int, total: int = 1000) -> dict:
    return {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": total,
            "UnreservedConcurrentExecutions": unreserved,
        },
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
    }


def serverless_options(*versions: str) -> dict:
    return {
        "OrderableDBInstanceOptions": [
            {"Engine": "aurora-postgresql", "EngineVersion": v, "DBInstanceClass": "db.serverless"}
            for v in versions
        ]
    }


def with_stubs(session, lambda_settings: dict | None = None, orderable: dict | None = None):
    """moto's clients, with Stubber answers for the calls moto does not implement."""
    base = client_factory(session, REGION)
    stubbed = {}
    if lambda_settings is not None:
        client = base("lambda")
        stubber = Stubber(client)
        stubber.add_response("get_account_settings", lambda_settings, {})
        stubber.activate()
        stubbed["lambda"] = client
    if orderable is not None:
        client = base("rds")
        stubber = Stubber(client)
        stubber.add_response(
            "describe_orderable_db_instance_options",
            orderable,
            {"Engine": "aurora-postgresql", "DBInstanceClass": "db.serverless"},
        )
        stubber.activate()
        stubbed["rds"] = client
    return lambda service: stubbed.get(service) or base(service)


def by_name(checks) -> dict:
    return {check.name.split(" (")[0]: check for check in checks}


def docker_ok() -> str:
    return "27.3.1"


def base_current(dockerfile) -> PinStatus:
    """The registry still points the pinned tag at the pinned digest."""
    pin = read_pin(dockerfile)
    return PinStatus(pin, tag_digest=pin.digest, pinned_resolves=True)


# -- what the plan needs ----------------------------------------------------------------------


def test_needs_come_from_the_plan_n2(dev_needs, prod_needs, dev_run, prod_run):
    assert (dev_needs.region, dev_needs.vpcs, dev_needs.elastic_ips) == (REGION, 1, 1)
    assert dev_needs.nat_gateways_per_az == {"eu-central-1a": 1}
    assert prod_needs.nat_gateways_per_az == {f"{REGION}{z}": 1 for z in "abc"}
    assert prod_needs.elastic_ips == 3
    # Every reservation the plan makes, the API's 50 in prod among them.
    for needs, run in ((dev_needs, dev_run), (prod_needs, prod_run)):
        functions = run.of_type("aws:lambda/function:Function")
        assert needs.reserved_concurrency == sum(
            int(f.inputs.get("reservedConcurrentExecutions") or 0) for f in functions
        )
    assert prod_needs.reserved_concurrency >= 50
    assert dev_needs.engine == "aurora-postgresql"
    assert dev_needs.engine_version == "16"
    assert dev_needs.sets_api_logging_role and dev_needs.builds_image
    assert dev_needs.dockerfile == prod_needs.dockerfile == "services/worker/Dockerfile"


# -- a healthy account ------------------------------------------------------------------------


def test_every_check_passes_on_a_fresh_account_but_prods_reading_of_the_logging_role(
    aws, prod_needs, dev_needs
):
    """Prod reads the account's API Gateway logging role that dev owns (issue 14 item 3): on
    a fresh account only that check fails, and dev's preflight passes it (dev sets it)."""
    client = with_stubs(aws, account_settings(1000), serverless_options("16.4", "16.9", "17.5"))
    checks, code = run_checks(prod_needs, client, docker_ok, base_current)
    assert [c.name for c in checks if c.status == FAIL] == ["api logging role"]
    assert code == 1
    lines = {check.name.split(" (")[0]: check.line() for check in checks}
    assert lines["credentials"].startswith("PASS  credentials")
    assert "(account 123456789012)" in lines["credentials"]
    assert lines["region"] == f"PASS  region                 {REGION} (opt-in-not-required)"
    assert (
        "aurora-postgresql 16 on db.serverless in eu-central-1: offered (newest 16.9)"
        in (lines["engine version"])
    )
    # moto's account has its default VPC.
    assert "1 in use + 1 planned of 5 (quota L-F678F1CE)" in lines["VPCs"]
    assert "0 in use + 3 planned of 5 (vpc-max-elastic-ips)" in lines["Elastic IPs"]
    assert "0 in use + 1 planned of 5 (quota L-FE5A380F)" in lines["NAT gateways"]
    reserved = prod_needs.reserved_concurrency
    assert (
        f"the stack reserves {reserved}, leaving {1000 - reserved}" in lines["lambda concurrency"]
    )
    assert (
        "stage logging would fail (set apiManageCloudwatchRole: true" in lines["api logging role"]
    )
    client = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    dev_role = by_name(run_checks(dev_needs, client, docker_ok, base_current)[0])[
        "api logging role"
    ]
    assert "the stack sets it (apiManageCloudwatchRole; none set yet)" in dev_role.detail
    assert (
        lines["docker"] == "PASS  docker                 daemon 27.3.1 for the worker image build"
    )
    pinned = read_pin(ROOT / "services/worker/Dockerfile").reference
    assert lines["base image"] == (
        f"PASS  base image             {pinned} resolves (the tag's current digest)"
    )


# -- each check's failure ----------------------------------------------------------------------


def test_quotas_the_stack_would_exceed_fail_n2(aws, dev_needs):
    ec2 = aws.client("ec2")
    for index in range(4):
        ec2.create_vpc(CidrBlock=f"10.{index + 1}.0.0/16")
    for _ in range(5):
        ec2.allocate_address(Domain="vpc")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock="172.31.200.0/24", AvailabilityZone=f"{REGION}a"
    )["Subnet"]["SubnetId"]
    for _ in range(5):
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)
    client = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    checks, code = run_checks(dev_needs, client, docker_ok, base_current)
    found = by_name(checks)
    assert code == 1
    assert found["VPCs"].status == FAIL
    assert found["VPCs"].detail == "5 in use + 1 planned of 5 (quota L-F678F1CE)"
    assert found["Elastic IPs"].status == FAIL
    assert found["Elastic IPs"].detail == "10 in use + 1 planned of 5 (vpc-max-elastic-ips)"
    assert found["NAT gateways"].line() == (
        f"FAIL  NAT gateways ({REGION}a) 5 in use + 1 planned of 5 (quota L-FE5A380F)"
    )
    assert found["region"].status == PASS


def test_reservation_above_unreserved_concurrency_fails(aws, prod_needs):
    # New accounts start with 10 concurrent executions: a 50 reservation cannot be made.
    client = with_stubs(aws, account_settings(10, total=10), serverless_options("16.9"))
    checks, code = run_checks(prod_needs, client, docker_ok, base_current)
    concurrency = by_name(checks)["lambda concurrency"]
    assert code == 1
    assert concurrency.status == FAIL
    reserved = prod_needs.reserved_concurrency
    assert concurrency.detail == (
        f"10 unreserved of 10; the stack reserves {reserved}, leaving {10 - reserved} "
        "(AWS keeps at least 100)"
    )


def test_engine_version_not_offered_fails(aws, dev_needs):
    # moto's orderable catalogue has no db.serverless options at all.
    client = with_stubs(aws, account_settings(1000))
    checks, _ = run_checks(dev_needs, client, docker_ok, base_current)
    engine = by_name(checks)["engine version"]
    assert engine.line() == (
        "FAIL  engine version         aurora-postgresql 16 on db.serverless in eu-central-1: "
        "not offered (set dbEngineVersion)"
    )


def test_pinned_engine_version_must_be_offered_exactly(aws, dev_needs):
    client = with_stubs(aws, account_settings(1000), serverless_options("16.4", "16.9"))
    checks, _ = run_checks(
        replace(dev_needs, engine_version="16.2"), client, docker_ok, base_current
    )
    assert by_name(checks)["engine version"].status == FAIL


def test_api_logging_role_missing_fails_unless_the_stack_sets_it(aws, dev_needs):
    needs = replace(dev_needs, sets_api_logging_role=False)
    client = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    role = by_name(run_checks(needs, client, docker_ok, base_current)[0])["api logging role"]
    assert role.status == FAIL
    assert "stage logging would fail (set apiManageCloudwatchRole: true" in role.detail
    arn = "arn:aws:iam::123456789012:role/apigw-logs"
    aws.client("apigateway").update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": arn}]
    )
    client = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    role = by_name(run_checks(needs, client, docker_ok, base_current)[0])["api logging role"]
    assert role.line() == f"PASS  api logging role       set for the account: {arn}"


def test_docker_missing_fails_the_image_build_check(aws, dev_needs):
    def no_docker() -> str:
        raise RuntimeError("docker is not installed")

    client = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    checks, code = run_checks(dev_needs, client, no_docker, base_current)
    assert code == 1
    assert by_name(checks)["docker"].line() == (
        "FAIL  docker                 the worker image build needs a Docker daemon: "
        "docker is not installed"
    )


def test_a_refused_call_is_a_fail_line_not_a_traceback(aws, dev_needs):
    base = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    apigateway = client_factory(aws, REGION)("apigateway")
    stubber = Stubber(apigateway)
    stubber.add_client_error("get_account", "AccessDeniedException", "not allowed", 403)
    stubber.activate()
    checks, code = run_checks(
        dev_needs, lambda s: apigateway if s == "apigateway" else base(s), docker_ok, base_current
    )
    assert code == 1
    assert by_name(checks)["api logging role"].detail == (
        "could not check: AccessDeniedException: not allowed"
    )


# -- the command without credentials ----------------------------------------------------------


def test_without_credentials_one_clear_line_and_exit_2(
    monkeypatch, no_ambient_credentials, dev_run
):
    monkeypatch.setattr(offline.preflight, "run_stack", lambda stack, overrides=None: dev_run)
    out = io.StringIO()
    with redirect_stdout(out):
        code = offline.preflight.main(["dev"], session=boto3.session.Session())
    text = out.getvalue()
    assert code == 2
    assert "Traceback" not in text
    fails = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert fails == ["FAIL  credentials            no AWS credentials found (AWS_PROFILE or keys)"]
    assert text.splitlines()[-1] == "0/1 passed: no credentials"


# -- the worker's base image (issue 14, item 1) ------------------------------------------------


def base_image_check(dev_needs, tag_digest="pinned", pinned_resolves=True, error=None):
    """check_base_image with the registry answering as told; the pin is the committed one."""
    seen = []

    def status(dockerfile) -> PinStatus:
        seen.append(dockerfile)
        if error:
            raise error
        pin = read_pin(dockerfile)
        now = pin.digest if tag_digest == "pinned" else tag_digest
        return PinStatus(pin, tag_digest=now, pinned_resolves=pinned_resolves)

    check = check_base_image(dev_needs, status)
    return check, seen


REBUILT = "sha256:" + "b" * 64


def test_issue14_1_base_image_check_reads_the_planned_dockerfile(dev_needs):
    check, seen = base_image_check(dev_needs)
    assert seen == [ROOT / "services/worker/Dockerfile"]
    pinned = read_pin(seen[0])
    assert pinned.digest and pinned.digest in check.detail
    assert check.status == PASS


def test_issue14_1_a_pinned_digest_the_registry_no_longer_serves_fails(dev_needs):
    check, _ = base_image_check(dev_needs, tag_digest=REBUILT, pinned_resolves=False)
    pin = read_pin(ROOT / "services/worker/Dockerfile")
    assert check.line() == (
        f"FAIL  base image             {pin.reference} does not resolve in "
        "https://registry-1.docker.io: the build would fail (make base-image WRITE=1)"
    )


def test_issue14_1_a_moved_tag_warns_but_does_not_fail(aws, dev_needs):
    check, _ = base_image_check(dev_needs, tag_digest=REBUILT)
    pin = read_pin(ROOT / "services/worker/Dockerfile")
    assert (check.status, check.detail) == (
        WARN,
        f"{pin.reference} resolves, but the tag now points at {REBUILT}, a rebuilt base "
        "(make base-image WRITE=1)",
    )
    gone, _ = base_image_check(dev_needs, tag_digest=None)
    assert gone.status == WARN
    assert gone.detail.endswith("resolves, but its tag is gone (make base-image TAG=<tag> WRITE=1)")
    # Warnings leave the exit code at 0 when everything else passes.
    client = with_stubs(aws, account_settings(1000), serverless_options("16.9"))
    moved = lambda dockerfile: PinStatus(read_pin(dockerfile), REBUILT, True)  # noqa: E731
    checks, code = run_checks(dev_needs, client, docker_ok, moved)
    assert (by_name(checks)["base image"].status, code) == (WARN, 0)


def test_issue14_1_an_unreachable_registry_is_a_fail_line(dev_needs):
    error = RegistryError(
        "HEAD https://registry-1.docker.io/v2/...: [Errno 111] Connection refused"
    )
    check, _ = base_image_check(dev_needs, error=error)
    assert check.line() == (
        "FAIL  base image             could not check: HEAD https://registry-1.docker.io/v2/...: "
        "[Errno 111] Connection refused"
    )


def test_issue14_1_a_stack_running_a_prebuilt_image_skips_the_base_image(dev_needs):
    check, seen = base_image_check(replace(dev_needs, builds_image=False, dockerfile=""))
    assert (check.status, check.detail, seen) == (PASS, "the stack builds no image", [])
