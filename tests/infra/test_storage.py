"""SharedFileSystem (W4): encrypted EFS, a mount target per AZ, access point, TLS+IAM policy."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.firewall import RoleSecurityGroup
from components.iam import service_role
from components.storage import SharedFileSystem, SharedFileSystemArgs
from offline.engine import run_components
from tests.infra.expect import assert_rejected, assert_same_peer_twice_fails, guarded

FS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/filesystem"
DATA_SUBNETS = ["subnet-data-a", "subnet-data-b", "subnet-data-c"]
FS = "aws:efs/fileSystem:FileSystem"


def _args(namer, **overrides) -> SharedFileSystemArgs:
    values = {"namer": namer, "vpc_id": "vpc-1", "subnet_ids": DATA_SUBNETS, "kms_key_arn": FS_KEY}
    values.update(overrides)
    return SharedFileSystemArgs(**values)


class _Peer(pulumi.ComponentResource):
    def __init__(self, name: str):
        super().__init__("test:peer:Peer", name, None)


def app_role(namer, context, owner: pulumi.Resource):
    """The consumer's task role (`media-app-test`), under the consumer `owner`."""
    return service_role(
        "app-role",
        role="app",
        service="ecs-tasks.amazonaws.com",
        ctx=context,
        namer=namer,
        parent=owner,
    )


def _run(namer, context, *, grant: bool = False, peer: bool = False, **overrides):
    def build():
        files = SharedFileSystem("files", _args(namer, **overrides))
        owner = _Peer("app")
        if peer:
            group = RoleSecurityGroup(
                "app-sg", role="app", description="app", vpc_id="vpc-1", namer=namer, parent=owner
            )
            files.allow_from(group)
        if grant:
            files.grant_mount("app-efs", app_role(namer, context, owner))
        return files

    return run_components(build)


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    """The default build, shared by the tests that only read it."""
    return _run(module_namer, module_context, grant=True, peer=True)


def test_file_system_encrypted_with_filesystem_cmk_elastic_throughput_w4(run):
    fs = run.one(FS).inputs
    assert fs["encrypted"] is True
    assert fs["kmsKeyId"] == FS_KEY
    assert fs["throughputMode"] == "elastic"
    assert fs["tags"] == {"Name": "media-files-test"}


def test_lifecycle_moves_to_infrequent_access_and_back_on_access(run):
    assert run.one(FS).inputs["lifecyclePolicies"] == [
        {"transitionToIa": "AFTER_30_DAYS"},
        {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"},
    ]


def test_backups_enabled_by_default(run):
    policy = run.one("aws:efs/backupPolicy:BackupPolicy").inputs
    assert policy["backupPolicy"] == {"status": "ENABLED"}
    assert policy["fileSystemId"] == run.one(FS).id
    assert run.warnings == []


def test_backups_off_is_a_logged_opt_out(namer, context):
    run = _run(namer, context, backups=False)
    assert run.one("aws:efs/backupPolicy:BackupPolicy").inputs["backupPolicy"] == {
        "status": "DISABLED"
    }
    assert run.warnings == [
        "SharedFileSystem: backups=False turns off AWS Backup for the shared media file system"
    ]


def test_one_mount_target_per_data_subnet_in_the_file_system_group_w4_g7(run):
    targets = run.of_type("aws:efs/mountTarget:MountTarget")
    group_id = run.named("files-sg").id
    assert sorted(t.inputs["subnetId"] for t in targets) == sorted(DATA_SUBNETS)
    for target in targets:
        assert target.inputs["fileSystemId"] == run.one(FS).id
        assert target.inputs["securityGroups"] == [group_id]


def test_access_point_pins_posix_user_and_creates_root_pitfall_68(run):
    ap = run.one("aws:efs/accessPoint:AccessPoint").inputs
    assert ap["fileSystemId"] == run.one(FS).id
    assert ap["posixUser"] == {"uid": 1000, "gid": 1000}
    assert ap["rootDirectory"] == {
        "path": "/media",
        "creationInfo": {"ownerUid": 1000, "ownerGid": 1000, "permissions": "750"},
    }


def test_file_system_policy_denies_plain_nfs_and_mounts_outside_the_access_point(run):
    fs = run.one(FS)
    ap = run.one("aws:efs/accessPoint:AccessPoint")
    policy = run.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs
    assert policy["fileSystemId"] == fs.id
    document = json.loads(policy["policy"])
    actions = [
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
        "elasticfilesystem:ClientRootAccess",
    ]
    base = {
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": actions,
        "Resource": fs.state["arn"],
    }
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyUnencryptedTransport",
                **base,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyMountOutsideAccessPoint",
                **base,
                "Condition": {
                    "StringNotEquals": {"elasticfilesystem:AccessPointArn": ap.state["arn"]}
                },
            },
        ],
    }
    # No Allow at all: anonymous (non-IAM) NFS clients have nothing that lets them in.
    assert all(s["Effect"] == "Deny" for s in document["Statement"])


def test_allow_from_admits_only_nfs_from_the_peer_group_n3(run):
    files_sg, app_sg = run.named("files-sg").id, run.named("app-sg").id
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    egress = run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert [
        (
            r.name,
            r.inputs["securityGroupId"],
            r.inputs["referencedSecurityGroupId"],
            r.inputs["ipProtocol"],
            r.inputs["fromPort"],
            r.inputs["toPort"],
        )
        for r in ingress
    ] == [("files-sg-from-media-app-sg-test", files_sg, app_sg, "tcp", 2049, 2049)]
    assert [
        (
            r.inputs["securityGroupId"],
            r.inputs["referencedSecurityGroupId"],
            r.inputs["fromPort"],
            r.inputs["toPort"],
        )
        for r in egress
    ] == [(app_sg, files_sg, 2049, 2049)]


def test_allowing_the_same_peer_twice_is_an_error(namer):
    assert_same_peer_twice_fails(
        lambda: SharedFileSystem("files", _args(namer)), namer, store="files", peer_role="app"
    )


def test_no_rules_without_grants(namer, context):
    run = _run(namer, context)
    assert run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []
    assert run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") == []
    assert run.of_type("aws:iam/rolePolicy:RolePolicy") == []


def test_grant_mount_allows_mount_and_write_through_the_access_point_only(run):
    fs = run.one(FS)
    ap = run.one("aws:efs/accessPoint:AccessPoint")
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "app-efs")
    assert policy.inputs["role"] == run.named("app-role").id
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MountSharedMediaThroughAccessPoint",
                "Effect": "Allow",
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                "Resource": [fs.state["arn"]],
                "Condition": {
                    "StringEquals": {"elasticfilesystem:AccessPointArn": ap.state["arn"]}
                },
            }
        ],
    }


def test_children_are_parented_to_the_component(run):
    component = run.one("media:storage:SharedFileSystem")
    children = sorted(r.name for r in run.resources if r.parent_urn == component.urn)
    assert children == sorted(
        [
            "files-fs",
            "files-sg",
            "files-mount-0",
            "files-mount-1",
            "files-mount-2",
            "files-backup",
            "files-ap",
            "files-policy",
            "files-sg-from-media-app-sg-test",
            "app-efs",
        ]
    )
    assert len(children) == 10
    assert all(r.name in children for r in run.resources if r.type.startswith("aws:efs/"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"subnet_ids": ["subnet-a"]},
            "subnet_ids=1 subnet(s): allowed one data subnet per AZ, at least 2 (G7)",
        ),
        (
            {"root_path": "media"},
            "root_path='media': allowed an absolute path like /media (letters, digits, _ . -), not /",
        ),
        (
            {"root_path": "/"},
            "root_path='/': allowed an absolute path like /media (letters, digits, _ . -), not /",
        ),
        ({"owner_uid": 0}, "owner_uid=0: allowed 1..4294967295 (never root)"),
        ({"owner_gid": -1}, "owner_gid=-1: allowed 1..4294967295 (never root)"),
        ({"permissions": "rwx"}, "permissions='rwx': allowed an octal mode like 750"),
        (
            {"transition_to_ia": "AFTER_2_DAYS"},
            "transition_to_ia='AFTER_2_DAYS': allowed one of AFTER_1_DAY, AFTER_7_DAYS",
        ),
    ],
)
def test_bad_args_rejected_before_any_resource(namer, overrides, message):
    assert_rejected(_args(namer, **overrides), message)


def test_every_problem_reported_at_once(namer):
    with pytest.raises(ValueError) as error:
        _args(namer, owner_uid=0, permissions="x", subnet_ids=[]).validate()
    assert str(error.value) == (
        "SharedFileSystemArgs: subnet_ids=0 subnet(s): allowed one data subnet per AZ, at "
        "least 2 (G7); owner_uid=0: allowed 1..4294967295 (never root); permissions='x': "
        "allowed an octal mode like 750"
    )


def test_component_registers_nothing_on_bad_args(namer, context):
    with pytest.raises(ValueError) as error:
        _run(namer, context, subnet_ids=["one"])
    assert error.value.registered == []  # type: ignore[attr-defined]


def test_grant_mount_returns_the_role_policy_for_depends_on(namer, context):
    def build():
        files = SharedFileSystem("files", _args(namer))
        policy = files.grant_mount("app-efs", app_role(namer, context, _Peer("app")))
        pulumi.export("urn", policy.urn)
        pulumi.export("role", policy.role)

    run = run_components(build)
    attached = run.one("aws:iam/rolePolicy:RolePolicy")
    assert (run.outputs["urn"], run.outputs["role"]) == (attached.urn, "media-app-test")
    assert attached.name == "app-efs"


# -- G3 data protection -----------------------------------------------------------------------


def test_g3_file_system_is_deleted_on_destroy_by_default(run):
    assert guarded(run) == set()


def test_g3_data_protection_protects_and_retains_only_the_file_system(namer, context):
    run = _run(namer, context, grant=True, peer=True, protect_data=True)
    assert guarded(run) == {(FS, "files-fs", True, True)}
