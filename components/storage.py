"""`SharedFileSystem`: the EFS file system every worker task shares (W4).

Encrypted with the file-system CMK, elastic throughput, a mount target in every data subnet
(EFS DNS resolves only to a mount target in the client's own AZ), one access point that pins
every client to POSIX user 1000:1000 under `/media`, and a file-system policy that refuses
plain-text NFS and any mount that does not go through that access point. Clients are let in
by network (`allow_from`) and by IAM (`grant_mount`), never by default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.firewall import NFS, RoleSecurityGroup
from components.iam import Grant, attach_grants
from components.naming import Namer, name_tag
from components.protection import data_store_options

IA_TRANSITIONS = (
    "AFTER_1_DAY",
    "AFTER_7_DAYS",
    "AFTER_14_DAYS",
    "AFTER_30_DAYS",
    "AFTER_60_DAYS",
    "AFTER_90_DAYS",
    "AFTER_180_DAYS",
    "AFTER_270_DAYS",
    "AFTER_365_DAYS",
)
CLIENT_ACTIONS = (
    "elasticfilesystem:ClientMount",
    "elasticfilesystem:ClientWrite",
    "elasticfilesystem:ClientRootAccess",
)
MOUNT_ACTIONS = ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")
_POSIX_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
_PERMISSIONS = re.compile(r"^[0-7]{3,4}$")
MAX_POSIX_ID = 4294967295


@dataclass(frozen=True, kw_only=True)
class SharedFileSystemArgs:
    """Inputs of `SharedFileSystem`."""

    namer: Namer
    """Stack namer for the Name tags and the security group (required)."""
    vpc_id: pulumi.Input[str]
    """VPC of the mount targets' security group (required)."""
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private data subnets, one per AZ; a mount target goes into each (required, >= 2)."""
    kms_key_arn: pulumi.Input[str]
    """File-system CMK ARN (an ARN: an id or alias forces replacement later) (required)."""
    root_path: str = "/media"
    """Directory the access point exposes as `/`; created on first mount. Default `/media`."""
    owner_uid: int = 1000
    """POSIX uid every client acts as and that owns `root_path`. Default 1000."""
    owner_gid: int = 1000
    """POSIX gid every client acts as and that owns `root_path`. Default 1000."""
    permissions: str = "750"
    """Octal mode of `root_path` when EFS creates it. Default `750`."""
    transition_to_ia: str = "AFTER_30_DAYS"
    """When untouched files move to Infrequent Access. Default `AFTER_30_DAYS`."""
    backups: bool = True
    """AWS Backup's daily EFS backups (35-day recovery points). Default on; off is an opt-out."""
    placement_ready: Sequence[pulumi.Resource] = ()
    """What the data subnets need before a client can mount (their route-table associations
    and network ACL rules: `SecureVpc.data_prerequisites`); the mount targets wait for them."""
    protect_data: bool = False
    """False (default): the file system is deleted on destroy. True: the engine refuses to
    delete or replace it and it is retained on delete — the shared media survive (G3)."""

    def validate(self) -> None:
        problems = []
        if len(self.subnet_ids) < 2:
            problems.append(
                f"subnet_ids={len(self.subnet_ids)} subnet(s): allowed one data "
                "subnet per AZ, at least 2 (G7)"
            )
        if not _POSIX_PATH.match(self.root_path):
            problems.append(
                f"root_path={self.root_path!r}: allowed an absolute path like "
                "/media (letters, digits, _ . -), not /"
            )
        for field_name in ("owner_uid", "owner_gid"):
            value = getattr(self, field_name)
            if not 0 < value <= MAX_POSIX_ID:
                problems.append(f"{field_name}={value}: allowed 1..{MAX_POSIX_ID} (never root)")
        if not _PERMISSIONS.match(self.permissions):
            problems.append(f"permissions={self.permissions!r}: allowed an octal mode like 750")
        if self.transition_to_ia not in IA_TRANSITIONS:
            problems.append(
                f"transition_to_ia={self.transition_to_ia!r}: allowed one of "
                + ", ".join(IA_TRANSITIONS)
            )
        if problems:
            raise ValueError("SharedFileSystemArgs: " + "; ".join(problems))


class SharedFileSystem(pulumi.ComponentResource):
    """Encrypted EFS with per-AZ mount targets, one access point and a TLS-and-IAM policy."""

    file_system_id: pulumi.Output[str]
    file_system_arn: pulumi.Output[str]
    access_point_id: pulumi.Output[str]
    access_point_arn: pulumi.Output[str]
    security_group: RoleSecurityGroup
    mount_targets: list[aws.efs.MountTarget]

    def __init__(
        self, name: str, args: SharedFileSystemArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:storage:SharedFileSystem", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        fs_name = args.namer.name("files")
        self.file_system = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            kms_key_id=args.kms_key_arn,
            throughput_mode="elastic",
            # One transition per policy object: EFS rejects both in one.
            lifecycle_policies=[
                {"transition_to_ia": args.transition_to_ia},
                {"transition_to_primary_storage_class": "AFTER_1_ACCESS"},
            ],
            tags=name_tag(fs_name),
            opts=data_store_options(self, args.protect_data),
        )
        self.file_system_id = self.file_system.id
        self.file_system_arn = self.file_system.arn
        if not args.backups:
            pulumi.log.warn(
                "SharedFileSystem: backups=False turns off AWS Backup for the "
                "shared media file system",
                resource=self,
            )
        aws.efs.BackupPolicy(
            f"{name}-backup",
            file_system_id=self.file_system.id,
            backup_policy={"status": "ENABLED" if args.backups else "DISABLED"},
            opts=child,
        )
        self.security_group = RoleSecurityGroup(
            f"{name}-sg",
            role="files",
            description="EFS mount targets: NFS from granted roles",
            vpc_id=args.vpc_id,
            namer=args.namer,
            parent=self,
        )
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-mount-{index}",
                file_system_id=self.file_system.id,
                subnet_id=subnet_id,
                security_groups=[self.security_group.id],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.placement_ready)),
            )
            for index, subnet_id in enumerate(args.subnet_ids)
        ]
        self.access_point = aws.efs.AccessPoint(
            f"{name}-ap",
            file_system_id=self.file_system.id,
            posix_user={"uid": args.owner_uid, "gid": args.owner_gid},
            # Without creation_info a missing root path makes every mount fail.
            root_directory={
                "path": args.root_path,
                "creation_info": {
                    "owner_uid": args.owner_uid,
                    "owner_gid": args.owner_gid,
                    "permissions": args.permissions,
                },
            },
            tags=name_tag(args.namer.name("files-ap")),
            opts=child,
        )
        self.access_point_id = self.access_point.id
        self.access_point_arn = self.access_point.arn
        self.policy = aws.efs.FileSystemPolicy(
            f"{name}-policy",
            file_system_id=self.file_system.id,
            policy=pulumi.Output.json_dumps(self._policy_document()),
            opts=child,
        )
        self.register_outputs(
            {
                "file_system_id": self.file_system_id,
                "file_system_arn": self.file_system_arn,
                "access_point_id": self.access_point_id,
                "access_point_arn": self.access_point_arn,
                "security_group_id": self.security_group.id,
            }
        )

    def _policy_document(self) -> dict[str, Any]:
        # Once a file-system policy exists, NFS clients that do not sign with IAM are
        # anonymous and no statement allows them, so only IAM-authorised mounts get in; IAM
        # principals of this account still need ClientMount/ClientWrite (see `grant_mount`).
        deny = {
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": list(CLIENT_ACTIONS),
            "Resource": self.file_system.arn,
        }
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyUnencryptedTransport",
                    **deny,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                # A missing access-point key also matches StringNotEquals: bare mounts fail.
                {
                    "Sid": "DenyMountOutsideAccessPoint",
                    **deny,
                    "Condition": {
                        "StringNotEquals": {
                            "elasticfilesystem:AccessPointArn": self.access_point.arn
                        }
                    },
                },
            ],
        }

    def allow_from(self, peer: RoleSecurityGroup) -> None:
        """Admit `peer` on NFS (2049) only: ingress on the mount targets, egress on the peer."""
        self.security_group.admit_once(peer, NFS, self._name)

    def grant_mount(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let `role` mount and write through the access point only (IAM authorisation)."""
        return attach_grants(
            resource_name,
            role,
            [
                Grant(
                    sid="MountSharedMediaThroughAccessPoint",
                    actions=MOUNT_ACTIONS,
                    resources=(self.file_system.arn,),
                    conditions={
                        "StringEquals": {"elasticfilesystem:AccessPointArn": self.access_point.arn}
                    },
                )
            ],
            parent=self,
        )
