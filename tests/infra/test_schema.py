"""`SchemaMigrations` (R1, D5, D6): the migration function and its deploy-time invocation."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.firewall import POSTGRES, RoleSecurityGroup
from components.iam import Grant, attach_grants
from components.packaging import build_migrate_package, migrations_fingerprint
from components.schema import SchemaMigrations, SchemaMigrationsArgs
from offline.engine import ACCOUNT_ID, run_components

REGION = "eu-central-1"
SUBNETS = ["subnet-app-a", "subnet-app-b"]
MASTER_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:rds!cluster-1-AbC"
FUNCTION = "aws:lambda/function:Function"
INVOCATION = "aws:lambda/invocation:Invocation"


def key(purpose: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{purpose}"


def schema_args(namer, context, **overrides: Any) -> SchemaMigrationsArgs:
    values: dict[str, Any] = dict(
        namer=namer,
        context=context,
        vpc_id="vpc-1",
        subnet_ids=SUBNETS,
        code_path="build/lambda/migrate.zip",
        code_sha256="bWlncmF0ZQ==",
        migrations_sha256="f" * 64,
        cluster_resource_id="cluster-ABC123",
        db_host="db.cluster.example",
        db_port=5432,
        db_name="media",
        db_secret_arn=MASTER_SECRET,
        logs_key_arn=key("logs"),
        secrets_key_arn=key("secrets"),
        log_retention_days=90,
    )
    values.update(overrides)
    return SchemaMigrationsArgs(**values)


def build(namer, context, **overrides: Any):
    """The component with a stand-in database (a group to reach, a writer to wait for)."""

    def program():
        holder = pulumi.ComponentResource("media:test:Db", "db")
        database_sg = RoleSecurityGroup(
            "database-sg",
            role="database",
            description="db",
            vpc_id="vpc-1",
            namer=namer,
            parent=holder,
        )
        writer = aws.rds.ClusterInstance(
            "writer",
            cluster_identifier="c",
            instance_class="db.serverless",
            engine="aurora-postgresql",
        )

        def grant_secret(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
            return attach_grants(
                resource_name,
                role,
                [Grant("ReadDatabaseSecret", ("secretsmanager:GetSecretValue",), (MASTER_SECRET,))],
                parent=holder,
            )

        SchemaMigrations(
            "schema",
            schema_args(
                namer,
                context,
                access_grants={"db-secret": grant_secret},
                network_grants=(
                    lambda group: database_sg.allow_from(group, POSTGRES, "migrate"),
                    lambda group: group.allow_https_egress(),
                ),
                run_after=[writer],
                **overrides,
            ),
        )

    return run_components(program, region=REGION)


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    """The default build, shared by the tests that only read it."""
    return build(module_namer, module_context)


def test_r1_function_runs_the_migrate_handler_in_the_app_subnets_with_its_own_group(run):
    function = run.one(FUNCTION).inputs
    assert function["name"] == "media-migrate-test"
    assert function["handler"] == "services.migrate.handler.handler"
    assert function["runtime"] == "python3.12"
    assert function["timeout"] == 300
    # Issue "Operate" item 1: one migration at a time, whoever invokes it.
    assert function["reservedConcurrentExecutions"] == 1
    assert function["sourceCodeHash"] == "bWlncmF0ZQ=="
    assert function["vpcConfig"] == {
        "subnetIds": SUBNETS,
        "securityGroupIds": [run.named("schema-sg").id],
    }
    assert run.named("schema-sg").inputs["name"] == "media-migrate-sg-test"
    assert function["kmsKeyArn"] == key("secrets")
    assert function["tracingConfig"] == {"mode": "Active"}
    logs = run.named("schema-function-logs").inputs
    assert (logs["name"], logs["kmsKeyId"], logs["retentionInDays"]) == (
        "/aws/lambda/media-migrate-test",
        key("logs"),
        90,
    )


def test_d5_g5_only_this_function_gets_the_master_secret_by_arn_never_its_value(run):
    assert run.one(FUNCTION).inputs["environment"] == {
        "variables": {
            "DB_HOST": "db.cluster.example",
            "DB_PORT": "5432",
            "DB_NAME": "media",
            "DB_SSL": "verify-full",  # issue 14 item 6: the RDS CA bundle ships in the zip
            "DB_SECRET_ARN": MASTER_SECRET,
            "LOG_LEVEL": "INFO",
        }
    }
    role = run.one("aws:iam/role:Role", "schema-role")
    assert role.inputs["name"] == "media-migrate-lambda-test"
    secret_policy = run.named("schema-db-secret")
    assert secret_policy.inputs["role"] == role.id
    assert secret_policy.urn in run.one(FUNCTION).dependencies


def test_r1_invocation_runs_again_for_new_migrations_new_code_or_a_new_cluster(run):
    invocation = run.one(INVOCATION)
    assert invocation.inputs["functionName"] == "media-migrate-test"
    assert invocation.inputs["triggers"] == {
        "migrations": "f" * 64,
        "code": "bWlncmF0ZQ==",
        "cluster": "cluster-ABC123",
    }
    assert json.loads(invocation.inputs["input"]) == {"source": "pulumi"}
    assert "lifecycleScope" not in invocation.inputs  # CREATE_ONLY: never run on destroy


def test_r1_invocation_waits_for_the_writer_and_every_rule_that_opens_its_flows(run):
    dependencies = set(run.one(INVOCATION).dependencies)
    assert run.named("writer").urn in dependencies
    rules = {"database-sg-from-migrate", "schema-sg-to-database-sg", "schema-sg-https-out"}
    assert {run.named(name).urn for name in rules} <= dependencies
    egress = run.named("schema-sg-to-database-sg").inputs
    assert (egress["fromPort"], egress["referencedSecurityGroupId"]) == (
        POSTGRES,
        run.named("database-sg").id,
    )


def test_args_report_every_problem_at_once_naming_fields(namer, context):
    with pytest.raises(ValueError) as caught:
        schema_args(
            namer,
            context,
            subnet_ids=SUBNETS[:1],
            code_sha256="",
            db_ssl="disable",
            timeout_seconds=901,
            log_retention_days=10,
        ).validate()
    message = str(caught.value)
    for expected in (
        "subnet_ids: 1 given, allowed at least 2",
        "code_path/code_sha256/migrations_sha256: allowed a built package",
        "db_ssl='disable': allowed one of require, verify-full",
        "timeout_seconds=901: allowed 300..900",
        "log_retention_days=10: allowed one of",
    ):
        assert expected in message


def test_bad_args_register_nothing(namer, context):
    with pytest.raises(ValueError, match=r"timeout_seconds=5: allowed 300\.\.900") as caught:
        run_components(
            lambda: SchemaMigrations("schema", schema_args(namer, context, timeout_seconds=5)),
            region=REGION,
        )
    assert caught.value.registered == []


# -- the whole program ---------------------------------------------------------------------


def test_program_ships_the_migrate_package_and_fingerprints_the_migrations_r1(dev_run):
    function = dev_run.one(FUNCTION, "schema-function").inputs
    package = build_migrate_package()
    assert function["sourceCodeHash"] == package.sha256_base64
    assert function["code"].path == "build/lambda/migrate.zip"
    assert not any(e.startswith(("services/api/", "redis/")) for e in package.entries)
    assert {"services/migrate/handler.py", "services/migrations/003_service_roles.sql"} <= set(
        package.entries
    )
    invocation = dev_run.one(INVOCATION, "schema-run")
    assert invocation.inputs["triggers"] == {
        "migrations": migrations_fingerprint(),
        "code": package.sha256_base64,
        "cluster": dev_run.one("aws:rds/cluster:Cluster").state["clusterResourceId"],
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_program_migrates_after_the_writer_with_the_master_secret_d5(dev_run, prod_run, stack):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    invocation = run.one(INVOCATION, "schema-run")  # beside the key rotation's cleanup
    writer = run.named("database-writer")
    assert writer.urn in invocation.dependencies
    cluster = run.one("aws:rds/cluster:Cluster").state
    variables = run.one(FUNCTION, "schema-function").inputs["environment"]["variables"]
    assert variables["DB_SECRET_ARN"] == cluster["masterUserSecrets"][0]["secretArn"]
    assert variables["DB_HOST"] == cluster["endpoint"]
    statements = json.loads(run.named("schema-db-secret").inputs["policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["ReadDatabaseSecret", "DecryptDatabaseSecret"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_program_d5_g5_master_secret_reaches_the_migration_function_and_nothing_else(
    dev_run, prod_run, stack
):
    """No policy, task definition or function environment other than the migration
    function's names the master secret: the services log in with IAM tokens."""
    run = {"dev": dev_run, "prod": prod_run}[stack]
    master = run.one("aws:rds/cluster:Cluster").state["masterUserSecrets"][0]["secretArn"]
    policies = {
        p.name for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if master in p.inputs["policy"]
    }
    assert policies == {"schema-db-secret"}
    holders = {
        r.name
        for r in run.resources
        if r.type in (FUNCTION, "aws:ecs/taskDefinition:TaskDefinition")
        and master in json.dumps(r.inputs, default=str)
    }
    assert holders == {"schema-function"}
