"""Read-only checks of a real AWS account before `pulumi up`.

    python -m offline.preflight [STACK] [--region REGION]

The offline plan says what the stack would create (VPCs, Elastic IPs, NAT gateways per zone,
reserved Lambda concurrency, the Aurora engine version, whether it sets API Gateway's logging
role, a Docker image build); each check compares one of these with the account, using only
Get/Describe/List calls with short timeouts, and prints one line: PASS, FAIL or WARN. When the
stack builds the worker image, its Dockerfile's pinned base image must also resolve in its
registry (anonymous Registry HTTP API v2 HEAD requests, scripts/refresh_base_image.py).

Exit codes: 0 every check passed (warnings allowed); 1 a check failed; 2 no usable AWS
credentials (nothing else is checked); 3 the stack's settings are invalid.

IAM actions it calls: sts:GetCallerIdentity, ec2:DescribeRegions, ec2:DescribeVpcs,
ec2:DescribeAddresses, ec2:DescribeAccountAttributes, ec2:DescribeNatGateways,
ec2:DescribeSubnets, servicequotas:GetServiceQuota, rds:DescribeOrderableDBInstanceOptions,
lambda:GetAccountSettings, apigateway:GET (/account).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from components.api import PublicApiSettings
from components.database import EncryptedAuroraSettings
from offline.engine import ROOT, ProgramRun, qualify, run_stack
from scripts.refresh_base_image import PinError, PinStatus, RegistryError, status_of
from stack_config import ConfigError

# Named from the declarations, so a renamed key is renamed here too.
ENGINE_VERSION = EncryptedAuroraSettings.key_of("engine_version")
MANAGE_LOGGING_ROLE = PublicApiSettings.key_of("manage_cloudwatch_role")

# Short, bounded calls: a preflight that hangs is worse than one that says it could not check.
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=10,
    retries={"mode": "standard", "total_max_attempts": 2},
)
DOCKER_TIMEOUT_SECONDS = 15
REPIN = "make base-image WRITE=1"
# Pages of orderable-instance options to read before giving up (each holds up to 100).
MAX_PAGES = 20

# Service Quotas codes, and AWS's defaults where the quota cannot be read.
VPCS_PER_REGION = ("vpc", "L-F678F1CE", 5)
NAT_GATEWAYS_PER_AZ = ("vpc", "L-FE5A380F", 5)
# Lambda keeps this many concurrent executions unreserved in every account and region: a
# reservation that would leave fewer is refused (PutFunctionConcurrency).
LAMBDA_MIN_UNRESERVED = 100
NAT_STATES = ("pending", "available")

PASS, FAIL, WARN = "PASS", "FAIL", "WARN"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.name:<22} {self.detail}"


@dataclass(frozen=True)
class StackNeeds:
    """What the stack would create, from the offline plan."""

    stack: str
    region: str
    engine: str = "aurora-postgresql"
    engine_version: str = "16"
    """A major (RDS's newest minor at create time) or a pinned major.minor."""
    vpcs: int = 1
    elastic_ips: int = 0
    nat_gateways_per_az: dict[str, int] = field(default_factory=dict)
    reserved_concurrency: int = 0
    sets_api_logging_role: bool = False
    builds_image: bool = False
    dockerfile: str = ""
    """The worker image's Dockerfile, relative to the repository (when it builds one)."""


def needs_from_plan(run: ProgramRun) -> StackNeeds:
    clusters = run.of_type("aws:rds/cluster:Cluster")
    configured = run.config.get(qualify(ENGINE_VERSION))
    planned = str(clusters[0].inputs.get("engineVersion", "")) if clusters else ""
    subnet_zone = {
        subnet.id: subnet.inputs.get("availabilityZone")
        for subnet in run.of_type("aws:ec2/subnet:Subnet")
    }
    nat_zones = Counter(
        subnet_zone.get(nat.inputs.get("subnetId"), "?")
        for nat in run.of_type("aws:ec2/natGateway:NatGateway")
    )
    images = run.of_type("docker-build:index:Image")
    return StackNeeds(
        stack=run.stack,
        region=run.region,
        engine=clusters[0].inputs.get("engine", "aurora-postgresql") if clusters else "",
        engine_version=configured or planned.split(".")[0],
        vpcs=len(run.of_type("aws:ec2/vpc:Vpc")),
        elastic_ips=len(run.of_type("aws:ec2/eip:Eip")),
        nat_gateways_per_az=dict(nat_zones),
        reserved_concurrency=sum(
            int(function.inputs.get("reservedConcurrentExecutions") or 0)
            for function in run.of_type("aws:lambda/function:Function")
            if int(function.inputs.get("reservedConcurrentExecutions") or 0) > 0
        ),
        sets_api_logging_role=bool(run.of_type("aws:apigateway/account:Account")),
        builds_image=bool(images),
        dockerfile=images[0].inputs.get("dockerfile", {}).get("location", "") if images else "",
    )


# -- the checks -------------------------------------------------------------------------------


ClientFactory = Callable[[str], Any]


def check_credentials(client: ClientFactory) -> Check:
    identity = client("sts").get_caller_identity()
    return Check("credentials", PASS, f"{identity['Arn']} (account {identity['Account']})")


def check_region(client: ClientFactory, needs: StackNeeds) -> Check:
    regions = {
        region["RegionName"]: region.get("OptInStatus", "opt-in-not-required")
        for region in client("ec2").describe_regions(AllRegions=True)["Regions"]
    }
    status = regions.get(needs.region)
    if status is None:
        return Check("region", FAIL, f"{needs.region} is not a region of this partition")
    if status == "not-opted-in":
        return Check("region", FAIL, f"{needs.region} is not enabled for this account (opt-in)")
    return Check("region", PASS, f"{needs.region} ({status})")


def _serverless_versions(client: ClientFactory, engine: str) -> set[str]:
    paginator = client("rds").get_paginator("describe_orderable_db_instance_options")
    pages = paginator.paginate(
        Engine=engine,
        DBInstanceClass="db.serverless",
        PaginationConfig={"MaxItems": MAX_PAGES * 100},
    )
    return {
        option["EngineVersion"]
        for page in pages
        for option in page["OrderableDBInstanceOptions"]
        if option.get("DBInstanceClass") == "db.serverless"
    }


def check_engine_version(client: ClientFactory, needs: StackNeeds) -> Check:
    versions = _serverless_versions(client, needs.engine)
    wanted = needs.engine_version
    if "." in wanted:
        found = sorted(v for v in versions if v == wanted)
    else:
        found = sorted((v for v in versions if v.split(".")[0] == wanted), key=_version_key)
    label = f"{needs.engine} {wanted} on db.serverless in {needs.region}"
    if not found:
        return Check("engine version", FAIL, f"{label}: not offered (set {ENGINE_VERSION})")
    return Check("engine version", PASS, f"{label}: offered (newest {found[-1]})")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _quota(client: ClientFactory, quota: tuple[str, str, int]) -> tuple[float, str]:
    service, code, default = quota
    try:
        value = client("service-quotas").get_service_quota(ServiceCode=service, QuotaCode=code)
        return value["Quota"]["Value"], f"quota {code}"
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchResourceException":
            raise
        return default, f"AWS default (quota {code} not readable)"


def check_vpcs(client: ClientFactory, needs: StackNeeds) -> Check:
    limit, source = _quota(client, VPCS_PER_REGION)
    existing = len(client("ec2").describe_vpcs()["Vpcs"])
    return _capacity("VPCs", existing, needs.vpcs, limit, source)


def check_elastic_ips(client: ClientFactory, needs: StackNeeds) -> Check:
    ec2 = client("ec2")
    attributes = ec2.describe_account_attributes(AttributeNames=["vpc-max-elastic-ips"])
    limit = float(attributes["AccountAttributes"][0]["AttributeValues"][0]["AttributeValue"])
    existing = len(ec2.describe_addresses()["Addresses"])
    return _capacity("Elastic IPs", existing, needs.elastic_ips, limit, "vpc-max-elastic-ips")


def check_nat_gateways(client: ClientFactory, needs: StackNeeds) -> Check:
    limit, source = _quota(client, NAT_GATEWAYS_PER_AZ)
    ec2 = client("ec2")
    gateways = ec2.describe_nat_gateways(Filters=[{"Name": "state", "Values": list(NAT_STATES)}])
    subnet_ids = [gateway["SubnetId"] for gateway in gateways["NatGateways"]]
    zones = {
        subnet["SubnetId"]: subnet["AvailabilityZone"]
        for subnet in (
            ec2.describe_subnets(SubnetIds=sorted(set(subnet_ids)))["Subnets"] if subnet_ids else []
        )
    }
    existing = Counter(zones.get(subnet_id, "?") for subnet_id in subnet_ids)
    worst = max(
        needs.nat_gateways_per_az or {"-": 0},
        key=lambda zone: existing[zone] + needs.nat_gateways_per_az.get(zone, 0),
    )
    planned = needs.nat_gateways_per_az.get(worst, 0)
    return _capacity(f"NAT gateways ({worst})", existing[worst], planned, limit, source)


def _capacity(what: str, existing: int, planned: int, limit: float, source: str) -> Check:
    detail = f"{existing} in use + {planned} planned of {limit:g} ({source})"
    status = PASS if existing + planned <= limit else FAIL
    return Check(what, status, detail)


def check_lambda_concurrency(client: ClientFactory, needs: StackNeeds) -> Check:
    limits = client("lambda").get_account_settings()["AccountLimit"]
    unreserved = int(limits["UnreservedConcurrentExecutions"])
    left = unreserved - needs.reserved_concurrency
    detail = (
        f"{unreserved} unreserved of {limits['ConcurrentExecutions']}; the stack reserves "
        f"{needs.reserved_concurrency}, leaving {left} (AWS keeps at least "
        f"{LAMBDA_MIN_UNRESERVED})"
    )
    return Check("lambda concurrency", PASS if left >= LAMBDA_MIN_UNRESERVED else FAIL, detail)


def check_api_logging_role(client: ClientFactory, needs: StackNeeds) -> Check:
    role = client("apigateway").get_account().get("cloudwatchRoleArn")
    if needs.sets_api_logging_role:
        now = f"replaces {role}" if role else "none set yet"
        return Check("api logging role", PASS, f"the stack sets it ({MANAGE_LOGGING_ROLE}; {now})")
    if role:
        return Check("api logging role", PASS, f"set for the account: {role}")
    return Check(
        "api logging role",
        FAIL,
        f"no CloudWatch role for API Gateway in {needs.region}: stage logging would fail "
        f"(set {MANAGE_LOGGING_ROLE}: true, or set the role once for the account)",
    )


def docker_server_version() -> str:
    """The Docker daemon's version; raises RuntimeError when there is none to talk to."""
    docker = shutil.which("docker")
    if docker is None:
        raise RuntimeError("docker is not installed")
    done = subprocess.run(
        [docker, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=DOCKER_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no daemon"
        )
    return done.stdout.strip()


def check_docker(needs: StackNeeds, docker_version: Callable[[], str]) -> Check:
    if not needs.builds_image:
        return Check("docker", PASS, "the stack builds no image")
    try:
        return Check("docker", PASS, f"daemon {docker_version()} for the worker image build")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        return Check("docker", FAIL, f"the worker image build needs a Docker daemon: {error}")


def check_base_image(needs: StackNeeds, base_image_status: Callable[[Path], PinStatus]) -> Check:
    """The image build starts FROM a digest: one its registry no longer serves fails the build."""
    if not needs.builds_image:
        return Check("base image", PASS, "the stack builds no image")
    try:
        status = base_image_status(ROOT / needs.dockerfile)
    except (PinError, RegistryError) as error:
        return Check("base image", FAIL, f"could not check: {error}")
    pin, now = status.pin, status.tag_digest
    if pin.digest is None:
        return Check("base image", FAIL, f"{pin.reference} is not pinned by digest ({REPIN})")
    if not status.pinned_resolves:
        return Check(
            "base image",
            FAIL,
            f"{pin.reference} does not resolve in {pin.registry}: the build would fail ({REPIN})",
        )
    if now is None:
        return Check(
            "base image",
            WARN,
            f"{pin.reference} resolves, but its tag is gone (make base-image TAG=<tag> WRITE=1)",
        )
    if now != pin.digest:
        return Check(
            "base image",
            WARN,
            f"{pin.reference} resolves, but the tag now points at {now}, a rebuilt base ({REPIN})",
        )
    return Check("base image", PASS, f"{pin.reference} resolves (the tag's current digest)")


# -- running them ------------------------------------------------------------------------------


def client_factory(session: boto3.session.Session, region: str) -> ClientFactory:
    def client(service: str):
        return session.client(service, region_name=region, config=CLIENT_CONFIG)

    return client


def guarded(name: str, check: Callable[[], Check]) -> Check:
    """A check whose call failed says so in its line instead of raising."""
    try:
        return check()
    except ClientError as error:
        info = error.response.get("Error", {})
        return Check(name, FAIL, f"could not check: {info.get('Code')}: {info.get('Message')}")
    except (BotoCoreError, KeyError, IndexError, ValueError) as error:
        return Check(name, FAIL, f"could not check: {type(error).__name__}: {error}")


def run_checks(
    needs: StackNeeds,
    client: ClientFactory,
    docker_version: Callable[[], str] = docker_server_version,
    base_image_status: Callable[[Path], PinStatus] = status_of,
) -> tuple[list[Check], int]:
    try:
        identity = check_credentials(client)
    except NoCredentialsError:
        return [Check("credentials", FAIL, "no AWS credentials found (AWS_PROFILE or keys)")], 2
    except (ClientError, BotoCoreError) as error:
        return [Check("credentials", FAIL, f"credentials not usable: {error}")], 2
    checks = [identity] + [
        guarded(name, check)
        for name, check in (
            ("region", lambda: check_region(client, needs)),
            ("engine version", lambda: check_engine_version(client, needs)),
            ("VPCs", lambda: check_vpcs(client, needs)),
            ("Elastic IPs", lambda: check_elastic_ips(client, needs)),
            ("NAT gateways", lambda: check_nat_gateways(client, needs)),
            ("lambda concurrency", lambda: check_lambda_concurrency(client, needs)),
            ("api logging role", lambda: check_api_logging_role(client, needs)),
            ("docker", lambda: check_docker(needs, docker_version)),
            ("base image", lambda: check_base_image(needs, base_image_status)),
        )
    ]
    return checks, 1 if any(check.status == FAIL for check in checks) else 0


def main(argv: list[str] | None = None, session: boto3.session.Session | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--region", help="override aws:region for this evaluation")
    args = parser.parse_args(argv)
    try:
        run = run_stack(args.stack, {"aws:region": args.region} if args.region else None)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 3
    needs = needs_from_plan(run)
    print(f"Preflight of stack {needs.stack} in {needs.region} (read-only calls)")
    checks, code = run_checks(
        needs, client_factory(session or boto3.session.Session(), needs.region)
    )
    print("\n".join(check.line() for check in checks))
    verdict = {0: "ready for `pulumi up`", 1: "fix the FAIL lines first", 2: "no credentials"}
    print(f"{sum(c.status == PASS for c in checks)}/{len(checks)} passed: {verdict[code]}")
    return code


if __name__ == "__main__":
    sys.exit(main())
