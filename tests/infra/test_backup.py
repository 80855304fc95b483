"""DatabaseBackups: an AWS Backup plan of the database in a locked vault, optionally copied
to a second region (issue "Operate", item 1)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from components.backup import DatabaseBackups, DatabaseBackupsArgs
from offline.engine import ACCOUNT_ID, run_components
from stack_config import ConfigError, parse_settings

CLUSTER = f"arn:aws:rds:eu-central-1:{ACCOUNT_ID}:cluster:media-aurora-test"
DB_KEY = f"arn:aws:kms:eu-central-1:{ACCOUNT_ID}:key/database"
VAULT = "aws:backup/vault:Vault"
LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"


def backup_args(namer, context, **overrides) -> DatabaseBackupsArgs:
    values = dict(
        namer=namer, context=context, cluster_arn=CLUSTER, vault_key_arn=DB_KEY, enabled=True
    )
    return DatabaseBackupsArgs(**{**values, **overrides})


def build(args: DatabaseBackupsArgs):
    return run_components(lambda: DatabaseBackups("backups", args))


@pytest.fixture(scope="module")
def copied(module_namer, module_context):
    """Protected, with a copy to eu-west-1."""
    return build(
        backup_args(module_namer, module_context, copy_region="eu-west-1", protect_data=True)
    )


def test_daily_points_go_to_a_vault_under_the_database_key_locked_in_governance_mode(copied):
    vault = copied.one(VAULT, "backups-vault")
    assert (vault.inputs["name"], vault.inputs["kmsKeyArn"]) == ("media-db-vault-test", DB_KEY)
    assert "region" not in vault.inputs  # the stack's region
    lock = copied.one(LOCK, "backups-vault-lock").inputs
    assert lock == {"backupVaultName": "media-db-vault-test", "minRetentionDays": 35}
    # No changeableForDays: governance mode, never an irreversible compliance lock.
    assert all("changeableForDays" not in lk.inputs for lk in copied.of_type(LOCK))


def test_the_plan_runs_daily_keeps_points_and_copies_them_to_the_other_region(copied):
    copy_vault = copied.one(VAULT, "backups-copy-vault")
    assert copy_vault.inputs["region"] == "eu-west-1"
    copy_key = copied.one("aws:kms/key:Key", "backups-copy-key-key")
    assert copy_key.inputs["region"] == "eu-west-1"
    assert copy_vault.inputs["kmsKeyArn"] == copy_key.state["arn"]
    (rule,) = copied.one("aws:backup/plan:Plan").inputs["rules"]
    assert rule == {
        "ruleName": "daily",
        "targetVaultName": "media-db-vault-test",
        "schedule": "cron(0 3 * * ? *)",
        "startWindow": 60,
        "completionWindow": 360,
        "lifecycle": {"deleteAfter": 35},
        "copyActions": [
            {"destinationVaultArn": copy_vault.state["arn"], "lifecycle": {"deleteAfter": 35}}
        ],
    }


def test_the_selection_takes_exactly_the_cluster_with_a_role_only_backup_assumes(copied):
    selection = copied.one("aws:backup/selection:Selection")
    assert selection.inputs["resources"] == [CLUSTER]
    role = copied.one("aws:iam/role:Role", "backups-role")
    assert selection.inputs["iamRoleArn"] == role.state["arn"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "backup.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}
    attachments = copied.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert sorted(a.inputs["policyArn"] for a in attachments) == [
        "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
        "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
    ]
    assert {a.urn for a in attachments} <= set(selection.dependencies)


def test_g3_vaults_kept_with_data_protection_emptied_without(copied, namer, context):
    for vault in copied.of_type(VAULT):
        assert (vault.inputs["forceDestroy"], vault.protect, vault.retain_on_delete) == (
            False,
            True,
            True,
        )
    plain = build(backup_args(namer, context))
    (vault,) = plain.of_type(VAULT)
    assert (vault.inputs["forceDestroy"], vault.protect) == (True, False)
    assert plain.of_type("aws:kms/key:Key") == []  # no copy, no second key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"copy_region": "EU-WEST-1"}, 'copy_region="EU-WEST-1": allowed empty or a region name'),
        ({"enabled": False, "copy_region": "eu-west-1"}, "allowed empty unless enabled is true"),
        ({"copy_region": "eu-central-1"}, "copy_region='eu-central-1': allowed another region"),
        ({"retention_days": 3}, "retention_days=3: allowed 7..3650"),
    ],
)
def test_bad_args_are_named(namer, context, overrides, message):
    with pytest.raises(ValueError, match="DatabaseBackupsArgs") as error:
        replace(backup_args(namer, context), **overrides).validate("eu-central-1")
    assert message in str(error.value)


def test_g8_a_copy_into_the_stacks_own_region_is_refused_naming_the_key():
    raw = {"dbBackupPlan": "true", "dbBackupCopyRegion": "eu-central-1"}
    with pytest.raises(ConfigError) as error:
        parse_settings(raw, project="media-pipeline", stack="prod", region="eu-central-1")
    assert error.value.problems == [
        'dbBackupCopyRegion="eu-central-1": allowed a region other than the stack\'s (a copy '
        "beside the original protects nothing)"
    ]
