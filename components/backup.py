"""AWS Backup of the database: a locked vault, a daily plan, an optional cross-region copy.

Aurora's own automated backups (D3) cover point-in-time recovery inside the cluster's
retention; they go when the cluster goes and live in its region. This plan keeps daily
recovery points in a vault of their own, under a vault lock in governance mode (nobody
deletes a point before `min_retention_days` without the `backup:DeleteBackupVaultLockConfiguration`
right, which the account's administrators keep), optionally copied to a second region with a
key there. Governance, not compliance mode: a compliance lock can never be lifted, which
would make a stack undestroyable for years.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import service_role, service_role_policy_arn
from components.kms import AwsContext, EncryptionKey, EncryptionKeyArgs
from components.naming import Namer, name_tag
from components.protection import Lifecycle
from components.tunables import Problem, Tunables, tunable

REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Managed policies AWS documents for a backup selection's role.
BACKUP_POLICIES = ("AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores")
DAILY_AT_0300_UTC = "cron(0 3 * * ? *)"


@dataclass(frozen=True, kw_only=True)
class DatabaseBackupSettings(Tunables):
    """The database backup plan's tunables (issue "Operate", item 1)."""

    TIER = "backup"

    enabled: bool = tunable(
        "dbBackupPlan",
        False,
        "An AWS Backup plan for the database: daily recovery points in a vault with a "
        "governance-mode lock, kept dbBackupPlanRetentionDays.",
    )
    retention_days: int = tunable(
        "dbBackupPlanRetentionDays",
        35,
        "Days each recovery point (and its copy) is kept; also the vault lock's minimum.",
        range=(7, 3650),
    )
    copy_region: str = tunable(
        "dbBackupCopyRegion",
        "",
        "A second region each recovery point is copied to (its own vault and key); empty for none.",
        check=lambda region: region == "" or bool(REGION_NAME.match(region)),
        allowed="empty or a region name such as eu-west-1",
    )

    def rules(self) -> list[Problem]:
        if self.copy_region and not self.enabled:
            return [Problem("copy_region", self.copy_region, "empty unless {enabled} is true")]
        return []


@dataclass(frozen=True, kw_only=True)
class DatabaseBackupsArgs(DatabaseBackupSettings):
    """Inputs of `DatabaseBackups`: its settings plus what the stack wires in."""

    namer: Namer
    context: AwsContext
    cluster_arn: pulumi.Input[str]
    """The Aurora cluster the plan selects (required)."""
    vault_key_arn: pulumi.Input[str]
    """CMK of the stack-region vault (the database key) (required)."""
    protect_data: bool = False
    """True: the vaults and the copy key are protected and kept; False: the vaults are
    emptied on destroy (force_destroy)."""

    def validate(self, region: str | None = None) -> None:
        problems = self.tunable_problems()
        if region is not None and self.copy_region == region:
            problems.append(f"copy_region={self.copy_region!r}: allowed another region")
        if problems:
            raise ValueError("DatabaseBackupsArgs: " + "; ".join(problems))


class DatabaseBackups(pulumi.ComponentResource):
    """A daily AWS Backup plan of the cluster into a locked vault, optionally copied away."""

    vault_arn: pulumi.Output[str]
    copy_vault_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: DatabaseBackupsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        region = args.context.region if isinstance(args.context.region, str) else None
        args.validate(region)
        super().__init__("media:backup:DatabaseBackups", name, None, opts)
        self._name, self._args = name, args
        self._lifecycle = Lifecycle(args.protect_data)
        vault = self._vault("vault", args.vault_key_arn, region=None)
        self.vault_arn = vault.arn
        self.copy_vault_arn = None
        copy_vault = None
        if args.copy_region:
            key = EncryptionKey(
                f"{name}-copy-key",
                EncryptionKeyArgs(
                    purpose="backup-copy-key",
                    context=args.context,
                    namer=args.namer,
                    deletion_window_days=self._lifecycle.key_deletion_window_days,
                    protect_data=args.protect_data,
                    region=args.copy_region,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            copy_vault = self._vault("copy-vault", key.arn, region=args.copy_region)
            self.copy_vault_arn = copy_vault.arn
        plan = self._plan(vault, copy_vault)
        self._selection(plan)
        self.register_outputs({"vault_arn": self.vault_arn, "copy_vault_arn": self.copy_vault_arn})

    def _vault(
        self, label: str, key_arn: pulumi.Input[str], region: str | None
    ) -> aws.backup.Vault:
        args = self._args
        physical = args.namer.name(f"db-{label}")
        keep = pulumi.ResourceOptions(
            parent=self, protect=args.protect_data, retain_on_delete=args.protect_data
        )
        vault = aws.backup.Vault(
            f"{self._name}-{label}",
            name=physical,
            kms_key_arn=key_arn,
            # Destroyable stacks empty the vault first; protected ones never do.
            force_destroy=not args.protect_data,
            region=region,
            tags=name_tag(physical),
            opts=keep,
        )
        aws.backup.VaultLockConfiguration(
            f"{self._name}-{label}-lock",
            backup_vault_name=vault.name,
            min_retention_days=args.retention_days,
            # No changeable_for_days: governance mode (see the module's docstring).
            region=region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return vault

    def _plan(
        self, vault: aws.backup.Vault, copy_vault: aws.backup.Vault | None
    ) -> aws.backup.Plan:
        args = self._args
        physical = args.namer.name("db-backup-plan")
        lifecycle = {"delete_after": args.retention_days}
        rule = {
            "rule_name": "daily",
            "target_vault_name": vault.name,
            "schedule": DAILY_AT_0300_UTC,
            "start_window": 60,
            "completion_window": 360,
            "lifecycle": lifecycle,
        }
        if copy_vault is not None:
            rule["copy_actions"] = [
                {"destination_vault_arn": copy_vault.arn, "lifecycle": lifecycle}
            ]
        return aws.backup.Plan(
            f"{self._name}-plan",
            name=physical,
            rules=[rule],
            tags=name_tag(physical),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _selection(self, plan: aws.backup.Plan) -> None:
        args, name = self._args, self._name
        role = service_role(
            f"{name}-role",
            role="db-backup",
            service="backup.amazonaws.com",
            ctx=args.context,
            namer=args.namer,
            parent=self,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy}",
                role=role.name,
                policy_arn=service_role_policy_arn(args.context, policy),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for policy in BACKUP_POLICIES
        ]
        aws.backup.Selection(
            f"{name}-selection",
            name=args.namer.name("db-backup"),
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=[args.cluster_arn],
            # AWS Backup checks the role's permissions when the selection is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
        )
